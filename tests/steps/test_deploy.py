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
    env.update(ws.env(), LLMOPS_PROJECT_DIR=str(folder), PYTHONUNBUFFERED="1")
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
    env.update(fake_workspace.env(), LLMOPS_PROJECT_DIR=str(tmp_path))
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
    gateway = {"usage_tracking_config": {"enabled": True}, "guardrails": {"input": {"safety": True}}}
    project = ProjectConfig.model_validate({**_project(), "endpoint": {**_project()["endpoint"], "ai_gateway": gateway}})
    out = deploy(project, resolve_backend("databricks"), model_version="1", timeout=60, progress=False)
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning: ")]
    assert len(printed) == 1 and printed[0].startswith("warning: ai_gateway.guardrails")
    assert set(STEP_OUTPUTS["deploy"]) <= set(out) and not any("warning" in str(v) for v in out.values())
    assert sorted(out) == ["config_hash", "deploy_action", "endpoint_name", "endpoint_url", "served_entities"]
