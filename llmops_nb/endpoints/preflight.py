"""Preflight: what a Databricks workspace would refuse minutes into a job or a deploy, asked in seconds.

:func:`run` first validates the project config (the config package's own rules: names,
traffic percentages summing to 100, external-model tasks, plaintext secrets ...), then checks
Databricks' serving limits the config cannot know by itself, then asks the workspace through
databricks-sdk's read APIs only:

=====================  ===================================================================
check                  how
=====================  ===================================================================
config                 ``load_project_config`` (a ConfigError is the one problem line)
served entities        at most 15 per endpoint (Databricks Model Serving limits)
traffic                the routes the config validated (sum 100)
ai gateway             features supported by the endpoint type (docs table, below)
payload                the request size limit of the endpoint type (16 MB; 4 MB for external
                       and foundation models); the config states no payload size, so it is
                       shown, not compared
streaming              said for a source Databricks answers whole on ``stream: true`` (bundled,
                       gguf: a plain PythonModel; transformers): one JSON completion there;
                       with ``model.interface: chat_model`` that it streams, and what it costs
rollout                ``rollout.strategy: canary`` only: what its steps read live traffic from.
                       Locally the usage records (usage tracking enabled); on Databricks the AI
                       gateway's inference table through ``rollout.warehouse_id``, with
                       ``max_wait_s`` at least ``inference_table_lag_s`` (rows land "less than
                       hour" late): ``config.rollout.check_on_databricks``
rollout quality        ``rollout.quality`` only: its judge endpoint exists
                       (``serving_endpoints.get``)
route optimized        the client authenticates with OAuth (``Config.oauth_token()``): a
                       route-optimized endpoint answers only at its data-plane URL, to an OAuth token
auth                   ``current_user.me()``
uc schema              ``catalogs.get`` / ``schemas.get`` of the model's schema and of an
                       inference table's; writable: owner, else ``grants.get_effective``
                       (USE_CATALOG, USE_SCHEMA and CREATE_MODEL / CREATE_TABLE; grants to
                       the groups ``Me`` lists count; not checked if that API refuses)
secret                 ``secrets.list_scopes`` and ``secrets.list_secrets``: the scope and the
                       key exist; no value is ever read (no ``get_secret``)
model version          ``model_versions.get`` (or ``.list`` for "latest") in Unity Catalog;
                       in the backend's MLflow registry when that is not ``databricks-uc``
provisioned            ``model.source: uc``: ``get-model-optimization-info`` says the version is
  throughput           optimizable and the config's min/max are multiples of its chunk size
                       (:mod:`llmops_nb.endpoints.provisioned`); on the local backend a problem:
                       a UC model serves on Databricks only
=====================  ===================================================================

On the local backend the workspace checks that have no local meaning say so (``skipped``):
the local registry is MLflow's SQLite file, not Unity Catalog; a secret reference is checked
where the local workspace resolves it (``LLMOPS_SECRET_<SCOPE>_<KEY>`` or its secrets file).

Every line is ``ok``, ``problem`` or ``skipped``, then the check, then what is wrong and what
to do. :attr:`Report.exit_code` is 2 when any check found a problem.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llmops_nb.config.secrets import parse_secret_ref
from llmops_nb.errors import ConfigError, LlmopsError

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

    from llmops_nb.backends import Backend
    from llmops_nb.config.project import ProjectConfig

Status = Literal["ok", "problem", "skipped"]

#: "Maximum number of served entities per endpoint: 15" (Model Serving limits and regions).
MAX_SERVED_ENTITIES = 15
#: Request payload limit in MB by endpoint type (Model Serving limits: 16 MB per request;
#: 4 MB for endpoints serving external models and foundation models).
PAYLOAD_LIMIT_MB = {"custom model": 16, "external model": 4, "provisioned throughput": 4, "foundation model": 4}
#: AI gateway fields -> the endpoint types that support them (docs.databricks.com
#: ai-gateway/overview-serving-endpoints, "Supported features": guardrails are not supported
#: on custom model endpoints, fallbacks only on external model endpoints).
GATEWAY_SUPPORT: dict[str, tuple[str, frozenset[str]]] = {
    "rate_limits": ("rate limits", frozenset({"custom model", "external model", "provisioned throughput"})),
    "usage_tracking_config": ("usage tracking", frozenset({"custom model", "external model", "provisioned throughput"})),
    "inference_table_config": (
        "payload logging (inference tables)",
        frozenset({"custom model", "external model", "provisioned throughput"}),
    ),
    "guardrails": ("AI guardrails", frozenset({"external model", "provisioned throughput"})),
    "fallback_config": ("fallbacks", frozenset({"external model"})),
}
_PROVISIONED = ("provisioned_model_units", "min_provisioned_throughput", "max_provisioned_throughput")
_ALL = "ALL_PRIVILEGES"


class PreflightFailed(LlmopsError):
    """Preflight found at least one problem (each one printed on its own line)."""


@dataclass(frozen=True)
class Check:
    """One check's outcome: ``ok``, ``problem`` or ``skipped``, and one line of explanation."""

    name: str
    status: Status
    message: str

    @property
    def line(self) -> str:
        return f"{self.status:<7} {self.name}: {self.message}"


@dataclass(frozen=True)
class Report:
    """Every check, in order."""

    checks: tuple[Check, ...]

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.status == "problem"]

    @property
    def exit_code(self) -> int:
        return 2 if self.problems else 0

    def lines(self) -> list[str]:
        return [c.line for c in self.checks]


def _ok(name: str, message: str) -> Check:
    return Check(name, "ok", message)


def _problem(name: str, message: str) -> Check:
    return Check(name, "problem", message)


def _skipped(name: str, message: str) -> Check:
    return Check(name, "skipped", message)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- the config alone


def endpoint_type(project: ProjectConfig) -> str:
    """custom model, external model, provisioned throughput, or foundation model (pay-per-token)."""
    if project.endpoint is None:
        return "foundation model"
    entities = project.endpoint.served_entities
    if any(e.external_model is not None for e in entities):
        return "external model"
    if project.model.source == "uc" and any(e.entity_name == project.model.name for e in entities):
        return "provisioned throughput"  # a UC source deploys with it (endpoints/provisioned.py)
    if any(getattr(e, f, None) for e in entities for f in _PROVISIONED):
        return "provisioned throughput"
    return "custom model"


def config_checks(project: ProjectConfig) -> list[Check]:
    """Databricks limits on the endpoint the (already validated) config describes."""
    kind = endpoint_type(project)
    endpoint = project.endpoint
    if endpoint is None:
        return [
            _skipped(
                "served entities", f"none configured: the config queries the existing endpoint {project.foundation_endpoint}"
            )
        ]
    found: list[Check] = []
    served = endpoint.all_served
    if len(served) > MAX_SERVED_ENTITIES:
        found.append(
            _problem(
                "served entities",
                f"{len(served)} on endpoint {endpoint.name}, Databricks serves at most "
                f"{MAX_SERVED_ENTITIES} per endpoint: split them over several endpoints",
            )
        )
    else:
        found.append(_ok("served entities", f"{len(served)} of at most {MAX_SERVED_ENTITIES}"))
    routes = endpoint.routes()
    found.append(
        _ok(
            "traffic",
            f"{len(routes)} route{'s' * (len(routes) != 1)} summing to "
            f"{sum(r['traffic_percentage'] for r in routes)}% (validated with the config)",
        )
    )
    gateway = endpoint.ai_gateway_body() or {}
    unsupported = [
        (field, label) for field, (label, kinds) in GATEWAY_SUPPORT.items() if _enabled(gateway.get(field)) and kind not in kinds
    ]
    if unsupported:
        field, label = unsupported[0]
        more = f" (and {', '.join(lbl for _, lbl in unsupported[1:])})" if len(unsupported) > 1 else ""
        found.append(
            _problem(
                "ai gateway",
                f"ai_gateway.{field}: {label}{more} not supported on a {kind} endpoint; "
                "remove it from the config (supported: "
                + ", ".join(lbl for lbl, kinds in GATEWAY_SUPPORT.values() if kind in kinds)
                + ")",
            )
        )
    else:
        used = [label for field, (label, _) in GATEWAY_SUPPORT.items() if _enabled(gateway.get(field))]
        found.append(_ok("ai gateway", f"{', '.join(used) or 'no features'} set; all supported on a {kind} endpoint"))
    found.extend(_workload_checks(project))
    found.extend(_streaming_checks(project))
    found.append(
        _ok(
            "payload",
            f"a {kind} endpoint takes requests up to {PAYLOAD_LIMIT_MB[kind]} MB; "
            "the config states no payload size (keep prompts and batches under it)",
        )
    )
    return found


def _workload_checks(project: ProjectConfig) -> list[Check]:
    """The workload type of the entities serving ``model.name`` against what the source runs on.

    The GGUF chat model (bundled, gguf) runs on the portable llama.cpp wheel, built for CPUs only
    (models/runtime.py: no CUDA backend): a GPU workload type pays for a GPU it never uses. A
    transformers source may use one (Databricks' GPU workload types serve Hugging Face models).
    """
    assert project.endpoint is not None
    source = project.model.source
    mine = [e for e in project.endpoint.served_entities if e.entity_name == project.model.name and e.external_model is None]
    gpu = [e for e in mine if e.workload_type and "GPU" in str(e.workload_type)]
    if not mine or source in ("uc",):
        return []
    if gpu and source in ("bundled", "gguf"):
        return [
            _problem(
                "workload",
                f"workload_type {gpu[0].workload_type} for a {source} source: its llama.cpp build runs on CPU only, "
                "so the GPU would sit idle; use workload_type CPU (or leave it out)",
            )
        ]
    types = sorted({str(e.workload_type or "CPU") for e in mine})
    note = " (a GPU type serves a transformers model faster)" if source == "transformers" and not gpu else ""
    return [_ok("workload", f"{', '.join(types)} for a {source} source{note}")]


#: the sources whose logged model Databricks does not stream: the GGUF chat model is a plain
#: PythonModel by default (as a ChatModel, ``model.interface: chat_model``, it streams there but takes
#: the fields ChatParams lacks in custom_inputs: tests/models/test_chat_model_interface.py),
#: a transformers source is MLflow's transformers flavor (no predict_stream)
_WHOLE_ON_DATABRICKS = {
    "bundled": "a plain PythonModel",
    "gguf": "a plain PythonModel",
    "transformers": "MLflow's transformers flavor",
}


#: what the ChatModel interface costs (models/chat_model_interface.py; its CUSTOM_INPUTS are named
#: here, tests/endpoints/test_preflight.py keeps the two equal)
CHAT_MODEL_COSTS = (
    "MLflow's fixed chat signature: max_completion_tokens, seed, logprobs, top_logprobs, response_format, tools, "
    "tool_choice and parallel_tool_calls go in custom_inputs (at the top level Databricks would drop them, the local "
    "workspace refuses them), a request without temperature samples at 1.0 (ChatParams' default, not "
    "model.temperature), and a forced tool call streams as one delta"
)


def _streaming_checks(project: ProjectConfig) -> list[Check]:
    """How ``stream: true`` is answered by the entities serving ``model.name``: said plainly where
    Databricks answers whole (protocol/streaming.py STREAMED_TASKS) and the local workspace streams,
    and what the ChatModel interface that Databricks streams costs."""
    from llmops_nb.protocol.streaming import WHOLE_ON_DATABRICKS

    assert project.endpoint is not None
    source = project.model.source
    mine = [e for e in project.endpoint.served_entities if e.entity_name == project.model.name and e.external_model is None]
    if not mine or source not in _WHOLE_ON_DATABRICKS:
        return []
    if project.model.interface == "chat_model":
        return [
            _ok(
                "streaming",
                f"a {source} source with interface chat_model is an MLflow ChatModel (task agent/v1/chat): Databricks "
                f"streams stream: true through its predict_stream, as the local workspace does; it costs {CHAT_MODEL_COSTS}",
            ),
            *_chat_model_evaluation(project),
        ]
    return [
        _ok(
            "streaming",
            f"a {source} source is {_WHOLE_ON_DATABRICKS[source]}: {WHOLE_ON_DATABRICKS}"
            + (
                "; model.interface: chat_model makes it a ChatModel, which Databricks streams"
                if source in ("bundled", "gguf")
                else ""
            )
            + "; the local workspace streams it",
        )
    ]


def _rollout_checks(project: ProjectConfig, backend: Backend) -> list[Check]:
    """Where a canary's steps read live traffic, and whether they can (nothing for ``replace``)."""
    from llmops_nb.config.rollout import check_on_databricks
    from llmops_nb.protocol import inference_table as pt

    rc, endpoint = project.rollout, project.endpoint
    if not rc.canary or endpoint is None:
        return []
    steps = f"canary steps {rc.steps}"
    if backend.home is not None:
        usage = endpoint.ai_gateway.usage_tracking_config if endpoint.ai_gateway else None
        if usage is None or not usage.enabled:
            return [_problem("rollout", f"{steps} read the usage records: set endpoint.ai_gateway.usage_tracking_config.enabled")]
        return [_ok("rollout", f"{steps} read each served entity's usage records of the local workspace")]
    try:
        check_on_databricks(rc, endpoint)
    except ConfigError as exc:
        return [_problem("rollout", str(exc))]
    table = endpoint.ai_gateway.inference_table_config if endpoint.ai_gateway else None
    assert table is not None
    name = pt.table_name(endpoint.name, table.model_dump(exclude_none=True))
    return [
        _ok(
            "rollout",
            f"{steps} read {name} joined to {pt.SERVED_ENTITIES} (SELECT on both) through SQL warehouse "
            f"{rc.warehouse_id}; its rows land up to {rc.inference_table_lag_s:g} s late (Databricks: within the hour), "
            f"so each step may wait up to max_wait_s {rc.max_wait_s:g} s",
        )
    ]


def _chat_model_evaluation(project: ProjectConfig) -> list[Check]:
    """An evaluation with ``json_schema`` sends ``response_format`` at the top level of the body
    (evaluation/asking.py), which a ChatModel takes only in custom_inputs: refused locally (400),
    dropped on Databricks (free text, every json_schema_match 0). A problem when it asks this endpoint."""
    ev = project.evaluation
    asks_this_endpoint = not ev.candidates or any(c.endpoint is None for c in ev.candidates)
    if ev.json_schema is None or not asks_this_endpoint:
        return []
    return [
        _problem(
            "streaming",
            f"evaluation.json_schema: {ev.json_schema!r} is not allowed with model.interface chat_model: the evaluation "
            "sends response_format at the top level, which this ChatModel takes only in custom_inputs (Databricks would "
            "drop it, the local workspace refuses it); use interface pyfunc, or leave json_schema out",
        )
    ]


def _enabled(value: Any) -> bool:
    if isinstance(value, dict):
        return value.get("enabled", True) is not False and any(v not in (None, [], {}) for v in value.values())
    return bool(value)


# --------------------------------------------------------------------------- the workspace


def secret_refs(value: Any, field: str = "endpoint") -> Iterator[tuple[str, str, str]]:
    """Every ``{{secrets/scope/key}}`` in a body: (field path, scope, key)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from secret_refs(v, f"{field}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from secret_refs(v, f"{field}[{i}]")
    elif (parsed := parse_secret_ref(value)) is not None:
        yield field, parsed[0], parsed[1]


def workspace_checks(
    project: ProjectConfig, backend: Backend, w: WorkspaceClient, *, model_version: str | None = None
) -> list[Check]:
    """Auth, then Unity Catalog schemas, secrets and model versions through ``w``'s read APIs."""
    try:
        me = w.current_user.me()
    except Exception as exc:  # noqa: BLE001 - any failure here is the auth problem to report
        return [
            _problem(
                "auth",
                f"{backend.kind} workspace {w.config.host} refused current_user.me() "
                f"({_first_line(exc)}): set DATABRICKS_HOST and DATABRICKS_TOKEN, or "
                "DATABRICKS_CONFIG_PROFILE, and check the token",
            )
        ]
    user = me.user_name or ""
    principals = {user, *(g.display for g in me.groups or [] if g.display)}
    found = [_ok("auth", f"signed in to {w.config.host} as {user}")]
    found += _guarded("uc schema", lambda: _schema_checks(project, backend, w, user, principals))
    found += _guarded("secrets", lambda: _secret_checks(project, backend, w))
    found += _guarded("model version", lambda: _version_checks(project, backend, w, model_version))
    found += _guarded("provisioned throughput", lambda: _throughput_checks(project, backend, w, model_version))
    if project.endpoint is None and project.foundation_endpoint:
        found += _guarded("endpoint", lambda: [_endpoint_exists(w, project.foundation_endpoint or "")])
    if project.endpoint is not None and project.endpoint.route_optimized:
        found.append(_route_optimized_check(w))
    return found


def _route_optimized_check(w: WorkspaceClient) -> Check:
    """A route-optimized endpoint answers only at its data-plane URL, to an OAuth token made for it
    (ServingEndpointDetailed.data_plane_info.query_info, databricks-sdk-py service/serving.py;
    the token exchanged from ``Config.oauth_token()``, databricks/sdk/data_plane.py): the backend's
    client must authenticate with OAuth."""
    from llmops_nb.chat.dataplane import OAUTH_HINT

    try:
        w.config.oauth_token()
    except Exception as exc:  # noqa: BLE001 - ValueError for a PAT; any refusal of the token is the problem
        return _problem(
            "route optimized",
            f"endpoint.route_optimized: true needs OAuth: a route-optimized endpoint answers only at its data-plane URL, "
            f"to an OAuth token, and this backend authenticates with {w.config.auth_type} ({_first_line(exc)[:100]}); "
            f"{OAUTH_HINT}, or remove route_optimized",
        )
    return _ok("route optimized", f"queried at its data-plane URL with an OAuth token ({w.config.auth_type})")


def _guarded(name: str, checks: Callable[[], list[Check]]) -> list[Check]:
    """The checks, or one problem line when the workspace refuses a read (403, 5xx after retries)."""
    from databricks.sdk.errors import DatabricksError

    try:
        return checks()
    except DatabricksError as exc:
        return [
            _problem(
                name,
                f"the workspace refused to answer ({type(exc).__name__}: {_first_line(exc)}): "
                "ask an admin for read access, or retry",
            )
        ]


def _uses_uc(backend: Backend) -> bool:
    return backend.kind == "databricks" and backend.registry_uri.split(":")[0] == "databricks-uc"


def _schema_checks(project: ProjectConfig, backend: Backend, w: WorkspaceClient, user: str, principals: set[str]) -> list[Check]:
    wanted: dict[str, tuple[list[str], list[str]]] = {}  # schema full name -> (privileges, why)

    def want(full_name: str, privilege: str, why: str) -> None:
        privileges, reasons = wanted.setdefault(full_name, ([], []))
        privileges.append(privilege)
        reasons.append(why)

    if project.endpoint is not None and _uses_uc(backend) and project.model.logs_a_model:  # register writes it there
        want(project.model.name.rsplit(".", 1)[0], "CREATE_MODEL", f"model.name {project.model.name}")
    gateway = (project.endpoint.ai_gateway_body() or {}) if project.endpoint else {}
    table = gateway.get("inference_table_config") or {}
    if backend.kind == "databricks" and table.get("enabled") and table.get("catalog_name") and table.get("schema_name"):
        want(f"{table['catalog_name']}.{table['schema_name']}", "CREATE_TABLE", "ai_gateway.inference_table_config")
    found = [
        _schema_check(w, full_name, privileges, ", ".join(reasons), user, principals)
        for full_name, (privileges, reasons) in wanted.items()
    ]
    if project.endpoint is not None and not _uses_uc(backend):
        why = (
            "the local workspace registers models in MLflow's SQLite registry, not Unity Catalog"
            if backend.kind == "local"
            else f"the registry is {backend.registry_uri.split('?')[0]}, not Unity Catalog (databricks-uc)"
        )
        found.insert(0, _skipped(f"uc schema of {project.model.name}", why))
    return found


def _schema_check(w: WorkspaceClient, full_name: str, privileges: list[str], why: str, user: str, principals: set[str]) -> Check:
    from databricks.sdk.errors import NotFound

    name = f"uc schema {full_name}"
    catalog_name = full_name.split(".")[0]
    try:
        catalog = w.catalogs.get(catalog_name)
    except NotFound:
        return _problem(
            name,
            f"catalog {catalog_name} ({why}) does not exist: create it (CREATE CATALOG {catalog_name}) "
            "or name an existing catalog in the config",
        )
    try:
        schema = w.schemas.get(full_name)
    except NotFound:
        return _problem(
            name,
            f"schema {full_name} ({why}) does not exist: create it "
            f"(CREATE SCHEMA {full_name}) or name an existing schema in the config",
        )
    if schema.owner in principals or catalog.owner in principals:
        return _ok(
            name,
            f"exists; writable ({schema.owner if schema.owner in principals else catalog.owner} owns "
            f"{'it' if schema.owner in principals else 'its catalog'})",
        )
    try:
        effective = w.grants.get_effective("schema", full_name)
    except Exception as exc:  # noqa: BLE001 - the API may refuse a non-owner: then say so
        return _ok(name, f"exists; writable not checked (effective permissions: {_first_line(exc)})")
    held = {
        str(getattr(p.privilege, "value", p.privilege))
        for a in effective.privilege_assignments or []
        if a.principal in principals
        for p in a.privileges or []
    }
    missing = [] if _ALL in held else [p for p in ("USE_CATALOG", "USE_SCHEMA", *privileges) if p not in held]
    if missing:
        grants = [f"GRANT USE_CATALOG ON CATALOG {catalog_name} TO `{user}`"] if "USE_CATALOG" in missing else []
        on_schema = [p for p in missing if p != "USE_CATALOG"]
        if on_schema:
            grants.append(f"GRANT {', '.join(on_schema)} ON SCHEMA {full_name} TO `{user}`")
        return _problem(
            name,
            f"exists, but you ({user}) lack {', '.join(missing)} there ({why}): ask its owner "
            f"({schema.owner}) to run {'; '.join(grants)}",
        )
    return _ok(name, f"exists; writable (you hold {', '.join(sorted(held))})")


def _secret_checks(project: ProjectConfig, backend: Backend, w: WorkspaceClient) -> list[Check]:
    refs = list(secret_refs(project.endpoint.to_databricks_body())) if project.endpoint else []
    if not refs:
        return [_ok("secrets", "the config references no secret")]
    if backend.kind == "local":
        return [_local_secret(field, scope, key, backend.home) for field, scope, key in refs]
    from databricks.sdk.errors import NotFound

    scopes = {s.name for s in w.secrets.list_scopes()}
    keys: dict[str, set[str]] = {}
    found = []
    for field, scope, key in refs:
        name = f"secret {{{{secrets/{scope}/{key}}}}}"
        if scope not in scopes:
            found.append(
                _problem(
                    name, f"{field}: no secret scope {scope}: create it (databricks secrets create-scope {scope}) and put the key"
                )
            )
            continue
        if scope not in keys:
            try:
                keys[scope] = {m.key for m in w.secrets.list_secrets(scope) if m.key}
            except NotFound:
                keys[scope] = set()
        if key not in keys[scope]:
            found.append(_problem(name, f"{field}: scope {scope} has no key {key}: databricks secrets put-secret {scope} {key}"))
        else:
            found.append(_ok(name, f"{field}: scope and key exist (value not read)"))
    return found


def _local_secret(field: str, scope: str, key: str, home: Path | None) -> Check:
    from llmops_nb.config.secrets import resolve_secret
    from llmops_nb.errors import WorkspaceError

    name = f"secret {{{{secrets/{scope}/{key}}}}}"
    try:
        resolve_secret(f"{{{{secrets/{scope}/{key}}}}}", home)  # the value is discarded at once
    except WorkspaceError as exc:
        return _problem(name, f"{field}: {exc}")
    return _ok(name, f"{field}: resolves on the local workspace (value not shown)")


def _version_checks(project: ProjectConfig, backend: Backend, w: WorkspaceClient, model_version: str | None) -> list[Check]:
    if project.endpoint is None:
        return []
    found = []
    for entity in project.endpoint.served_entities:
        if entity.entity_name is None:
            continue
        own = model_version or project.model.version  # model.version: a uc source's
        version = entity.entity_version or (own if entity.entity_name == project.model.name else None)
        found.append(_version_check(backend, w, entity.entity_name, version))
    return found


def _throughput_checks(project: ProjectConfig, backend: Backend, w: WorkspaceClient, model_version: str | None) -> list[Check]:
    """A ``uc`` source: what deploy will set (or refuse) for provisioned throughput."""
    if project.model.source != "uc" or project.endpoint is None:
        return []
    from llmops_nb.endpoints.provisioned import plan
    from llmops_nb.models.sources import prepare

    name = "provisioned throughput"
    try:
        prepare(project.model, databricks=backend.kind == "databricks")  # refuses uc on the local workspace
        planned = plan(project.endpoint, project.model.name, w, version=model_version or project.model.version)
    except ConfigError as exc:
        return [_problem(name, str(exc))]
    if not planned:
        return [_skipped(name, f"no served entity serves {project.model.name} (model.name)")]
    return [_ok(f"{name} {t.entity}", t.describe()) for t in planned]


def _version_check(backend: Backend, w: WorkspaceClient, full_name: str, version: str | None) -> Check:
    name = f"model version {full_name}" + (f" v{version}" if version else " (latest)")
    register = "register it first (01_register.ipynb or `llmops-nb register`)"
    if not _uses_uc(backend):
        return _mlflow_version_check(backend, full_name, version, name, register)
    from databricks.sdk.errors import NotFound

    try:
        if version:
            info = w.model_versions.get(full_name, int(version))
        else:
            # "There is no guarantee of a specific ordering of the elements in the response"
            # (databricks-sdk-py service/catalog.py, ModelVersionsAPI.list): the highest number, as
            # models.registry.latest_version takes it, not the first item.
            latest = max(w.model_versions.list(full_name), key=lambda v: int(v.version or 0), default=None)
            if latest is None:
                return _problem(name, f"{full_name} has no version in Unity Catalog: {register}")
            info = latest
    except NotFound as exc:
        return _problem(name, f"not in Unity Catalog ({_first_line(exc)}): {register}, or fix entity_version")
    status = str(getattr(info.status, "value", info.status))
    if status != "READY":
        return _problem(name, f"version {info.version} is {status}, not READY: wait for its registration or register again")
    return _ok(name, f"version {info.version} exists and is READY")


def _mlflow_version_check(backend: Backend, full_name: str, version: str | None, name: str, register: str) -> Check:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(backend.tracking_uri, backend.registry_uri)
    where = f"the MLflow registry {backend.registry_uri.split('?')[0]}"
    try:
        if version:
            client.get_model_version(full_name, str(version))
            return _ok(name, f"exists in {where}")
        versions = client.search_model_versions(f"name = '{full_name}'")
    except MlflowException as exc:
        return _problem(name, f"not in {where} ({_first_line(exc)}): {register}")
    if not versions:
        return _problem(name, f"{full_name} has no version in {where}: {register}")
    return _ok(name, f"version {max(int(v.version) for v in versions)} exists in {where}")


def _endpoint_exists(w: WorkspaceClient, endpoint: str) -> Check:
    from databricks.sdk.errors import NotFound

    try:
        w.serving_endpoints.get(endpoint)
    except NotFound:
        return _problem(
            f"endpoint {endpoint}",
            "does not exist in this workspace: name an existing (foundation model) endpoint in foundation_endpoint",
        )
    return _ok(f"endpoint {endpoint}", "exists")


def _quality_checks(project: ProjectConfig, w: WorkspaceClient) -> list[Check]:
    """``rollout.quality`` of a canary only: the judge endpoint the steps' answers go to exists."""
    from databricks.sdk.errors import NotFound

    rc = project.rollout
    if not rc.canary or rc.quality is None:
        return []
    judge = str(rc.quality.judge_endpoint)
    try:
        w.serving_endpoints.get(judge)
    except NotFound:
        return [_problem("rollout quality", f"rollout.quality.judge_endpoint: {judge!r} is not allowed; an existing chat "
                         "endpoint of this workspace (an external model or a foundation endpoint)")]  # fmt: skip
    return [_ok("rollout quality", f"{rc.quality.requests} live requests of each step asked again of both entities "
                f"and compared by {judge}, in both orders")]  # fmt: skip


# --------------------------------------------------------------------------- entry points


def run(
    project: ProjectConfig, backend: Backend, *, model_version: str | None = None, client: WorkspaceClient | None = None
) -> Report:
    """Every check for a loaded (valid) project config on ``backend``."""
    checks = [_ok("config", "valid (names, traffic routes, external models, secret references)"), *config_checks(project)]
    checks += _rollout_checks(project, backend)
    w = client or backend.workspace_client(retry_timeout_seconds=30, http_timeout_seconds=30)
    checks += workspace_checks(project, backend, w, model_version=model_version)
    checks += _quality_checks(project, w)
    return Report(tuple(checks))


def run_config(
    config_path: str | Path = "",
    backend: str = "",
    *,
    model_version: str | None = None,
    resolve: Callable[[str], Backend] | None = None,
    strategy: str = "",
) -> Report:
    """Load the config (a bad one is the one problem), pick its backend, then :func:`run`;
    ``strategy`` replaces the config's ``rollout.strategy`` (02_deploy's parameter)."""
    from llmops_nb.backends import resolve_backend
    from llmops_nb.config.io import default_config_path
    from llmops_nb.config.project import load_project_config, with_rollout

    path = config_path or default_config_path()
    try:
        project = with_rollout(load_project_config(path), strategy=strategy)
    except ConfigError as exc:
        return Report((_problem("config", f"{path}: {exc}"),))
    chosen = (resolve or resolve_backend)(backend or project.backend)
    return run(project, chosen, model_version=model_version)


def check(
    config_path: str | Path = "",
    backend: str = "",
    *,
    model_version: str | None = None,
    echo: Callable[[str], None] = print,
    strategy: str = "",
) -> Report:
    """Print every check's line; raise :class:`PreflightFailed` if one found a problem (notebooks)."""
    report = run_config(config_path, backend, model_version=model_version, strategy=strategy)
    for line in report.lines():
        echo(line)
    if report.problems:
        raise PreflightFailed(f"preflight: {len(report.problems)} problem(s); the first: {report.problems[0].line}")
    return report
