"""The evaluation's bookkeeping thread against a real MLflow store: rows out, traces in or counted."""

from __future__ import annotations

import json
from pathlib import Path

from llmops_nb.evaluation.bookkeeping import Bookkeeper


def _row(i: int, error: str | None = None) -> dict:
    return {
        "id": f"r{i}",
        "question": f"question {i}",
        "expected": "x",
        "answer": "" if error else "x",
        "error": error,
        "exact_match": 0.0 if error else 1.0,
        "contains_match": 0.0 if error else 1.0,
        "response_length": 0 if error else 1,
        "latency_ms": None if error else 200.0,
        "completion_tokens": None if error else 1,
        "tokens_per_second": None if error else 5.0,
    }


def test_rows_stream_out_and_the_rows_that_matter_are_traced_with_their_scores(tmp_path: Path) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = mlflow.create_experiment("book")
    run = mlflow.MlflowClient().create_run(experiment)
    keeper = Bookkeeper(tmp_path / "rows.jsonl", run=lambda: (experiment, run.info.run_id), trace_rows=2)
    for i in range(5):
        keeper.put(i, _row(i, error="HTTP 500" if i == 4 else None))
    metrics = keeper.close().metrics()
    assert [json.loads(line)["id"] for line in (tmp_path / "rows.jsonl").read_text().splitlines()] == [
        "r0",
        "r1",
        "r2",
        "r3",
        "r4",
    ]
    assert metrics["rows"] == 5 and metrics["error_rate"] == 0.2
    assert keeper.traced == 3 and keeper.trace_failures == []  # the first two and the failed one
    traces = mlflow.search_traces(locations=[experiment], run_id=run.info.run_id, return_type="list")
    assert sorted(t.info.tags["llmops_nb.row_id"] for t in traces) == ["r0", "r1", "r4"]
    failed = next(t for t in traces if t.info.tags["llmops_nb.row_id"] == "r4")
    assert failed.info.state.value == "ERROR"
    full = mlflow.get_trace(failed.info.trace_id)  # the scores arrived with the trace, in one export
    assert {"expected_response", "exact_match", "contains_match", "response_length"} <= {a.name for a in full.info.assessments}


def test_a_trace_the_store_refuses_is_counted_not_lost(tmp_path: Path) -> None:
    """MLflow's exporter logs a refused trace instead of raising: it is counted, with the store's reason."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.create_experiment("exists")
    keeper = Bookkeeper(tmp_path / "rows.jsonl", run=lambda: ("424242", "no-such-run"), trace_rows=2)
    for i in range(3):
        keeper.put(i, _row(i))
    keeper.close()
    assert keeper.traced == 0 and len(keeper.trace_failures) == 2
    assert "No Experiment with id=424242" in keeper.trace_failures[0], keeper.trace_failures
    assert len((tmp_path / "rows.jsonl").read_text().splitlines()) == 3  # every row is still in the table
