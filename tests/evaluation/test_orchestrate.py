"""evaluate_endpoint end to end: the fake workspace over HTTP, a real MLflow store in SQLite."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.endpoints.apply import deploy as apply_deploy
from llmops_nb.errors import ConfigError
from llmops_nb.evaluation.datasets import dataset_digest, load_dataset
from llmops_nb.evaluation.metrics import KNOWN_METRICS, aggregate
from llmops_nb.evaluation.mlflow_run import TABLE_ARTIFACT
from llmops_nb.evaluation.orchestrate import evaluate_and_promote, evaluate_endpoint
from llmops_nb.evaluation.plot import PLOT_ARTIFACT, plot_results
from llmops_nb.evaluation.rows import TABLE_COLUMNS

# The fake answers "[<entity>] echo: <question>": one row matches exactly, one contains its answer.
CRAFTED = [
    {"id": "x1", "question": "Repeat", "expected": "m-1 echo: repeat", "aliases": []},
    {"id": "x2", "question": "Say the word blue.", "expected": "blue", "aliases": []},
]


@pytest.fixture
def chat(fake_workspace):  # noqa: ANN001, ANN201
    """The fake workspace with a READY endpoint ``chat``, its request record cleared."""
    deploy(fake_workspace, "chat")
    fake_workspace.reset()
    return fake_workspace


def asked(ws) -> list[str]:  # noqa: ANN001
    """The questions of the invocations the fake answered."""
    return [
        r["body"]["messages"][-1]["content"] for r in ws.requests() if r["path"].endswith("/invocations") and r["status"] == 200
    ]


def test_each_row_is_asked_once_scored_and_logged(chat, tmp_path: Path) -> None:  # noqa: ANN001
    import mlflow

    rows = load_dataset(max_rows=6) + CRAFTED
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = evaluate_endpoint(
        chat.client(),
        "chat",
        rows,
        concurrency=4,
        tracking_uri=uri,
        progress=False,
        run_name="eval-test",
        tags={"llmops_nb.model_version": "1"},
        output_dir=tmp_path,
    )
    assert sorted(asked(chat)) == sorted(r["question"] for r in rows)
    assert result.queried == len(rows)
    assert list(result.table.columns) == list(TABLE_COLUMNS)
    assert list(result.table["id"]) == [r["id"] for r in rows]
    assert result.metrics["exact_match"] == result.metrics["exact_match/mean"] == pytest.approx(1 / 8)
    assert result.metrics["contains_match"] == pytest.approx(2 / 8)
    assert result.metrics["error_rate"] == 0 and result.metrics["rows"] == 8
    assert 0 < result.metrics["latency_p50_ms"] <= result.metrics["latency_p95_ms"]
    assert result.metrics["mean_completion_tokens"] > 0 and result.metrics["tokens_per_second"] > 0
    assert set(result.table["served_entity"]) == {"m-1"}

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(result.run_id)
    assert run.data.params["dataset_digest"] == result.dataset_digest == dataset_digest(rows)
    assert run.data.params["endpoint"] == "chat" and run.data.params["concurrency"] == "4"
    assert run.data.tags["llmops_nb.model_version"] == "1"
    assert run.info.status == "FINISHED" and run.info.run_name == "eval-test"
    assert {"mlflow.source.name", "mlflow.user"} <= set(run.data.tags)  # as mlflow.start_run records
    assert run.data.params["resumed_rows"] == "0"
    for name in ("exact_match/mean", "contains_match", "latency_p95_ms", "error_rate", "rows"):
        assert run.data.metrics[name] == pytest.approx(result.metrics[name])
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {TABLE_ARTIFACT, PLOT_ARTIFACT} <= artifacts
    logged = json.loads(Path(client.download_artifacts(result.run_id, TABLE_ARTIFACT, str(tmp_path))).read_text())
    assert [row[logged["columns"].index("id")] for row in logged["data"]] == [r["id"] for r in rows]
    assert result.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # mlflow.genai.evaluate recorded one trace per row with its assessments.
    traces = mlflow.search_traces(locations=[run.info.experiment_id], run_id=result.run_id, return_type="list")
    assert len(traces) == len(rows)


def test_resume_asks_only_the_missing_rows(chat, tmp_path: Path) -> None:  # noqa: ANN001
    rows = load_dataset(max_rows=6) + CRAFTED
    uri, resume = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "eval" / "answers.jsonl"
    kwargs = {"tracking_uri": uri, "progress": False, "resume_path": resume, "mlflow_scoring": False}
    first = evaluate_endpoint(chat.client(), "chat", rows[:4], **kwargs)
    lines = [json.loads(line) for line in resume.read_text().splitlines()]
    assert sorted(x["asking"] for x in lines if "asking" in x) == [r["id"] for r in rows[:4]]
    assert sorted(x["row"]["id"] for x in lines if "row" in x) == [r["id"] for r in rows[:4]]
    with resume.open("a") as f:
        f.write('{"key": {"endpoint": "chat"}, "row": {"id": "q0')  # a run killed mid-write
    chat.reset()
    second = evaluate_endpoint(chat.client(), "chat", rows, **kwargs)
    assert sorted(asked(chat)) == sorted(r["question"] for r in rows[4:])
    assert second.queried == 4 and second.metrics["rows"] == 8 and second.reasked == 0
    assert list(second.table["id"]) == [r["id"] for r in rows]
    assert second.table["answer"][:4].tolist() == first.table["answer"].tolist()
    chat.reset()  # other generation settings are a different evaluation: nothing is reused
    evaluate_endpoint(chat.client(), "chat", rows[:2], max_tokens=8, **kwargs)
    assert len(asked(chat)) == 2


def deploy(ws, name: str, version: str = "1") -> None:  # noqa: ANN001
    cfg = EndpointConfig.model_validate(
        {"name": name, "served_entities": [{"entity_name": "m", "entity_version": version, "scale_to_zero_enabled": False}]}
    )
    apply_deploy(ws.client(), cfg, progress=False, poll_interval=0.1)


def test_failed_rows_are_kept_with_their_error_and_retried_on_resume(fake_workspace, tmp_path: Path) -> None:  # noqa: ANN001
    uri, resume = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "answers.jsonl"
    kwargs = {"tracking_uri": uri, "progress": False, "resume_path": resume, "mlflow_scoring": False}
    failed = evaluate_endpoint(fake_workspace.client(), "later", CRAFTED, **kwargs)  # no such endpoint yet
    assert failed.metrics["error_rate"] == 1.0 and failed.metrics["rows"] == 2
    assert failed.metrics["exact_match"] == 0 and math.isnan(failed.metrics["latency_p50_ms"])
    assert failed.table["error"].str.startswith("endpoint later:").all()
    saved = [json.loads(line) for line in resume.read_text().splitlines()]
    assert not [x for x in saved if "row" in x]  # no answer saved: both are asked again
    assert sorted(x["failed"] for x in saved if "failed" in x) == ["x1", "x2"]
    deploy(fake_workspace, "later")
    fake_workspace.reset()
    healed = evaluate_endpoint(fake_workspace.client(), "later", CRAFTED, **kwargs)
    assert healed.metrics["error_rate"] == 0 and len(asked(fake_workspace)) == 2


def test_rows_still_failing_after_retries_are_kept(chat, tmp_path: Path) -> None:  # noqa: ANN001
    chat.set_faults(rate_503=1.0, retry_after=1)
    failed = evaluate_endpoint(
        chat.client(retry_timeout_seconds=1),
        "chat",
        CRAFTED,
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        progress=False,
        mlflow_scoring=False,
    )
    assert failed.metrics["error_rate"] == 1.0 and len(failed.table) == 2


def test_aggregate_and_plot_without_a_workspace() -> None:
    ok = {
        "exact_match": 1.0,
        "contains_match": 1.0,
        "response_length": 1,
        "latency_ms": 100.0,
        "completion_tokens": 2,
        "tokens_per_second": 20.0,
        "error": None,
    }
    bad = {
        "exact_match": 0.0,
        "contains_match": 0.0,
        "response_length": 0,
        "latency_ms": None,
        "completion_tokens": None,
        "tokens_per_second": None,
        "error": "endpoint chat: boom",
    }
    metrics = aggregate([ok, dict(ok, latency_ms=300.0), bad])
    assert metrics["error_rate"] == pytest.approx(1 / 3) and metrics["contains_match"] == pytest.approx(2 / 3)
    assert metrics["latency_p50_ms"] == 200.0 and metrics["latency_p95_ms"] == pytest.approx(290.0)
    assert metrics["tokens_per_second"] == pytest.approx(4 / 0.4)

    import pandas as pd

    fig = plot_results(pd.DataFrame([ok, bad]))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["Answer scores (2 rows)", "Latency per request (1 failed)"]
    assert [round(p.get_height(), 2) for p in fig.axes[0].patches] == [0.5, 0.5]


def test_bad_input_fails_before_any_request(chat, tmp_path: Path) -> None:  # noqa: ANN001
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(ConfigError, match="^rows:"):
        evaluate_endpoint(chat.client(), "chat", [], tracking_uri=uri)
    with pytest.raises(ConfigError, match="^max_tokens:"):
        evaluate_endpoint(chat.client(), "chat", CRAFTED, tracking_uri=uri, max_tokens=0)
    with pytest.raises(ConfigError, match=r"^rows\[0\]\.expected:"):
        evaluate_endpoint(chat.client(), "chat", [{"id": "a", "question": "q"}], tracking_uri=uri)
    assert asked(chat) == []
    assert not (tmp_path / "mlflow.db").exists()  # no MLflow run either


def test_a_query_phase_that_breaks_leaves_a_failed_run_not_a_running_one(chat, tmp_path: Path) -> None:  # noqa: ANN001
    """The run is created while the rows are asked; if asking breaks, it ends FAILED."""
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    resume = tmp_path / "resume-is-a-directory"
    resume.mkdir()
    with pytest.raises(IsADirectoryError):
        evaluate_endpoint(chat.client(), "chat", CRAFTED, tracking_uri=uri, progress=False, resume_path=resume)
    runs = mlflow.MlflowClient(tracking_uri=uri).search_runs(
        [mlflow.MlflowClient(tracking_uri=uri).get_experiment_by_name("llmops-nb").experiment_id]
    )
    assert [r.info.status for r in runs] == ["FAILED"]


def test_every_reported_metric_is_known() -> None:
    row = {
        "exact_match": 1.0,
        "contains_match": 1.0,
        "response_length": 1,
        "latency_ms": 1.0,
        "completion_tokens": 1,
        "tokens_per_second": 1.0,
        "error": None,
    }
    schema_metrics = {"json_schema_match", "json_schema_match/mean"}  # only with evaluation.json_schema
    assert set(aggregate([row])) == set(KNOWN_METRICS) - schema_metrics
    assert set(aggregate([{**row, "json_schema_match": 1.0}])) == set(KNOWN_METRICS)


#: 20 rows: the even ones any entity answers right (the word is echoed), the odd ones only entity
#: m-1 (the expected answer is m-1's echo): entity m-2 is wrong on half of them.
PAIRED = [
    {"id": f"p{i:02d}", "question": f"Say w{i}", "expected": f"w{i}" if i % 2 == 0 else f"m-1 echo: say w{i}", "aliases": []}
    for i in range(20)
]


def test_evaluate_and_promote_decides_on_the_same_rows_with_intervals(chat, tmp_path: Path) -> None:  # noqa: ANN001
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    registry = MlflowClient(tracking_uri=uri, registry_uri=uri)
    registry.create_registered_model("m")
    for _ in range(3):
        registry.create_model_version("m", source=str(tmp_path))
    common = {
        "model_name": "m",
        "thresholds": {"contains_match": 0.2, "error_rate": 0.2},
        "tracking_uri": uri,
        "registry_uri": uri,
        "progress": False,
        "mlflow_scoring": False,
    }

    first = evaluate_and_promote(chat.client(), "chat", PAIRED, model_version="1", output_dir=tmp_path / "e1", **common)
    assert first.promoted and first.decision.action == "promote" and first.comparison_table is None
    assert str(registry.get_model_version_by_alias("m", "champion").version) == "1"
    assert "PROMOTED: alias 'champion' -> m version 1" in first.report()
    record = json.loads((tmp_path / "e1" / "decision.json").read_text())
    assert record["decision"]["action"] == "promote" and record["rows"] == 20
    cm = record["candidates"][0]["metrics"]["contains_match"]
    assert cm["value"] == 1.0 and 0.8 < cm["ci_low"] < 1.0 and cm["ci_high"] == pytest.approx(1.0)
    run = MlflowClient(tracking_uri=uri).get_run(first.run_id)
    assert run.data.metrics["contains_match/ci_low"] == pytest.approx(cm["ci_low"])
    assert "decision.json" in [a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(first.run_id)]

    # 5 rows (another digest, too few): the champion stays, and it says why
    few = evaluate_and_promote(chat.client(), "chat", PAIRED[:5], model_version="2", **common)
    assert not few.promoted and few.decision.action == "inconclusive"
    assert "5 rows are too few" in few.decision.reason
    assert str(registry.get_model_version_by_alias("m", "champion").version) == "1"

    # the same rows, answered exactly as the champion did: kept, not promoted
    same = evaluate_and_promote(chat.client(), "chat", PAIRED, model_version="2", **common)
    assert same.decision.action == "keep" and not same.promoted

    # wrong on half the odd rows' worth (m-2 misses every odd row): refused, p < 0.05 (McNemar)
    deploy(chat, "chat2", version="2")
    worse = evaluate_and_promote(chat.client(), "chat2", PAIRED, model_version="3", **common)
    assert worse.decision.action == "keep" and not worse.promoted
    diff = worse.comparison_table.set_index("metric").loc["contains_match"]
    assert diff["diff"] == pytest.approx(-0.5) and diff["p_value"] < 0.05 and diff["test"] == "mcnemar exact"
    assert "worse than champion" in worse.report()
    # one candidate against the champion's stored rows: the rows they disagree on, both answers
    shown = worse.disagreements
    assert len(shown) == 10 and {"new: contains_match", "champion: contains_match"} <= set(shown.columns)
    assert (shown["champion: contains_match"] == 1).all() and (shown["new: contains_match"] == 0).all()
    assert shown.iloc[0]["id"] in (worse.html_report.read_text(encoding="utf-8"))
    assert str(registry.get_model_version_by_alias("m", "champion").version) == "1"
    assert MlflowClient(tracking_uri=uri).get_run(worse.run_id).data.tags["llmops_nb.promoted"] == "false"
    assert MlflowClient(tracking_uri=uri).get_run(worse.run_id).data.tags["llmops_nb.decision_action"] == "keep"

    chat.reset()
    with pytest.raises(ConfigError, match=r"^thresholds\.accuracy:"):
        evaluate_and_promote(chat.client(), "chat", PAIRED, model_version="2", **{**common, "thresholds": {"accuracy": 1}})
    assert asked(chat) == []


def test_rows_from_a_generator_and_rows_in_flight_at_a_kill(chat, tmp_path: Path) -> None:  # noqa: ANN001
    """Rows read lazily give the list's digest; a row asked but never answered is counted on resume."""
    import mlflow

    rows = load_dataset(max_rows=5)
    uri, resume = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "answers.jsonl"
    kwargs = {"tracking_uri": uri, "progress": False, "resume_path": resume, "trace_rows": 2}
    first = evaluate_endpoint(chat.client(), "chat", iter(rows[:3]), **kwargs)
    assert first.dataset_digest == dataset_digest(rows[:3]) and first.queried == 3
    key = json.loads(resume.read_text().splitlines()[0])["key"]
    with resume.open("a") as f:  # a run killed while rows[3] was in flight
        f.write(json.dumps({"key": key, "asking": rows[3]["id"]}) + "\n")
    chat.reset()
    second = evaluate_endpoint(chat.client(), "chat", (r for r in rows), **kwargs)
    assert sorted(asked(chat)) == sorted(r["question"] for r in rows[3:])
    assert (second.queried, second.reasked) == (2, 1)
    run = mlflow.MlflowClient(tracking_uri=uri).get_run(second.run_id)
    assert run.data.params["reasked_in_flight"] == "1" and run.data.params["rows"] == "5"
    assert run.data.params["dataset_digest"] == dataset_digest(rows)
    traces = mlflow.search_traces(locations=[run.info.experiment_id], run_id=second.run_id, return_type="list")
    assert len(traces) == 2  # the first trace_rows rows (no row failed)
    names = {a.name for a in traces[0].info.assessments}
    assert {"exact_match", "contains_match", "expected_response"} <= names
