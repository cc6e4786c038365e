"""decision_report.html: written beside decision.json, logged on the decision's run, one self-contained page, escaped."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.endpoints.apply import deploy as apply_deploy
from llmops_nb.evaluation.candidates import Target
from llmops_nb.evaluation.html_report import REPORT_ARTIFACT, render_report
from llmops_nb.evaluation.orchestrate import evaluate_and_promote, evaluate_candidates

SCRIPT = "<script>alert('x')</script>"
#: the fake answers "[<entity>] echo: <question>": m-1 contains "m-1 echo" on the odd rows, m-2 does not
ROWS = [
    {
        "id": f"r{i:02d}",
        "question": f"Say w{i}" + (f" {SCRIPT}" if i == 1 else ""),
        "expected": f"w{i}" if i % 2 == 0 else "m-1 echo",
    }
    for i in range(12)
]


class Page(HTMLParser):
    """What html.parser sees: the start tags, their attributes, and the text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[dict[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.append(dict(attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


@pytest.fixture
def pair(fake_workspace):  # noqa: ANN001, ANN201
    """Endpoint ``pair`` serving versions 1 and 2 of ``m`` (all traffic to 1)."""
    body = {
        "name": "pair",
        "served_entities": [{"entity_name": "m", "entity_version": v, "scale_to_zero_enabled": False} for v in ("1", "2")],
        "traffic_config": {"routes": [{"served_entity_name": n, "traffic_percentage": p} for n, p in (("m-1", 100), ("m-2", 0))]},
    }
    apply_deploy(fake_workspace.client(), EndpointConfig.model_validate(body), progress=False, poll_interval=0.1)
    return fake_workspace


def test_two_candidates_get_one_escaped_self_contained_report_on_the_parent_run(pair, tmp_path: Path) -> None:  # noqa: ANN001
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = tmp_path / "out"
    evaluation = evaluate_candidates(
        pair.client(), [Target("good", "pair", "m-1"), Target("bad", "pair", "m-2")], ROWS, model_name=None,
        thresholds={"contains_match": 0.2}, tracking_uri=uri, progress=False, mlflow_scoring=False, output_dir=out,
    )  # fmt: skip
    assert evaluation.html_report == out / REPORT_ARTIFACT and (out / "decision.json").is_file()
    raw = evaluation.html_report.read_text(encoding="utf-8")
    page = _parse(evaluation.html_report)
    text = "".join(page.text)
    assert "script" not in page.tags  # the answer's <script> is text, not a tag
    assert SCRIPT not in raw and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in raw
    assert f"[m-1] echo: Say w1 {SCRIPT}" in text  # the disagreeing row's answer, shown as the text it was
    assert "good" in text and "bad" in text
    assert evaluation.decision.paragraph() in text and evaluation.decision.action == "keep"
    assert text.count("[m-2] echo: Say w") == 6  # the 6 odd rows where m-2 misses: each answer shown once
    for metric in ("contains_match", "error_rate", "latency_p95_ms"):
        assert metric in text
    record = json.loads((out / "decision.json").read_text())
    diff = next(d for d in record["comparisons"] if d["candidate"] == "bad" and d["metric"] == "contains_match")
    assert f"{diff['p_value']:.4g}" in text and f"[{diff['ci_low']:.4g}, {diff['ci_high']:.4g}]" in text
    images = [a["src"] for t, a in zip(page.tags, page.attrs, strict=True) if t == "img"]
    assert len(images) == 1 and images[0].startswith("data:image/png;base64,")
    assert base64.b64decode(images[0].split(",", 1)[1]) == evaluation.decision_plot.read_bytes()
    assert not [a for a in page.attrs if a.get("href") or (a.get("src") and not a["src"].startswith("data:"))]  # nothing fetched
    client = MlflowClient(tracking_uri=uri)
    assert REPORT_ARTIFACT in [a.path for a in client.list_artifacts(evaluation.run_id)]
    assert client.get_run(evaluation.run_id).info.status == "FINISHED"


def test_one_candidate_gets_its_report_on_its_run(pair, tmp_path: Path) -> None:  # noqa: ANN001
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    evaluation = evaluate_and_promote(
        pair.client(), "pair", ROWS, model_name=None, model_version=None, thresholds={"error_rate": 0.5}, tracking_uri=uri,
        progress=False, mlflow_scoring=False, output_dir=tmp_path / "one",
    )  # fmt: skip
    assert evaluation.html_report == tmp_path / "one" / REPORT_ARTIFACT
    text = "".join(_parse(evaluation.html_report).text)
    assert evaluation.decision.paragraph() in text and "The answers of one candidate only" in text
    assert REPORT_ARTIFACT in [a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(evaluation.run_id)]


def test_render_escapes_every_text_of_the_record() -> None:
    record = {
        "candidates": [{"name": "<b>n</b>", "metrics": {"<i>m</i>": {"value": 0.5, "ci_low": 0.25, "ci_high": 0.75, "n": 4}}}],
        "comparisons": [],
        "decision": {"action": 'keep" onclick="x', "checks": [], "baseline": None},
        "model": {"name": "<img src=x>"},
        "rows": 4,
    }
    page = Page()
    page.feed(render_report(record, "Decision: KEEP <u>", None, None))
    assert set(page.tags) <= {
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "h1",
        "h2",
        "p",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
    }
    assert not [a for a in page.attrs if "onclick" in a]
    text = "".join(page.text)
    assert "<b>n</b>" in text and "<i>m</i>" in text and "Decision: KEEP <u>" in text and "<img src=x>" in text
    assert "[0.25, 0.75]" in text


def test_the_inline_report_is_one_iframe_whose_document_is_the_report(tmp_path: Path) -> None:
    import html as html_lib

    from llmops_nb.evaluation.html_report import inline_report, write_report

    record = {"candidates": [], "comparisons": [], "decision": {"action": "keep", "checks": []}, "rows": 4}
    path = write_report(record, 'Decision: KEEP "quoted" <b>', tmp_path)
    shown = Page()
    shown.feed(inline_report(path))
    assert shown.tags == ["iframe"]  # the report's tags stay inside the frame's document, not the notebook's
    srcdoc = shown.attrs[0]["srcdoc"]
    assert srcdoc == path.read_text(encoding="utf-8")
    assert html_lib.escape('Decision: KEEP "quoted" <b>') in srcdoc
