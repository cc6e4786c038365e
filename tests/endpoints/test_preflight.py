"""``llmops-nb preflight``: each check passes on a seeded fake workspace and fails when its thing is missing.

The fake is seeded through its own API with the real databricks-sdk (catalogs.create,
schemas.create, secrets.create_scope / put_secret, registered_models.create, MLflow's UC
model-version create/finalize), as a user would create them in a real workspace; preflight
then reads it over real HTTP.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from llmops_nb.backends import Backend
from llmops_nb.cli.main import main
from llmops_nb.config.project import ProjectConfig
from llmops_nb.endpoints import preflight
from llmops_nb.workspace.api.identity import USER_NAME

MODEL = "main.llmops.smollm2_135m_instruct"
CANARY = "sk-canary-5d1e-never-read"
PROJECT: dict[str, Any] = {
    "backend": "databricks",
    "model": {"name": MODEL},
    "endpoint": {
        "name": "smollm2-chat",
        "served_entities": [
            {
                "entity_name": MODEL,
                "entity_version": "1",
                "workload_size": "Small",
                "scale_to_zero_enabled": True,
                "environment_vars": {"OPENAI_API_KEY": "{{secrets/llmops/openai_api_key}}"},
            }
        ],
        "ai_gateway": {
            "usage_tracking_config": {"enabled": True},
            "rate_limits": [{"renewal_period": "minute", "calls": 60, "key": "endpoint"}],
            "inference_table_config": {
                "enabled": True,
                "catalog_name": "main",
                "schema_name": "llmops",
                "table_name_prefix": "chat",
            },
        },
    },
}


def _project(edit: Any = None) -> ProjectConfig:
    data = copy.deepcopy(PROJECT)
    if edit:
        edit(data)
    return ProjectConfig.model_validate(data)


def _backend(ws: Any, **kw: Any) -> Backend:
    values = {
        "kind": "databricks",
        "host": ws.host,
        "token": ws.token,
        "tracking_uri": "databricks",
        "registry_uri": "databricks-uc",
    }
    values.update(kw)
    return Backend(**values)


def _seed(
    ws: Any,
    *,
    catalog: bool = True,
    schema: bool = True,
    scope: bool = True,
    key: bool = True,
    version: bool = True,
    finalize: bool = True,
) -> None:
    w = ws.client()
    if catalog:
        w.catalogs.create("main")
    if catalog and schema:
        w.schemas.create("llmops", "main")
        w.registered_models.create(catalog_name="main", schema_name="llmops", name="smollm2_135m_instruct")
        if version:
            w.api_client.do(
                "POST",
                "/api/2.0/mlflow/unity-catalog/model-versions/create",
                body={"name": MODEL, "source": "dbfs:/mlflow/run/artifacts/model"},
            )
            if finalize:
                w.api_client.do(
                    "POST", "/api/2.0/mlflow/unity-catalog/model-versions/finalize", body={"name": MODEL, "version": "1"}
                )
    if scope:
        w.secrets.create_scope("llmops")
        if key:
            w.secrets.put_secret("llmops", "openai_api_key", string_value=CANARY)


def _by_name(report: preflight.Report) -> dict[str, preflight.Check]:
    return {c.name: c for c in report.checks}


def _problem(report: preflight.Report, name: str) -> str:
    found = _by_name(report)[name]
    assert found.status == "problem", report.lines()
    assert report.exit_code == 2
    assert all("\n" not in line for line in report.lines())
    return found.message


# --------------------------------------------------------------------------- all pass


def test_every_check_passes_on_a_seeded_workspace_and_no_secret_value_is_read(fake_workspace: Any) -> None:
    _seed(fake_workspace)
    report = preflight.run(_project(), _backend(fake_workspace))
    checks = _by_name(report)
    assert report.exit_code == 0, report.lines()
    assert [c.status for c in report.checks] == ["ok"] * len(report.checks)
    assert set(checks) == {
        "config",
        "served entities",
        "traffic",
        "ai gateway",
        "workload",
        "streaming",
        "payload",
        "auth",
        "uc schema main.llmops",
        "secret {{secrets/llmops/openai_api_key}}",
        f"model version {MODEL} v1",
    }
    assert checks["auth"].message.endswith(f"as {USER_NAME}")
    assert "owns it" in checks["uc schema main.llmops"].message
    assert "16 MB" in checks["payload"].message
    calls = [r["path"].split("?")[0] for r in fake_workspace.requests()]
    assert "/api/2.0/secrets/get" not in calls and "/api/2.0/secrets/list" in calls
    assert (
        CANARY not in "\n".join(report.lines())
        and CANARY not in (fake_workspace.home / "state" / "secret_scopes.json").read_text()
    )
    put = next(r for r in fake_workspace.requests() if r["path"] == "/api/2.0/secrets/put")
    assert put["body"]["string_value"] == "***" and CANARY not in str(fake_workspace.requests())  # the request record too


# --------------------------------------------------------------------------- each check failing


def test_auth_fails_with_a_bad_token(fake_workspace: Any) -> None:
    report = preflight.run(_project(), _backend(fake_workspace, token="dapi-wrong"))
    assert "refused current_user.me()" in _problem(report, "auth") and "DATABRICKS_TOKEN" in _problem(report, "auth")
    assert [c.name for c in report.checks][-1] == "auth"  # nothing else is asked of a workspace that refused us


def test_a_missing_catalog(fake_workspace: Any) -> None:
    _seed(fake_workspace, catalog=False)
    message = _problem(preflight.run(_project(), _backend(fake_workspace)), "uc schema main.llmops")
    assert message == (
        f"catalog main (model.name {MODEL}, ai_gateway.inference_table_config) does not exist: "
        "create it (CREATE CATALOG main) or name an existing catalog in the config"
    )


def test_a_missing_schema(fake_workspace: Any) -> None:
    _seed(fake_workspace, schema=False)
    message = _problem(preflight.run(_project(), _backend(fake_workspace)), "uc schema main.llmops")
    assert "schema main.llmops (model.name" in message and "CREATE SCHEMA main.llmops" in message


def test_a_schema_someone_else_owns_is_not_writable_until_granted(fake_workspace: Any) -> None:
    from databricks.sdk.service.catalog import PermissionsChange, Privilege

    _seed(fake_workspace)
    w = fake_workspace.client()
    w.catalogs.update("main", owner="admins@example.com")
    w.schemas.update("main.llmops", owner="data-team@example.com")
    message = _problem(preflight.run(_project(), _backend(fake_workspace)), "uc schema main.llmops")
    assert message == (
        f"exists, but you ({USER_NAME}) lack USE_CATALOG, USE_SCHEMA, CREATE_MODEL, CREATE_TABLE there "
        f"(model.name {MODEL}, ai_gateway.inference_table_config): ask its owner (data-team@example.com) "
        f"to run GRANT USE_CATALOG ON CATALOG main TO `{USER_NAME}`; "
        f"GRANT USE_SCHEMA, CREATE_MODEL, CREATE_TABLE ON SCHEMA main.llmops TO `{USER_NAME}`"
    )
    # granted to a group the user is in (Me lists 'users'), partly inherited from the catalog
    w.grants.update("catalog", "main", changes=[PermissionsChange(principal="users", add=[Privilege.USE_CATALOG])])
    w.grants.update(
        "schema",
        "main.llmops",
        changes=[
            PermissionsChange(principal=USER_NAME, add=[Privilege.USE_SCHEMA, Privilege.CREATE_MODEL, Privilege.CREATE_TABLE])
        ],
    )
    report = preflight.run(_project(), _backend(fake_workspace))
    assert report.exit_code == 0, report.lines()
    assert (
        _by_name(report)["uc schema main.llmops"].message
        == "exists; writable (you hold CREATE_MODEL, CREATE_TABLE, USE_CATALOG, USE_SCHEMA)"
    )


def test_an_inference_table_schema_is_checked_for_create_table(fake_workspace: Any) -> None:
    _seed(fake_workspace)

    def elsewhere(data: dict) -> None:
        data["endpoint"]["ai_gateway"]["inference_table_config"]["schema_name"] = "monitoring"

    message = _problem(preflight.run(_project(elsewhere), _backend(fake_workspace)), "uc schema main.monitoring")
    assert "schema main.monitoring (ai_gateway.inference_table_config) does not exist" in message


def test_a_missing_secret_scope_and_a_missing_key(fake_workspace: Any) -> None:
    _seed(fake_workspace, scope=False)
    name = "secret {{secrets/llmops/openai_api_key}}"
    message = _problem(preflight.run(_project(), _backend(fake_workspace)), name)
    assert message == (
        "endpoint.config.served_entities[0].environment_vars.OPENAI_API_KEY: no secret scope llmops: "
        "create it (databricks secrets create-scope llmops) and put the key"
    )
    fake_workspace.client().secrets.create_scope("llmops")
    message = _problem(preflight.run(_project(), _backend(fake_workspace)), name)
    assert message.endswith("scope llmops has no key openai_api_key: databricks secrets put-secret llmops openai_api_key")


def test_a_missing_model_version(fake_workspace: Any) -> None:
    _seed(fake_workspace)

    def version_2(data: dict) -> None:
        data["endpoint"]["served_entities"][0]["entity_version"] = "2"

    message = _problem(preflight.run(_project(version_2), _backend(fake_workspace)), f"model version {MODEL} v2")
    assert (
        "not in Unity Catalog (Model version 'main.llmops.smollm2_135m_instruct/2' does not exist.): register it first" in message
    )


def test_a_version_still_registering_and_a_model_with_no_version(fake_workspace: Any) -> None:
    _seed(fake_workspace, finalize=False)
    message = _problem(preflight.run(_project(), _backend(fake_workspace)), f"model version {MODEL} v1")
    assert message.startswith("version 1 is PENDING_REGISTRATION, not READY")

    def latest(data: dict) -> None:
        del data["endpoint"]["served_entities"][0]["entity_version"]

    report = preflight.run(_project(latest), _backend(fake_workspace), model_version="1")  # the register step's output
    assert _by_name(report)[f"model version {MODEL} v1"].status == "problem"
    w = fake_workspace.client()
    w.registered_models.create(catalog_name="main", schema_name="llmops", name="empty")

    def empty(data: dict) -> None:
        entity = data["endpoint"]["served_entities"][0]
        entity["entity_name"] = "main.llmops.empty"
        del entity["entity_version"]

    message = _problem(preflight.run(_project(empty), _backend(fake_workspace)), "model version main.llmops.empty (latest)")
    assert (
        message
        == "main.llmops.empty has no version in Unity Catalog: register it first (01_register.ipynb or `llmops-nb register`)"
    )


def test_more_than_15_served_entities(fake_workspace: Any) -> None:
    _seed(fake_workspace)

    def sixteen(data: dict) -> None:
        one = data["endpoint"]["served_entities"][0]
        data["endpoint"]["served_entities"] = [{**one, "name": f"e{i}"} for i in range(16)]
        data["endpoint"]["traffic_config"] = {
            "routes": [{"served_entity_name": f"e{i}", "traffic_percentage": 10 if i < 10 else 0} for i in range(16)]
        }

    message = _problem(preflight.run(_project(sixteen), _backend(fake_workspace)), "served entities")
    assert message == "16 on endpoint smollm2-chat, Databricks serves at most 15 per endpoint: split them over several endpoints"


@pytest.mark.parametrize(
    ("field", "value", "label"),
    [
        ("guardrails", {"input": {"safety": True}}, "AI guardrails"),
        ("fallback_config", {"enabled": True}, "fallbacks"),
    ],
)
def test_gateway_features_a_custom_model_endpoint_does_not_support(
    fake_workspace: Any, field: str, value: Any, label: str
) -> None:
    _seed(fake_workspace)

    def add(data: dict) -> None:
        data["endpoint"]["ai_gateway"][field] = value

    message = _problem(preflight.run(_project(add), _backend(fake_workspace)), "ai gateway")
    assert message.startswith(f"ai_gateway.{field}: {label} not supported on a custom model endpoint; remove it")


def test_an_external_model_endpoint_may_use_fallbacks_and_has_a_4_mb_payload_limit(fake_workspace: Any) -> None:
    _seed(fake_workspace)

    def external(data: dict) -> None:
        data["endpoint"]["served_entities"] = [
            {
                "external_model": {
                    "name": "gpt-4o-mini",
                    "provider": "openai",
                    "task": "llm/v1/chat",
                    "openai_config": {"openai_api_key": "{{secrets/llmops/openai_api_key}}"},
                }
            }
        ]
        data["endpoint"]["ai_gateway"]["fallback_config"] = {"enabled": True}

    report = preflight.run(_project(external), _backend(fake_workspace))
    checks = _by_name(report)
    assert report.exit_code == 0, report.lines()
    assert "4 MB" in checks["payload"].message and checks["ai gateway"].status == "ok"
    assert checks["secret {{secrets/llmops/openai_api_key}}"].message.startswith(
        "endpoint.config.served_entities[0].external_model.openai_config.openai_api_key: scope and key exist"
    )


# --------------------------------------------------------------------------- the config, the CLI, other registries


def _write(tmp_path: Path, edit: Any = None) -> Path:
    data = copy.deepcopy(PROJECT)
    if edit:
        edit(data)
    path = tmp_path / "project.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def _cli(ws: Any, *args: str) -> Any:
    env = {**ws.env(), "MLFLOW_REGISTRY_URI": "databricks-uc", "MLFLOW_TRACKING_URI": "databricks"}
    return CliRunner().invoke(main, ["preflight", *args], env=env)


def test_cli_exits_0_when_all_pass_and_2_with_one_line_per_check(fake_workspace: Any, tmp_path: Path) -> None:
    _seed(fake_workspace)
    passed = _cli(fake_workspace, "--backend", "databricks", "--config", str(_write(tmp_path)))
    assert passed.exit_code == 0, passed.output
    lines = passed.output.strip().splitlines()
    assert len(lines) == 14 and all(line.startswith("ok ") for line in lines[:-1]), lines
    assert lines[-1] == "preflight: 13 checks, no problem"
    fake_workspace.client().secrets.delete_scope("llmops")
    failed = _cli(fake_workspace, "--backend", "databricks", "--config", str(_write(tmp_path)))
    assert failed.exit_code == 2
    assert "problem secret {{secrets/llmops/openai_api_key}}: endpoint.config" in failed.output
    assert failed.output.strip().splitlines()[-1] == "preflight: 1 problem in 13 checks"


def test_cli_a_config_the_config_package_refuses_is_the_one_problem(fake_workspace: Any, tmp_path: Path) -> None:
    """Traffic percentages are validated by the config package; preflight reports its line."""

    def ninety(data: dict) -> None:
        entity = data["endpoint"]["served_entities"][0]
        data["endpoint"]["served_entities"] = [{**entity, "name": "a"}, {**entity, "name": "b", "entity_version": "2"}]
        data["endpoint"]["traffic_config"] = {
            "routes": [
                {"served_entity_name": "a", "traffic_percentage": 50},
                {"served_entity_name": "b", "traffic_percentage": 40},
            ]
        }

    done = _cli(fake_workspace, "--backend", "databricks", "--config", str(_write(tmp_path, ninety)))
    assert done.exit_code == 2
    first = done.output.strip().splitlines()[0]
    assert first.startswith("problem config: ") and "traffic percentages must sum to 100" in first
    assert fake_workspace.requests() == []  # nothing asked of the workspace


def test_the_mlflow_registry_is_asked_when_it_is_not_unity_catalog(fake_workspace: Any, tmp_path: Path) -> None:
    """As in the nbval run on the fake: databricks backend, SQLite registry; UC lines say why they are skipped."""
    from mlflow import MlflowClient

    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _seed(fake_workspace, catalog=False)
    backend = _backend(fake_workspace, tracking_uri=db, registry_uri=db)
    report = preflight.run(_project(), backend)
    assert _by_name(report)[f"model version {MODEL} v1"].status == "problem"
    assert _by_name(report)[f"uc schema of {MODEL}"].status == "skipped"
    client = MlflowClient(db, db)
    client.create_registered_model(MODEL)
    client.create_model_version(MODEL, source=str(tmp_path))
    report = preflight.run(_project(), backend)
    assert _by_name(report)[f"model version {MODEL} v1"].status == "ok", report.lines()
    # the inference table is a workspace table whatever the registry: still checked in UC
    assert _by_name(report)["uc schema main.llmops"].status == "problem"


def test_on_the_local_backend_uc_checks_say_they_do_not_apply_and_secrets_resolve_locally(
    fake_workspace: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local workspace is the same server: its identity answers; UC is not its registry."""
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    backend = _backend(fake_workspace, kind="local", tracking_uri=db, registry_uri=db, home=tmp_path)

    def local(data: dict) -> None:
        data["backend"] = "local"
        data["model"]["name"] = "smollm2"
        data["endpoint"]["served_entities"][0]["entity_name"] = "smollm2"
        del data["endpoint"]["ai_gateway"]["inference_table_config"]

    monkeypatch.delenv("LLMOPS_SECRET_LLMOPS_OPENAI_API_KEY", raising=False)
    report = preflight.run(_project(local), backend)
    checks = _by_name(report)
    assert checks["auth"].status == "ok"
    assert (
        checks["uc schema of smollm2"].status == "skipped"
        and "SQLite registry, not Unity Catalog" in checks["uc schema of smollm2"].message
    )
    assert "set LLMOPS_SECRET_LLMOPS_OPENAI_API_KEY" in _problem(report, "secret {{secrets/llmops/openai_api_key}}")
    monkeypatch.setenv("LLMOPS_SECRET_LLMOPS_OPENAI_API_KEY", CANARY)
    report = preflight.run(_project(local), backend)
    assert _by_name(report)["secret {{secrets/llmops/openai_api_key}}"].status == "ok"
    assert CANARY not in "\n".join(report.lines())
    assert os.environ["LLMOPS_SECRET_LLMOPS_OPENAI_API_KEY"] == CANARY


def test_a_read_the_workspace_refuses_is_a_problem_line_not_a_crash(fake_workspace: Any) -> None:
    _seed(fake_workspace)
    backend = _backend(fake_workspace)

    class Refusing:
        """A client whose secrets API answers 403, as for a user without access to secret scopes."""

        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

        @property
        def secrets(self) -> Any:
            from databricks.sdk.errors import PermissionDenied

            class _Secrets:
                def list_scopes(self) -> Any:
                    raise PermissionDenied("User does not have permission to list secret scopes")

            return _Secrets()

    report = preflight.run(_project(), backend, client=Refusing(backend.workspace_client()))
    assert _problem(report, "secrets") == (
        "the workspace refused to answer (PermissionDenied: User does not have "
        "permission to list secret scopes): ask an admin for read access, or retry"
    )
    assert _by_name(report)[f"model version {MODEL} v1"].status == "ok"  # the other checks still ran


def test_latest_is_the_highest_version_whatever_order_the_workspace_lists(fake_workspace: Any) -> None:
    """model_versions.list has no guaranteed order (the fake lists oldest first): "latest" is the highest number."""
    _seed(fake_workspace, finalize=False)  # v1 stays PENDING_REGISTRATION
    w = fake_workspace.client()
    for _ in range(2):
        w.api_client.do("POST", "/api/2.0/mlflow/unity-catalog/model-versions/create", body={"name": MODEL, "source": "dbfs:/m"})
    w.api_client.do("POST", "/api/2.0/mlflow/unity-catalog/model-versions/finalize", body={"name": MODEL, "version": "3"})
    assert [v.version for v in w.model_versions.list(MODEL)] == [1, 2, 3]  # not newest first

    def latest(data: dict) -> None:
        del data["endpoint"]["served_entities"][0]["entity_version"]

    found = _by_name(preflight.run(_project(latest), _backend(fake_workspace)))[f"model version {MODEL} (latest)"]
    assert (found.status, found.message) == ("ok", "version 3 exists and is READY")


# --------------------------------------------------------------------------- model.source: uc

LLAMA = "system.ai.llama_v3_2_1b_instruct"  # the fake optimizes llama models, chunk 950 tokens/s


def _uc_project(name: str = LLAMA, **entity: Any) -> ProjectConfig:
    return ProjectConfig.model_validate(
        {
            "backend": "databricks",
            "model": {"name": name, "source": "uc", "version": "1"},
            "endpoint": {"name": "llama-pt", "served_entities": [{"entity_name": name, **entity}]},
        }
    )


def test_a_uc_source_shows_the_provisioned_throughput_deploy_will_set(fake_workspace: Any) -> None:
    fake_workspace.uc_model(LLAMA)
    report = preflight.run(_uc_project(), _backend(fake_workspace))
    checks = _by_name(report)
    assert report.exit_code == 0, report.lines()
    assert checks[f"model version {LLAMA} v1"].status == "ok"
    line = checks["provisioned throughput system-ai-llama_v3_2_1b_instruct-1"]
    assert line.status == "ok" and "0-950 tokens/s" in line.message and "(llama)" in line.message
    assert "4 MB" in checks["payload"].message  # a provisioned throughput endpoint
    assert not any(name.startswith("uc schema") for name in checks)  # register writes nothing to system.ai
    writes = [r for r in fake_workspace.requests() if r["path"].startswith("/api/2.0/serving-endpoints") and r["method"] != "GET"]
    assert writes == []


@pytest.mark.parametrize(
    ("name", "entity", "says"),
    [
        (LLAMA, {"min_provisioned_throughput": 100}, "served_entities[0].min_provisioned_throughput: 100 is not allowed"),
        ("main.llmops.smollm2_135m_instruct", {}, "not optimizable"),
    ],
)
def test_a_uc_source_preflight_refuses_what_deploy_would(fake_workspace: Any, name: str, entity: dict, says: str) -> None:
    fake_workspace.uc_model(name)
    assert says in _problem(preflight.run(_uc_project(name, **entity), _backend(fake_workspace)), "provisioned throughput")


def test_a_uc_source_on_the_local_backend_is_a_problem_line(fake_workspace: Any, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    local = _backend(fake_workspace, kind="local", tracking_uri=uri, registry_uri=uri, home=tmp_path)
    message = _problem(preflight.run(_uc_project(), local), "provisioned throughput")
    assert message.startswith("model.source: 'uc' is not allowed") and "Databricks only" in message


def test_route_optimized_needs_an_oauth_client(fake_workspace: Any) -> None:
    """A route-optimized endpoint answers only at its data plane, to an OAuth token: a PAT backend is a problem."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    from llmops_nb.workspace.api.oauth import CLIENT_ID

    _seed(fake_workspace)

    def optimized(data: dict) -> None:
        data["endpoint"]["route_optimized"] = True

    message = _problem(preflight.run(_project(optimized), _backend(fake_workspace)), "route optimized")
    assert message.startswith("endpoint.route_optimized: true needs OAuth: a route-optimized endpoint answers only")
    assert "this backend authenticates with pat" in message and "DATABRICKS_CLIENT_ID" in message
    m2m = WorkspaceClient(
        config=Config(host=fake_workspace.host, client_id=CLIENT_ID, client_secret=fake_workspace.token, auth_type="oauth-m2m")
    )
    found = _by_name(preflight.run(_project(optimized), _backend(fake_workspace), client=m2m))["route optimized"]
    assert (found.status, found.message) == ("ok", "queried at its data-plane URL with an OAuth token (oauth-m2m)")
    assert "route optimized" not in _by_name(preflight.run(_project(), _backend(fake_workspace)))


@pytest.mark.parametrize(
    ("source", "workload", "problem"),
    [
        ("bundled", "GPU_SMALL", True),
        ("gguf", "MULTIGPU_MEDIUM", True),
        ("bundled", "CPU", False),
        ("transformers", "GPU_SMALL", False),
        ("transformers", None, False),
    ],
)
def test_the_workload_type_fits_what_the_source_runs_on(source: str, workload: str | None, problem: bool) -> None:
    def edit(data: dict) -> None:
        data["model"]["source"] = source
        if source == "gguf":
            data["model"]["path"] = "/models/x.gguf"
        if source == "transformers":
            data["model"]["path"] = "/models/x"
        entity = data["endpoint"]["served_entities"][0]
        entity.pop("workload_type", None)
        if workload:
            entity["workload_type"] = workload

    checks = {c.name: c for c in preflight.config_checks(_project(edit))}
    check = checks["workload"]
    assert check.status == ("problem" if problem else "ok"), check
    if problem:
        assert f"workload_type {workload} for a {source} source: its llama.cpp build runs on CPU only" in check.message
    elif source == "transformers" and workload is None:
        assert "a GPU type serves a transformers model faster" in check.message


@pytest.mark.parametrize(
    ("source", "said"),
    [
        ("bundled", "a bundled source is a plain PythonModel: "),
        ("gguf", "a gguf source is a plain PythonModel: "),
        ("transformers", "a transformers source is MLflow's transformers flavor: "),
        ("code", None),  # its interface decides (a ChatModel, ChatAgent or ResponsesAgent streams)
    ],
)
def test_preflight_says_where_databricks_answers_stream_true_whole(source: str, said: str | None) -> None:
    """Databricks streams only ChatModel, ChatAgent and ResponsesAgent models (issue 31, item 4): the
    GGUF chat model is a plain PythonModel, so stream: true comes back as one JSON completion there."""
    from llmops_nb.protocol.streaming import WHOLE_ON_DATABRICKS

    def edit(data: dict) -> None:
        data["model"]["source"] = source
        if source != "bundled":
            data["model"]["path"] = {"gguf": "/models/x.gguf", "transformers": "/models/x", "code": "/models/x.py"}[source]

    checks = {c.name: c for c in preflight.config_checks(_project(edit))}
    if said is None:
        assert "streaming" not in checks
        return
    check = checks["streaming"]
    assert check.status == "ok" and check.message.startswith(said) and WHOLE_ON_DATABRICKS in check.message
    assert check.message.endswith("; the local workspace streams it") and "\n" not in check.message


def test_a_canary_says_where_its_steps_read_live_traffic_and_what_databricks_needs(fake_workspace: Any) -> None:
    _seed(fake_workspace)

    def canary(**rollout: Any) -> Any:
        return lambda d: d.update(rollout={"strategy": "canary", "max_wait_s": 3600, "warehouse_id": "wh-1", **rollout})

    assert "rollout" not in _by_name(preflight.run(_project(), _backend(fake_workspace)))  # replace: no line
    ok = _by_name(preflight.run(_project(canary()), _backend(fake_workspace)))["rollout"]
    assert ok.status == "ok" and ok.message == (
        "canary steps [10, 50, 100] read main.llmops.chat_payload joined to system.serving.served_entities (SELECT on "
        "both) through SQL warehouse wh-1; its rows land up to 3600 s late (Databricks: within the hour), so each step "
        "may wait up to max_wait_s 3600 s"
    )
    short = _problem(preflight.run(_project(canary(max_wait_s=600)), _backend(fake_workspace)), "rollout")
    assert short.startswith("rollout.max_wait_s: 600.0 is not allowed; at least rollout.inference_table_lag_s (3600 s)")
    nowhere = _problem(preflight.run(_project(canary(warehouse_id="")), _backend(fake_workspace)), "rollout")
    assert nowhere.startswith("rollout.warehouse_id: '' is not allowed;")

    def no_table(d: dict) -> None:
        canary()(d)
        d["endpoint"]["ai_gateway"].pop("inference_table_config")

    untabled = _problem(preflight.run(_project(no_table), _backend(fake_workspace)), "rollout")
    assert untabled.startswith("endpoint.ai_gateway.inference_table_config.enabled: None is not allowed;")
    # rollout.quality: its judge endpoint must exist
    from databricks.sdk.service.serving import EndpointCoreConfigInput, ServedEntityInput

    judged = canary(quality={"requests": 8, "judge_endpoint": "judge"})
    missing = _problem(preflight.run(_project(judged), _backend(fake_workspace)), "rollout quality")
    assert missing.startswith("rollout.quality.judge_endpoint: 'judge' is not allowed; an existing chat endpoint")
    fake_workspace.client().serving_endpoints.create_and_wait(
        "judge", config=EndpointCoreConfigInput(name="judge", served_entities=[ServedEntityInput(
            entity_name="m", entity_version="1", scale_to_zero_enabled=False)]))  # fmt: skip
    found = _by_name(preflight.run(_project(judged), _backend(fake_workspace)))["rollout quality"]
    assert found.status == "ok" and found.message.endswith("compared by judge, in both orders")


def test_preflight_says_the_chat_model_interface_streams_on_databricks_and_what_it_costs() -> None:
    """Issue 31 item 4: ``model.interface: chat_model`` is a ChatModel, which Databricks streams; the line
    says so and names its costs, every field the ChatModel takes in custom_inputs among them."""
    from llmops_nb.models.chat_model_interface import CUSTOM_INPUTS

    def edit(data: dict) -> None:
        data["model"]["interface"] = "chat_model"

    check = {c.name: c for c in preflight.config_checks(_project(edit))}["streaming"]
    assert check.status == "ok" and "\n" not in check.message
    assert check.message.startswith(
        "a bundled source with interface chat_model is an MLflow ChatModel (task agent/v1/chat): Databricks streams "
        "stream: true through its predict_stream, as the local workspace does; it costs MLflow's fixed chat signature"
    )
    assert all(f" {field}" in check.message for field in CUSTOM_INPUTS) and "go in custom_inputs" in check.message
    assert "a request without temperature samples at 1.0" in check.message
    plain = {c.name: c for c in preflight.config_checks(_project())}["streaming"]
    assert "model.interface: chat_model makes it a ChatModel, which Databricks streams" in plain.message

    def structured(data: dict) -> None:
        edit(data)
        data.setdefault("evaluation", {})["json_schema"] = "schemas/answer.json"

    problems = [c for c in preflight.config_checks(_project(structured)) if c.status == "problem"]
    assert [c.name for c in problems] == ["streaming"] and problems[0].message.startswith(
        "evaluation.json_schema: 'schemas/answer.json' is not allowed with model.interface chat_model: the evaluation sends "
        "response_format at the top level"
    )


def test_the_strategy_parameter_is_checked_as_the_deploy_will_use_it(fake_workspace: Any, tmp_path: Path) -> None:
    _seed(fake_workspace)
    path = tmp_path / "p.yml"
    path.write_text(yaml.safe_dump(PROJECT))
    report = preflight.run_config(path, resolve=lambda kind: _backend(fake_workspace), strategy="canary")
    assert _problem(report, "rollout").startswith("rollout.warehouse_id: '' is not allowed;")  # the file names none
    bad = preflight.run_config(path, resolve=lambda kind: _backend(fake_workspace), strategy="blue-green")
    assert _problem(bad, "config").endswith("p.yml: strategy: 'blue-green' is not allowed; allowed: 'replace' or 'canary'")
