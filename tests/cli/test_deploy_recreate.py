"""`llmops-nb deploy` against the fake Databricks workspace: an immutable change is one line, `--recreate` applies it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _deploy(folder: Path, ws, *extra: str) -> subprocess.CompletedProcess[str]:  # noqa: ANN001
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_", "LLMOPS_"))}
    env.update(
        ws.env(), LLMOPS_PROJECT_DIR=str(folder), MLFLOW_TRACKING_URI=f"sqlite:///{folder}/mlflow.db"
    )  # the fake serves no MLflow
    args = ["deploy", "--config", "project.yml", "--backend", "databricks", "--model-version", "1", "--timeout", "60"]
    return subprocess.run(
        [sys.executable, "-m", "llmops_nb.cli.main", *args, *extra],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_an_immutable_change_needs_recreate(tmp_path: Path, fake_workspace) -> None:  # noqa: ANN001
    project = yaml.safe_load((ROOT / "tests" / "configs" / "fake-databricks.yml").read_text())
    project["endpoint"]["description"] = "first words"
    (tmp_path / "project.yml").write_text(yaml.safe_dump(project))
    first = _deploy(tmp_path, fake_workspace)
    assert first.returncode == 0, first.stderr
    assert "smollm2-chat: created" in first.stdout

    project["endpoint"]["description"] = "other words"
    (tmp_path / "project.yml").write_text(yaml.safe_dump(project))
    fake_workspace.reset()
    refused = _deploy(tmp_path, fake_workspace)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "description: 'other words' is not allowed" in errors[0] and "--recreate" in errors[0]
    assert fake_workspace.write_calls() == []

    recreated = _deploy(tmp_path, fake_workspace, "--recreate")
    assert recreated.returncode == 0, recreated.stderr
    assert "smollm2-chat: recreated" in recreated.stdout
    assert [(c["method"], c["path"]) for c in fake_workspace.write_calls()] == [
        ("DELETE", "/api/2.0/serving-endpoints/smollm2-chat"),
        ("POST", "/api/2.0/serving-endpoints"),
    ]
