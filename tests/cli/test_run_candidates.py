"""Issue 30's "done when": the new version, the champion and an external model in one config,
`llmops-nb run`, and a decision with its confidence in the output, the notebook, the report and MLflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.endpoints.apply import deploy
from llmops_nb.evaluation.datasets import BUNDLED_PATH, load_dataset

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "llmops_nb.cli.main"]
MODEL = "main.llmops.smollm2_135m_instruct"
#: the external model says every bundled row's expected answer; the registered versions (the fake
#: responder) echo the question, so the external model is the better one on these rows
EXPECTED = {r["question"]: r["expected"] for r in load_dataset(BUNDLED_PATH)}


def _config(tmp_path: Path) -> Path:
    config = yaml.safe_load((ROOT / "tests" / "configs" / "fake-databricks.yml").read_text())
    entity = {"entity_name": MODEL, "workload_size": "Small", "scale_to_zero_enabled": False}
    # the new version (the latest: no register step here) takes the traffic; the champion is served beside it to be asked
    config["endpoint"]["served_entities"] = [{"name": "new", **entity}, {"name": "champ", **entity, "entity_version": "1"}]
    config["endpoint"]["traffic_config"] = {
        "routes": [
            {"served_entity_name": "new", "traffic_percentage": 100},
            {"served_entity_name": "champ", "traffic_percentage": 0},
        ]
    }
    config["evaluation"] = {
        "dataset": "bundled",
        "max_rows": 10,
        "concurrency": 4,
        "thresholds": {"error_rate": 0.5},
        "candidates": [{"name": "new"}, {"name": "champion", "version": "champion"}, {"name": "gpt", "endpoint": "gpt-external"}],
        "baseline": "champion",
        "prices": {"gpt": {"input_per_million": 0.15, "output_per_million": 0.6}},
        "decision": {"primary": "contains_match", "mode": "superiority", "margin": 0.05},
    }
    path = tmp_path / "project.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch):  # noqa: ANN001, ANN201
    """The fake workspace with ``gpt-external`` (an external model on the fake provider) deployed."""
    from llmops_nb.testing import fake_workspace
    from llmops_nb.testing.provider import fake_provider

    monkeypatch.setenv("LLMOPS_SECRET_LLM_OPENAI", "sk-" + "candidates-0123456789")
    with fake_provider() as provider, fake_workspace(tmp_path / "ws", ready_seconds=0.1) as ws:
        provider.reply = lambda body: EXPECTED.get(body["messages"][-1]["content"], "?")
        external = {"name": "gpt-4o-mini", "provider": "openai", "task": "llm/v1/chat",
                    "openai_config": {"openai_api_key": "{{secrets/llm/openai}}", "openai_api_base": provider.base_url}}  # fmt: skip
        body = {"name": "gpt-external", "served_entities": [{"name": "gpt", "external_model": external}]}
        deploy(ws.client(), EndpointConfig.model_validate(body), progress=False, poll_interval=0.1)
        yield ws


def test_new_champion_and_an_external_model_in_one_run_give_one_decision_everywhere(tmp_path: Path, workspace) -> None:  # noqa: ANN001
    import mlflow

    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(db, db)
    client.create_registered_model(MODEL)
    for _ in range(2):
        client.create_model_version(MODEL, source=str(tmp_path), run_id=None)
    client.set_registered_model_alias(MODEL, "champion", "1")
    config = _config(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_", "LLMOPS_"))}
    env.update(workspace.env(), LLMOPS_PROJECT_DIR=str(tmp_path), MLFLOW_TRACKING_URI=db, MLFLOW_REGISTRY_URI=db)
    done = subprocess.run(
        [*CLI, "run", "--config", str(config), "--steps", "deploy,evaluate", "--cold-kernels"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    # the output: the decision in one paragraph; the winner is no registered version, so no alias moves
    decision = next(line for line in done.stdout.splitlines() if line.startswith("Decision: "))
    assert decision.startswith("Decision: PROMOTE gpt (10 rows, superiority on contains_match"), decision
    assert "the winner gpt is not a registered version" in done.stdout
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"

    # decision.json in the run folder: three candidates on the same 10 rows, intervals, paired tests, cost
    (record_path,) = (tmp_path / "runs").glob("*/decision.json")
    record = json.loads(record_path.read_text())
    assert record["rows"] == 10 and [c["name"] for c in record["candidates"]] == ["new", "champion", "gpt"]
    by_name = {c["name"]: c for c in record["candidates"]}
    gpt = by_name["gpt"]["metrics"]["contains_match"]
    assert gpt["value"] == 1.0 and 0.6 < gpt["ci_low"] < 1.0
    assert by_name["champion"]["metrics"]["contains_match"]["ci_high"] < gpt["ci_low"]
    assert by_name["champion"]["version"] == "1" and by_name["new"]["version"] == "2"
    assert by_name["gpt"]["cost_per_1k"] > 0 and by_name["new"]["cost_per_1k"] is None
    compared = {(c["candidate"], c["metric"]): c for c in record["comparisons"]}
    assert compared[("gpt", "contains_match")]["baseline"] == "champion"
    assert compared[("gpt", "contains_match")]["p_value"] < 0.05 and compared[("gpt", "contains_match")]["ci_low"] > 0
    assert record["decision"]["action"] == "promote" and record["decision"]["winner"] == "gpt"

    # MLflow: one parent run with the decision, a child run per candidate, decision.json on the parent
    runs = client.search_runs([client.get_experiment_by_name("llmops-nb").experiment_id])
    parent = next(r for r in runs if r.data.tags.get("llmops_nb.step") == "evaluate-decision")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["llmops_nb.candidate"] for r in children) == ["champion", "gpt", "new"]
    assert {"decision.json", "decision_report.html"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert all("contains_match/ci_low" in r.data.metrics for r in children)

    # the executed notebook shows the report inline, and the report names the decision
    (notebook,) = (tmp_path / "runs").glob("*/04_evaluate.ipynb")
    outputs = json.dumps([c.get("outputs", []) for c in nbformat.read(notebook, 4).cells])
    assert "iframe" in outputs and "Decision: PROMOTE gpt" in outputs
    report = (record_path.parent / "decision_report.html").read_text(encoding="utf-8")
    assert "Decision: PROMOTE gpt" in report and "Rows where the candidates disagree" in report
    assert "candidates-0123456789" not in outputs + report + done.stdout + done.stderr  # the key stays in the workspace
