"""Issue 32's "done when", locally: `llmops-nb run -c <config with evaluation.engine: spark>`
evaluates on Spark (pyspark local mode in the step's kernel) against the fake workspace, with the
engine on the MLflow run, each row asked once and one result row per id in the result files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "llmops_nb.cli.main"]
MODEL = "main.llmops.smollm2_135m_instruct"
ROWS = 12


def test_run_with_engine_spark_evaluates_on_spark(tmp_path: Path) -> None:
    pytest.importorskip("pyspark")
    import mlflow

    from llmops_nb.testing import fake_workspace

    config = yaml.safe_load((ROOT / "tests" / "configs" / "fake-databricks.yml").read_text())
    config["evaluation"].update(max_rows=ROWS, engine="spark", spark={"partitions": 3, "master": "local[2]"})
    path = tmp_path / "project.yml"
    path.write_text(yaml.safe_dump(config))
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(db, db)
    client.create_registered_model(MODEL)
    client.create_model_version(MODEL, source=str(tmp_path), run_id=None)
    with fake_workspace(tmp_path / "ws", ready_seconds=0.1) as ws:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_", "LLMOPS_", "PYSPARK_"))}
        env.update(ws.env(), LLMOPS_PROJECT_DIR=str(tmp_path), MLFLOW_TRACKING_URI=db, MLFLOW_REGISTRY_URI=db)
        done = subprocess.run(
            [*CLI, "run", "--config", str(path), "--steps", "deploy,evaluate", "--cold-kernels"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        asked = [r for r in ws.requests() if r.get("path", "").endswith("/invocations")]
    assert done.returncode == 0, done.stderr[-3000:]
    assert any(line.startswith("Decision: ") for line in done.stdout.splitlines()), done.stdout[-2000:]
    # each bundled row asked once, by the Spark tasks (the 'chat' body the threads engine sends)
    questions = [r["body"]["messages"][-1]["content"] for r in asked]
    assert len(questions) == ROWS and len(set(questions)) == ROWS, questions
    runs = client.search_runs([client.get_experiment_by_name("llmops-nb").experiment_id])
    evaluated = [r for r in runs if r.data.params.get("engine")]
    assert evaluated and {r.data.params["engine"] for r in evaluated} == {"spark"}
    assert all(r.data.metrics.get("rows", ROWS) == ROWS for r in evaluated)
    # the tasks' result files, where the run says they are, one row per id
    (results,) = {r.data.params["results"] for r in evaluated}
    import pandas as pd

    files = sorted(Path(results).rglob("*.parquet"))
    assert files, sorted(p.name for p in Path(results).rglob("*"))
    table = pd.concat([pd.read_parquet(f) for f in files])
    assert len(table) == ROWS and table["id"].is_unique, table.columns.tolist()
    # and the run folder's per-row table (answers and scores, as the threads engine writes it)
    (rows_file,) = (tmp_path / "runs").glob("*/eval_rows.jsonl")
    ids = [json.loads(line)["id"] for line in rows_file.read_text().splitlines()]
    assert sorted(ids) == sorted(table["id"]), ids
