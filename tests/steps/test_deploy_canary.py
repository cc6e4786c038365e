"""The chain's deploy step with ``rollout.strategy: canary`` (issue 33), on the fake workspace
with real traffic: the first deploy creates the endpoint and says so, a failing version fails the
step with the reason (RolledBack) and leaves the champion serving, an equal one is promoted."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from llmops_nb.backends import Backend
from llmops_nb.config.gateway import AiGatewayConfig
from llmops_nb.config.project import ProjectConfig
from llmops_nb.endpoints.ops import get_endpoint
from llmops_nb.errors import ConfigError, RolledBack
from llmops_nb.rollout.state import default_store
from llmops_nb.steps.deploy import deploy
from llmops_nb.testing.load import LoadGenerator

MODEL = "smollm2-135m-instruct"
NAME = "step-canary"


def _project(**rollout: Any) -> ProjectConfig:
    return ProjectConfig.model_validate(
        {
            "backend": "local",
            "model": {"name": MODEL},
            "endpoint": {
                "name": NAME,
                "served_entities": [{"entity_name": MODEL, "workload_size": "Small"}],
                "ai_gateway": {"usage_tracking_config": {"enabled": True}},
            },
            "rollout": {"strategy": "canary", "min_requests": 15, "interval_s": 0.2, "max_wait_s": 60, **rollout},
        }
    )


@pytest.fixture
def backend(fake_workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:  # noqa: ANN001
    """The local backend kind pointed at the fake (its home holds the usage records)."""
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "home"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return Backend(kind="local", host=fake_workspace.host, token=fake_workspace.token, tracking_uri=uri,
                   registry_uri=uri, home=fake_workspace.home)  # fmt: skip


def _serving(backend: Backend) -> list[str]:
    found = get_endpoint(backend.workspace_client(), NAME) or {}
    return [e["name"] for e in found["config"]["served_entities"]]


def test_the_step_fails_with_the_reason_when_the_rollout_rolls_back(fake_workspace, backend: Backend) -> None:  # noqa: ANN001
    lines: list[str] = []
    first = deploy(_project(), backend, model_version="1", progress=False, log=lines.append)
    assert first["deploy_action"] == "created"
    assert lines == [f"first deploy of {NAME}: no champion serving, created as replace does"]
    fake_workspace.set_faults(entity_error_rate={f"{MODEL}-2": 0.3}, seed=3)
    reason = rf"^rolled back {NAME} to {MODEL}-1: step 1 \(10%\): (over the last [\d.]+ s, )?error rate above the limit"
    with LoadGenerator(fake_workspace.host, fake_workspace.token, NAME) as load, pytest.raises(RolledBack, match=reason):
        deploy(_project(max_error_rate=0.05), backend, model_version="2", progress=False, log=lines.append)
    assert _serving(backend) == [f"{MODEL}-1"]
    assert load.dropped == []
    record = default_store().latest(NAME)
    assert record is not None and record.status()["state"] == "rolled_back"


def test_the_step_promotes_an_equal_version(fake_workspace, backend: Backend) -> None:  # noqa: ANN001
    deploy(_project(), backend, model_version="1", progress=False, log=None)
    with LoadGenerator(fake_workspace.host, fake_workspace.token, NAME):
        out = deploy(_project(max_error_rate=0.25), backend, model_version="2", progress=False, log=None)
    assert out["served_entities"] == [f"{MODEL}-2"] and out["endpoint_name"] == NAME
    assert _serving(backend) == [f"{MODEL}-2"]
    assert [a.source for a in default_store().applied(NAME)][-1].endswith("promote")


def test_canary_without_usage_records_is_one_line_and_writes_nothing(fake_workspace, backend: Backend) -> None:  # noqa: ANN001
    project = _project()
    assert project.endpoint is not None
    project.endpoint.ai_gateway = None
    with pytest.raises(ConfigError, match=r"^endpoint.ai_gateway.usage_tracking_config.enabled: None is not allowed; "):
        deploy(project, backend, model_version="1", progress=False)
    assert fake_workspace.write_calls() == []


def _on_databricks(backend: Backend) -> Backend:
    """The databricks backend kind pointed at the fake: no home, traffic from the inference table."""
    return Backend(kind="databricks", host=backend.host, token=backend.token, tracking_uri=backend.tracking_uri,
                   registry_uri=backend.registry_uri)  # fmt: skip


TABLE = {"catalog_name": "main", "schema_name": "rollout", "enabled": True}


def _databricks_project(**rollout: Any) -> ProjectConfig:
    project = _project(**{"warehouse_id": "wh-1", "inference_table_lag_s": 2.5, **rollout})
    assert project.endpoint is not None
    project.endpoint.ai_gateway = AiGatewayConfig.model_validate({"inference_table_config": TABLE})
    return project


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (
            {"table": None},
            r"^endpoint.ai_gateway.inference_table_config.enabled: None is not allowed; a canary rollout on Databricks "
            r"reads each served entity's calls from the endpoint's inference table",
        ),
        ({"warehouse_id": ""}, r"^rollout.warehouse_id: '' is not allowed; .* through a SQL warehouse: set its id$"),
        (
            {"inference_table_lag_s": 3600.0},
            r"^rollout.max_wait_s: 60.0 is not allowed; at least rollout.inference_table_lag_s \(3600 s\): on Databricks "
            r"a step's calls reach the inference table up to that long after the request \(documented: within the hour\)",
        ),
    ],
)
def test_canary_on_databricks_needs_its_inference_table_a_warehouse_and_time(
    fake_workspace, backend: Backend, change, line
) -> None:  # noqa: ANN001, E501
    changes = dict(change)
    table = changes.pop("table", TABLE)
    project = _databricks_project(**changes)
    assert project.endpoint is not None and project.endpoint.ai_gateway is not None
    if table is None:
        project.endpoint.ai_gateway.inference_table_config = None
    with pytest.raises(ConfigError, match=line):
        deploy(project, _on_databricks(backend), model_version="1", progress=False)
    assert fake_workspace.write_calls() == []


def test_the_step_on_databricks_reads_the_inference_table_and_rolls_back_or_promotes(fake_workspace, backend: Backend) -> None:  # noqa: ANN001, E501
    on_databricks = _on_databricks(backend)
    fake_workspace.set_faults(inference_table_lag_s=0.5)
    lines: list[str] = []
    first = deploy(_databricks_project(), on_databricks, model_version="1", progress=False, log=lines.append)
    assert first["deploy_action"] == "created"
    assert lines == [f"first deploy of {NAME}: no champion serving, created as replace does"]
    lines.clear()
    fake_workspace.set_faults(entity_error_rate={f"{MODEL}-2": 0.3}, seed=3)
    reason = rf"^rolled back {NAME} to {MODEL}-1: step 1 \(10%\): (over the last [\d.]+ s, )?error rate above the limit"
    with LoadGenerator(fake_workspace.host, fake_workspace.token, NAME) as load, pytest.raises(RolledBack, match=reason):
        deploy(_databricks_project(max_error_rate=0.05), on_databricks, model_version="2", progress=False, log=lines.append)
    assert lines[0] == (
        f"reading live traffic from main.rollout.{NAME}_payload (joined to system.serving.served_entities) through SQL "
        "warehouse wh-1; its rows land up to 2.5 s after their request (Databricks: within the hour), so a step may wait "
        "that long for its calls"
    )
    assert _serving(backend) == [f"{MODEL}-1"] and load.dropped == []
    fake_workspace.set_faults(entity_error_rate={})
    with LoadGenerator(fake_workspace.host, fake_workspace.token, NAME):
        out = deploy(_databricks_project(max_error_rate=0.25), on_databricks, model_version="2", progress=False, log=None)
    assert out["served_entities"] == [f"{MODEL}-2"] and _serving(backend) == [f"{MODEL}-2"]


def test_a_table_the_rollout_cannot_read_on_databricks_is_one_line_and_changes_nothing(fake_workspace, backend: Backend) -> None:  # noqa: ANN001, E501
    import shutil

    from llmops_nb.protocol import inference_table as pt

    on_databricks = _on_databricks(backend)
    deploy(_databricks_project(), on_databricks, model_version="1", progress=False, log=None)
    with LoadGenerator(fake_workspace.host, fake_workspace.token, NAME, threads=1, pause=0.05):
        while not (pt.local_path(fake_workspace.home, f"main.rollout.{NAME}_payload") / "_delta_log").is_dir():
            time.sleep(0.1)
    shutil.rmtree(pt.local_path(fake_workspace.home, pt.SERVED_ENTITIES))  # no grant on the system table, say

    def changes() -> list[dict]:  # a statement is a POST that changes nothing
        return [r for r in fake_workspace.write_calls() if r["path"].startswith("/api/2.0/serving-endpoints")]

    before = changes()
    with pytest.raises(ConfigError, match=r"^rollout.warehouse_id: 'wh-1' is not allowed; the traffic query of .*"
                       r"did not succeed \(FAILED: \[TABLE_OR_VIEW_NOT_FOUND\]"):  # fmt: skip
        deploy(_databricks_project(), on_databricks, model_version="2", progress=False, log=None)
    assert changes() == before


def test_progress_events_carry_the_rollout_lines_and_end_with_done(fake_workspace, backend: Backend) -> None:  # noqa: ANN001
    """What ``llmops-nb deploy`` prints (stderr lines, then the final state) comes from these events."""
    events: list[Any] = []
    deploy(_project(), backend, model_version="1", progress=False, log=None, on_progress=events.append)
    assert [(e.phase, e.message) for e in events] == [
        ("message", f"first deploy of {NAME}: no champion serving, created as replace does"),
        ("done", ""),
    ]
    assert (events[-1].ready, events[-1].config_update, events[-1].action) == ("READY", "NOT_UPDATING", "created")
    events.clear()
    with LoadGenerator(fake_workspace.host, fake_workspace.token, NAME):
        deploy(_project(max_error_rate=0.25), backend, model_version="2", progress=False, log=None, on_progress=events.append)
    assert [e.phase for e in events] == ["message", "done"]
    assert events[0].message == f"promoted {MODEL}-2 on {NAME} after steps [10, 50, 100]"


def test_the_strategy_parameter_overrides_the_configs(fake_workspace, backend: Backend) -> None:  # noqa: ANN001
    """02_deploy's ``strategy``: canary for a replace config, replace for a canary one."""
    lines: list[str] = []
    first = deploy(_project(strategy="replace"), backend, model_version="1", progress=False, log=lines.append, strategy="canary")
    assert first["deploy_action"] == "created"
    assert lines == [f"first deploy of {NAME}: no champion serving, created as replace does"]  # the canary's line
    out = deploy(_project(), backend, model_version="2", progress=False, log=None, strategy="replace")
    assert out["served_entities"] == [f"{MODEL}-2"] and default_store().latest(NAME) is None  # one update, no rollout
    assert default_store().applied(NAME)[-1].source == "deploy (replace)"
    with pytest.raises(ConfigError, match=r"^strategy: 'blue-green' is not allowed"):
        deploy(_project(), backend, model_version="3", progress=False, strategy="blue-green")


def test_a_replace_deploy_over_a_rollout_in_progress_is_one_line_and_writes_nothing(fake_workspace, backend: Backend) -> None:  # noqa: ANN001
    """A rollout's split is owned by its record: a replace deploy would leave the record in progress
    (and a later canary deploy rolling back to its champion), so it is refused with the ways out."""
    from dataclasses import replace

    from llmops_nb.rollout.state import IN_PROGRESS, RolloutRecord

    deploy(_project(), backend, model_version="1", progress=False, log=None)
    store = default_store()
    store.save(
        RolloutRecord(
            id="r1",
            endpoint=NAME,
            state=IN_PROGRESS,
            steps=[10, 50, 100],
            step=1,
            champion=f"{MODEL}-1",
            challenger=f"{MODEL}-2",
            champion_config=None,
            challenger_config={},
            challenger_hash="h",
        )
    )
    fake_workspace.reset()
    with pytest.raises(
        ConfigError,
        match=rf"^rollout.strategy: 'replace' is not allowed; endpoint {NAME} has a canary rollout "
        r"in progress \(interrupted, at 50% to the challenger\).*llmops-nb rollback",
    ) as caught:
        deploy(_project(strategy="replace"), backend, model_version="2", progress=False, log=None)
    assert "\n" not in str(caught.value)
    assert fake_workspace.write_calls() == [] and _serving(backend) == [f"{MODEL}-1"]
    record = store.latest(NAME)
    assert record is not None
    store.save(replace(record, state="rolled_back"))  # once it is over, replace deploys again
    assert (
        deploy(_project(strategy="replace"), backend, model_version="2", progress=False, log=None)["deploy_action"] == "updated"
    )


def test_the_step_runs_the_quality_check_of_rollout_quality(fake_workspace, backend: Backend) -> None:  # noqa: ANN001
    """``rollout.quality`` reaches the rollout: a judge preferring the champion fails the step."""
    import yaml

    from llmops_nb.config.endpoint import EndpointConfig
    from llmops_nb.endpoints.apply import deploy as apply_config
    from llmops_nb.testing.provider import fake_provider

    (fake_workspace.home / "secrets.yml").write_text(yaml.safe_dump({"judge": {"openai": "sk-" + "step-judge-0123456789"}}))
    with fake_provider() as provider:

        def prefers_champion(body: dict[str, Any]) -> str:
            first = body["messages"][-1]["content"].split("Answer A:", 1)[1].split("Answer B:", 1)[0]
            return "A" if f"[{MODEL}-1]" in first else "B"

        provider.reply = prefers_champion
        openai = {"openai_api_key": "{{secrets/judge/openai}}", "openai_api_base": provider.base_url}
        external = {"name": "gpt-judge", "provider": "openai", "task": "llm/v1/chat", "openai_config": openai}
        judge = EndpointConfig.model_validate(
            {"name": "judge", "served_entities": [{"name": "judge", "external_model": external}]}
        )
        apply_config(backend.workspace_client(), judge, timeout=60, poll_interval=0.1, progress=False)
        data = _project().model_dump(exclude_none=True)
        data["endpoint"]["ai_gateway"]["inference_table_config"] = {"catalog_name": "main", "schema_name": "s", "enabled": True}
        data["rollout"].update(max_error_rate=0.25, quality={"requests": 8, "judge_endpoint": "judge"})
        project = ProjectConfig.model_validate(data)
        deploy(project, backend, model_version="1", progress=False, log=None)
        lost = r"step 1 \(10%\): quality: the challenger lost 8 of 8 decided comparisons to the champion, p = 0\.0039"
        with (
            LoadGenerator(fake_workspace.host, fake_workspace.token, NAME, prompt=lambda n: f"q{n % 20}"),
            pytest.raises(RolledBack, match=lost),
        ):
            deploy(project, backend, model_version="2", progress=False, log=None)
    assert _serving(backend) == [f"{MODEL}-1"]
    assert len(provider.requests) == 16
