"""The job-run simulator: emulated dbutils, and the bundle's job run end to end against the fake workspace."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from llmops_nb.chain import bundle
from llmops_nb.chain.params import declare_widgets
from llmops_nb.testing.jobsim import SETUP_TAG, EmulatedDbutils, TaskValueError, resolve_refs, run_job

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / bundle.BUNDLE_FILE
FAKE_CONFIG = ROOT / "tests" / "configs" / "fake-databricks.yml"


def test_widgets_return_job_parameters_over_declared_defaults(tmp_path: Path) -> None:
    dbutils = EmulatedDbutils({"model_version": "3", "resume": "true"}, {}, tmp_path / "values.json")
    got = declare_widgets(dbutils, {"model_version": "", "resume": False, "backend": "", "max_rows": 0})
    assert got == {"model_version": "3", "resume": "true", "backend": "", "max_rows": "0"}
    with pytest.raises(ValueError, match="InputWidgetNotDefined"):
        dbutils.widgets.get("nope")


def test_task_values_are_json_written_for_the_simulator_and_limited_to_48_kib(tmp_path: Path) -> None:
    out = tmp_path / "values.json"
    dbutils = EmulatedDbutils({}, {"register": {"model_version": "2"}}, out)
    dbutils.jobs.taskValues.set(key="metrics", value={"rows": 8})
    assert json.loads(out.read_text()) == {"metrics": {"rows": 8}}
    assert dbutils.jobs.taskValues.get(taskKey="register", key="model_version") == "2"
    assert dbutils.jobs.taskValues.get("register", "missing", default="x") == "x"
    with pytest.raises(TaskValueError, match="not set by an upstream task"):
        dbutils.jobs.taskValues.get("register", "missing")
    with pytest.raises(TaskValueError, match="more than the 49152 allowed"):
        dbutils.jobs.taskValues.set("big", "x" * 50_000)
    with pytest.raises(TaskValueError, match="not JSON serializable"):
        dbutils.jobs.taskValues.set("nan", float("nan"))


def test_references_are_filled_like_databricks_does() -> None:
    values = {"register": {"model_version": "1"}, "evaluate": {"promoted": True}}
    assert resolve_refs("{{tasks.register.values.model_version}}", values, {}, "f") == "1"
    assert resolve_refs("{{ tasks.evaluate.values.promoted }}", values, {}, "f") == "true"
    assert resolve_refs("v{{job.parameters.tag}}-{{job.run_id}}", values, {"tag": "x"}, "f") == "vx-{{job.run_id}}"
    with pytest.raises(TaskValueError, match="task register did not set task value model_uri"):
        resolve_refs("{{tasks.register.values.model_uri}}", values, {}, "deploy.model_uri")


def test_a_failing_task_is_retried_and_its_downstream_tasks_do_not_run(tmp_path: Path) -> None:
    for folder in ("notebooks", "configs"):
        (tmp_path / folder).symlink_to(ROOT / folder)
    data = bundle.load(BUNDLE)
    data["resources"]["jobs"][bundle.JOB_KEY]["tasks"][0]["max_retries"] = 1
    (tmp_path / "databricks.yml").write_text(__import__("yaml").safe_dump(data, sort_keys=False))
    run = run_job(
        tmp_path / "databricks.yml",
        variables={"config_path": str(tmp_path / "missing.yml")},
        out=tmp_path / "run",
        log=lambda _: None,
    )
    assert run.state == "FAILED"
    register = run.tasks["register"]
    assert register.state == "FAILED" and register.attempts == 2 and "missing.yml" in (register.error or "")
    assert register.params == {"config_path": str(tmp_path / "missing.yml"), "backend": "databricks"}
    assert [run.tasks[k].state for k in ("deploy", "serve", "evaluate")] == ["UPSTREAM_FAILED"] * 3
    executed = nbformat.read(register.notebook, as_version=4)
    setup = [c for c in executed.cells if SETUP_TAG in c.metadata.get("tags", [])]
    assert len(setup) == 1 and "EmulatedDbutils" in setup[0].source


@pytest.mark.model  # the register step logs the real GGUF
def test_the_bundle_job_runs_end_to_end_against_the_fake_workspace(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_workspace,  # noqa: ANN001
) -> None:
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

    run = run_job(BUNDLE, target="dev", variables={"config_path": str(FAKE_CONFIG)}, out=tmp_path / "run", log=lambda _: None)

    assert run.state == "SUCCESS", {k: t.error for k, t in run.tasks.items()}
    assert run.order == ["register", "deploy", "serve", "evaluate"]
    register, evaluate = run.tasks["register"].values, run.tasks["evaluate"]
    assert register["model_name"] == "main.llmops.smollm2_135m_instruct" and register["model_version"] == "1"
    # the evaluate step got the version register published, through task values and widgets
    assert evaluate.params["model_version"] == register["model_version"]
    assert evaluate.params["endpoint_name"] == run.tasks["deploy"].values["endpoint_name"] == "smollm2-chat"
    assert run.tasks["deploy"].params["model_version"] == "1"
    assert evaluate.values["metrics"]["rows"] == 8 and evaluate.values["promoted"] is False
    import mlflow

    tags = mlflow.MlflowClient(tracking_uri=db).get_run(evaluate.values["eval_run_id"]).data.tags
    assert tags["llmops_nb.model_version"] == register["model_version"]
    served = fake_workspace.client().serving_endpoints.get("smollm2-chat").config.served_entities
    assert [(e.entity_name, e.entity_version) for e in served] == [("main.llmops.smollm2_135m_instruct", "1")]
    assert [w["method"] for w in fake_workspace.write_calls()] == ["POST"]
