"""What the workspace accepts but does not apply, and deploy notes, reach the user (issue 14).

The real CLI (a subprocess) and the deploy step, over real HTTP against the fake workspace,
which answers writes with the local workspace's ``warnings`` list.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmops_nb.chain.params import STEP_OUTPUTS
from llmops_nb.config.project import ProjectConfig
from llmops_nb.errors import ConfigError
from llmops_nb.steps.deploy import deploy

ROOT = Path(__file__).resolve().parents[2]


def _project(**entity: Any) -> dict[str, Any]:
    project = yaml.safe_load((ROOT / "tests" / "configs" / "fake-databricks.yml").read_text())
    project["endpoint"]["served_entities"][0].update(entity)
    return project


def _deploy(folder: Path, ws, project: dict[str, Any], version: str = "1") -> subprocess.CompletedProcess[str]:  # noqa: ANN001
    """``llmops-nb deploy`` in a subprocess; stdout and stderr merged, in the order written."""
    (folder / "project.yml").write_text(yaml.safe_dump(project))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_", "LLMOPS_"))}
    # MLflow as a workspace has it (the fake serves none): the applied-config history goes there
    env.update(
        ws.env(), LLMOPS_PROJECT_DIR=str(folder), PYTHONUNBUFFERED="1", MLFLOW_TRACKING_URI=f"sqlite:///{folder}/mlflow.db"
    )
    args = ["deploy", "--config", "project.yml", "--backend", "databricks", "--model-version", version, "--timeout", "60"]
    return subprocess.run(
        [sys.executable, "-m", "llmops_nb.cli.main", *args],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )


def _lines(result: subprocess.CompletedProcess[str], prefix: str) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith(prefix)]


def _before_url(result: subprocess.CompletedProcess[str], line: str) -> bool:
    out = result.stdout.splitlines()
    return out.index(line) < next(i for i, x in enumerate(out) if x.startswith("invocation URL: "))


def test_a_gpu_workload_deploys_with_one_warning_line_naming_the_field(tmp_path: Path, fake_workspace) -> None:  # noqa: ANN001
    result = _deploy(tmp_path, fake_workspace, _project(workload_type="GPU_SMALL"))
    assert result.returncode == 0, result.stdout
    assert "smollm2-chat: created" in result.stdout
    warnings = _lines(result, "warning: ")
    assert len(warnings) == 1, result.stdout
    assert warnings[0].startswith("warning: config.served_entities[0].workload_type='GPU_SMALL': accepted")
    assert _before_url(result, warnings[0])
    assert "Traceback" not in result.stdout


def test_a_plain_config_prints_no_warning(tmp_path: Path, fake_workspace) -> None:  # noqa: ANN001
    result = _deploy(tmp_path, fake_workspace, _project())
    assert result.returncode == 0, result.stdout
    assert "smollm2-chat: created" in result.stdout
    assert _lines(result, "warning:") == [] and _lines(result, "note:") == []


def test_the_warning_goes_to_stderr(tmp_path: Path, fake_workspace) -> None:  # noqa: ANN001
    (tmp_path / "project.yml").write_text(yaml.safe_dump(_project(workload_type="GPU_MEDIUM")))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_", "LLMOPS_"))}
    env.update(fake_workspace.env(), LLMOPS_PROJECT_DIR=str(tmp_path), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db")
    args = ["deploy", "--config", "project.yml", "--backend", "databricks", "--model-version", "1", "--timeout", "60"]
    result = subprocess.run(
        [sys.executable, "-m", "llmops_nb.cli.main", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "warning:" not in result.stdout
    assert [line for line in result.stderr.splitlines() if line.startswith("warning: ")] == [
        line for line in result.stderr.splitlines() if "GPU_MEDIUM" in line
    ]
    assert "workload_type='GPU_MEDIUM'" in result.stderr


def test_the_recovery_of_a_failed_earlier_update_is_printed(tmp_path: Path, fake_workspace) -> None:  # noqa: ANN001
    project = _project()
    assert _deploy(tmp_path, fake_workspace, project).returncode == 0
    v2 = ProjectConfig.model_validate(project).endpoint.with_resolved_versions(lambda name: "2")
    fake_workspace.set_faults(fail_next_update=v2.to_databricks_body()["config"]["served_entities"][0]["name"])
    failed = _deploy(tmp_path, fake_workspace, project, version="2")
    assert failed.returncode != 0 and "UPDATE_FAILED" in failed.stdout
    back = _deploy(tmp_path, fake_workspace, project)  # the last good config: no write, a note
    assert back.returncode == 0, back.stdout
    notes = _lines(back, "note: ")
    assert len(notes) == 1 and notes[0].startswith("note: the last config update ended UPDATE_FAILED")
    assert _before_url(back, notes[0]) and _lines(back, "warning:") == []


def test_the_deploy_step_prints_the_warnings_and_keeps_its_outputs(
    tmp_path: Path, fake_workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:  # noqa: ANN001
    from llmops_nb.backends import resolve_backend

    for key in [k for k in os.environ if k.startswith(("DATABRICKS_", "MLFLOW_", "LLMOPS_"))]:
        monkeypatch.delenv(key)
    for key, value in fake_workspace.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LLMOPS_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")  # the history's MLflow (the fake has none)
    gateway = {"usage_tracking_config": {"enabled": True}, "guardrails": {"input": {"safety": True}}}
    project = ProjectConfig.model_validate({**_project(), "endpoint": {**_project()["endpoint"], "ai_gateway": gateway}})
    out = deploy(project, resolve_backend("databricks"), model_version="1", timeout=60, progress=False)
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning: ")]
    assert len(printed) == 1 and printed[0].startswith("warning: ai_gateway.guardrails")
    assert set(STEP_OUTPUTS["deploy"]) <= set(out) and not any("warning" in str(v) for v in out.values())
    assert sorted(out) == ["config_hash", "deploy_action", "endpoint_name", "endpoint_url", "served_entities"]


# --------------------------------------------------------------------------- model.source: uc

LLAMA = "system.ai.llama_v3_2_1b_instruct"  # the fake optimizes llama models, chunk 950 tokens/s


def _uc_project(backend: str = "databricks", name: str = LLAMA, **entity: Any) -> ProjectConfig:
    return ProjectConfig.model_validate(
        {
            "backend": backend,
            "model": {"name": name, "source": "uc", "version": "2"},
            "endpoint": {"name": "llama-pt", "served_entities": [{"entity_name": name, **entity}]},
        }
    )


def _uc_backend(ws, kind: str = "databricks", tmp_path: Path | None = None):  # noqa: ANN001, ANN202
    import tempfile

    from llmops_nb.backends import Backend

    # MLflow tracking in SQLite (the fake serves none; a replace deploy on Databricks keeps its config there)
    uri = f"sqlite:///{tmp_path or tempfile.mkdtemp()}/mlflow.db"
    registry = "databricks-uc" if kind == "databricks" else uri
    return Backend(kind=kind, host=ws.host, token=ws.token, tracking_uri=uri, registry_uri=registry)


def _serving_writes(ws) -> list[dict[str, Any]]:  # noqa: ANN001
    return [r for r in ws.write_calls() if r["path"].startswith("/api/2.0/serving-endpoints")]


def test_a_uc_source_deploys_with_one_chunk_of_provisioned_throughput_and_again_makes_no_write(fake_workspace) -> None:  # noqa: ANN001
    fake_workspace.uc_model(LLAMA, versions=2)
    out = deploy(_uc_project(), _uc_backend(fake_workspace), timeout=60, progress=False, log=None)
    assert out["deploy_action"] == "created" and out["served_entities"] == ["system-ai-llama_v3_2_1b_instruct-2"]
    (create,) = _serving_writes(fake_workspace)
    entity = create["body"]["config"]["served_entities"][0]
    assert entity["entity_version"] == "2"  # model.version, no registry asked
    assert (entity["min_provisioned_throughput"], entity["max_provisioned_throughput"]) == (0, 950)
    served = fake_workspace.client().serving_endpoints.get("llama-pt").config.served_entities[0]
    assert (served.min_provisioned_throughput, served.max_provisioned_throughput) == (0, 950)
    assert (
        deploy(_uc_project(), _uc_backend(fake_workspace), timeout=60, progress=False, log=None)["deploy_action"] == "unchanged"
    )
    assert len(_serving_writes(fake_workspace)) == 1


def test_a_uc_source_keeps_the_configs_multiples_of_the_chunk(fake_workspace) -> None:  # noqa: ANN001
    fake_workspace.uc_model(LLAMA, versions=2)
    project = _uc_project(min_provisioned_throughput=950, max_provisioned_throughput=2850)
    deploy(project, _uc_backend(fake_workspace), timeout=60, progress=False, log=None)
    entity = _serving_writes(fake_workspace)[0]["body"]["config"]["served_entities"][0]
    assert (entity["min_provisioned_throughput"], entity["max_provisioned_throughput"]) == (950, 2850)


@pytest.mark.parametrize(
    ("name", "entity", "field", "says"),
    [
        (LLAMA, {"max_provisioned_throughput": 1000}, "endpoint.served_entities[0].max_provisioned_throughput", "multiple of"),
        ("main.llmops.smollm2_135m_instruct", {}, "model.name", "not optimizable"),
    ],
)
def test_a_uc_source_off_the_chunk_grid_or_not_optimizable_is_one_line_and_writes_nothing(
    fake_workspace, name: str, entity: dict[str, Any], field: str, says: str
) -> None:  # noqa: ANN001
    fake_workspace.uc_model(name, versions=2)
    with pytest.raises(ConfigError) as e:
        deploy(_uc_project(name=name, **entity), _uc_backend(fake_workspace), timeout=60, progress=False, log=None)
    assert e.value.field == field and says in str(e.value) and "\n" not in str(e.value)
    assert _serving_writes(fake_workspace) == []


def test_a_uc_source_on_the_local_backend_is_refused_before_any_request(fake_workspace, tmp_path: Path) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError) as e:
        deploy(_uc_project("local"), _uc_backend(fake_workspace, "local", tmp_path), timeout=60, progress=False, log=None)
    assert e.value.field == "model.source" and "Databricks only" in str(e.value)
    assert fake_workspace.requests() == []
