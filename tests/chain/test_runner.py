"""The whole chain (``llmops-nb run``): against the fake Databricks workspace, and failing in step 2.

The notebooks run in papermill kernels: separate processes that inherit environment
variables (not monkeypatches), so the tests point them at the fake with DATABRICKS_HOST.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from llmops_nb.chain import runner as chain_runner
from llmops_nb.chain import table as chain_table
from llmops_nb.chain.runner import StepFailed

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "tests" / "configs" / "fake-databricks.yml"
ENTITY = "main-llmops-smollm2_135m_instruct-1"

pytestmark = pytest.mark.model  # the register step logs the real GGUF


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_workspace) -> Path:  # noqa: ANN001
    """A project folder of its own, the fake as the Databricks workspace, MLflow on SQLite."""
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for key, value in {
        **fake_workspace.env(),
        "LLMOPS_PROJECT_DIR": str(tmp_path),
        "MLFLOW_TRACKING_URI": db,
        "MLFLOW_REGISTRY_URI": db,
        "LLMOPS_RETRY_TIMEOUT_SECONDS": "60",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DATABRICKS_CONFIG_PROFILE", raising=False)
    return tmp_path


def test_the_chain_runs_end_to_end_against_the_fake_workspace(project: Path, fake_workspace) -> None:  # noqa: ANN001
    result = chain_runner.run(CONFIG, progress=False, log=lambda _: None)
    run_dir = result.run_dir
    assert run_dir.parent == project / "runs"
    assert sorted(p.name for p in run_dir.glob("*.ipynb")) == sorted(chain_table.NOTEBOOKS.values())
    out = result.published
    assert out["model_name"] == "main.llmops.smollm2_135m_instruct" and out["model_version"] == "1"
    assert out["endpoint_name"] == "smollm2-chat"
    assert out["endpoint_url"] == f"{fake_workspace.host}/serving-endpoints/smollm2-chat/invocations"
    # the fake echoes questions back: the gate must fail, and say by how much
    assert out["promoted"] is False and out["metrics"]["rows"] == 8
    evaluate_nb = nbformat.read(run_dir / "04_evaluate.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in evaluate_nb.cells for o in c.get("outputs", []))
    assert "FAIL contains_match" in text or ("contains_match" in text and "NOT promoted" in text)
    # each step's outputs reached the next one as papermill parameters
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["completed"] == list(chain_table.STEPS)
    injected = [c for c in evaluate_nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert 'model_version = "1"' in injected[0].source and 'endpoint_name = "smollm2-chat"' in injected[0].source
    # every evaluation row was asked exactly once, plus the serve step's three prompts
    asked = [r for r in fake_workspace.requests() if r["path"].endswith("/invocations") and r.get("status") == 200]
    assert len(asked) == 3 + 8
    assert [w["method"] for w in fake_workspace.write_calls()] == ["POST"]  # one create, nothing else


def test_a_chain_that_fails_in_step_2_stops_and_says_where(project: Path, fake_workspace) -> None:  # noqa: ANN001
    fake_workspace.set_faults(fail_next_update=ENTITY)
    with pytest.raises(StepFailed) as err:
        chain_runner.run(CONFIG, progress=False, log=lambda _: None)
    text = str(err.value)
    assert text.startswith("step deploy failed in cell") and "DeployFailed" in text and ENTITY in text
    notebook = Path(text.rsplit("executed notebook: ", 1)[1])
    run_dir = notebook.parent
    assert notebook.name == "02_deploy.ipynb" and notebook.exists()
    assert not (run_dir / "03_serve.ipynb").exists()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["completed"] == ["register"]
    failed = nbformat.read(run_dir / "02_deploy.ipynb", as_version=4)
    assert any(o.get("ename") == "DeployFailed" for c in failed.cells for o in c.get("outputs", []))


def test_rerunning_only_evaluate_uses_the_running_endpoint(project: Path, fake_workspace) -> None:  # noqa: ANN001
    chain_runner.run(CONFIG, steps="register,deploy", progress=False, log=lambda _: None)
    fake_workspace.reset()
    result = chain_runner.run(
        CONFIG, steps="evaluate", progress=False, log=lambda _: None, overrides={"evaluate": {"max_rows": 4}}
    )
    assert result.steps == ["evaluate"] and result.published["metrics"]["rows"] == 4
    assert fake_workspace.write_calls() == []
