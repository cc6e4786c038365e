"""The decision as one self-contained HTML file: the decision's tables, the disagreeing rows and the plot.

:func:`render_report` builds the page from ``decision.json``'s record
(:func:`~llmops_nb.evaluation.decision.decision_record`), the decision's paragraph, the rows where
the candidates disagree and the decision plot (embedded as a base64 PNG: no file beside it, no
network). Every text is escaped (:func:`html.escape`): answers and prompts are model and user
text. :func:`write_report` writes it as ``decision_report.html``.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

REPORT_ARTIFACT = "decision_report.html"
#: The disagreeing rows shown at most (every row is in each candidate's ``eval_rows.jsonl``).
MAX_ROWS_SHOWN = 200

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.text { max-width: 32em; white-space: pre-wrap; word-break: break-word; }
.decision { font-size: 1.05em; padding: 0.6em 0.9em; background: #f6f8fa; border-left: 4px solid #4C72B0; }
.promote { border-left-color: #55A868; } .keep { border-left-color: #C44E52; } .inconclusive { border-left-color: #CCB974; }
img { max-width: 100%; }
"""


def _text(value: Any) -> str:
    """``value`` as escaped text; numbers to 4 significant digits, missing as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "&ndash;"
    if isinstance(value, bool):
        return html.escape(str(value))
    if isinstance(value, float):
        return html.escape(f"{value:.4g}")
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[bool] | None = None) -> str:
    """An HTML table, every cell escaped; ``numeric`` marks the right-aligned columns."""
    kinds = list(numeric or [False] * len(header))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "\n".join(
        "<tr>"
        + "".join(f'<td class="{"num" if k else "text"}">{_text(v)}</td>' for v, k in zip(row, kinds, strict=True))
        + "</tr>"
        for row in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _interval(found: Mapping[str, Any]) -> str:
    low, high = found.get("ci_low"), found.get("ci_high")
    return "" if low is None or high is None else f"[{low:.4g}, {high:.4g}]"


def _metrics(record: Mapping[str, Any]) -> str:
    rows = [
        (c.get("name"), metric, e.get("value"), _interval(e), e.get("n"), e.get("method"))
        for c in record.get("candidates", [])
        for metric, e in (c.get("metrics") or {}).items()
    ]
    return _table(["candidate", "metric", "value", "interval", "rows", "method"], rows, [False, False, True, True, True, False])


def _candidates(record: Mapping[str, Any]) -> str:
    keys = [
        k for k in ("endpoint", "served_entity", "version", "run_id", "cost_per_1k") if any(k in c for c in record["candidates"])
    ]
    rows = [(c.get("name"), *(c.get(k) for k in keys)) for c in record.get("candidates", [])]
    return _table(["candidate", *keys], rows, [False, *(k == "cost_per_1k" for k in keys)])


def _comparisons(record: Mapping[str, Any]) -> str:
    found = record.get("comparisons") or []
    if not found:
        return "<p>No paired comparison: no baseline scored on these rows.</p>"
    rows = [
        (
            d.get("candidate"),
            d.get("baseline"),
            d.get("metric"),
            d.get("diff"),
            _interval(d),
            d.get("p_value"),
            d.get("test"),
            d.get("n"),
        )
        for d in found
    ]
    header = ["candidate", "baseline", "metric", "diff", "interval", "p-value (Holm)", "test", "paired rows"]
    return _table(header, rows, [False, False, False, True, True, True, False, True])


def _checks(decision: Mapping[str, Any]) -> str:
    found = decision.get("checks") or []
    if not found:
        return "<p>No thresholds set.</p>"
    rows = [
        (c.get("candidate"), c.get("metric"), f"{c.get('direction')} {c.get('threshold'):g}", c.get("value"), c.get("bound"),
         {"pass": "ok", "fail": "FAIL", "unsure": "unsure"}.get(str(c.get("verdict")), c.get("verdict")))
        for c in found
    ]  # fmt: skip
    return _table(
        ["candidate", "metric", "needs", "value", "interval's bound", "verdict"], rows, [False, False, False, True, True, False]
    )


def _disagreements(table: pd.DataFrame | None) -> str:
    columns = [] if table is None else [str(c) for c in table.columns]
    if table is None or sum(c.endswith(": answer") for c in columns) < 2:
        return "<p>The answers of one candidate only: no rows to compare.</p>"
    if not len(table):
        return "<p>The candidates score the same on every row.</p>"
    shown = table.head(MAX_ROWS_SHOWN)
    numeric = [not c.endswith(": answer") and c not in ("id", "question", "expected") for c in columns]
    rows = [[None if _missing(v) else v for v in row] for row in shown.itertuples(index=False, name=None)]
    more = len(table) - len(shown)
    tail = f"<p>{more} more rows not shown: every row is in each candidate's eval_rows.jsonl.</p>" if more > 0 else ""
    return f"<p>{len(table)} rows where the candidates' scores differ.</p>\n" + _table(columns, rows, numeric) + tail


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plot(plot: Path | None) -> str:
    if plot is None or not Path(plot).is_file():
        return "<p>No plot.</p>"
    data = base64.b64encode(Path(plot).read_bytes()).decode("ascii")
    return f'<img alt="each candidate\'s rates and primary metric with their intervals" src="data:image/png;base64,{data}">'


def render_report(
    record: Mapping[str, Any], paragraph: str, disagreements: pd.DataFrame | None = None, plot: Path | None = None
) -> str:
    """The decision's HTML page: the candidates, their metrics with intervals, the comparisons, the
    thresholds, the decision, the rows where the candidates disagree and the plot; one file, all text escaped."""
    decision = record.get("decision") or {}
    action = str(decision.get("action") or "")
    model = record.get("model") or {}
    title = "Evaluation decision" + (f": {model['name']}" if model.get("name") else "")
    candidates = record.get("candidates") or []
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        f'<head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_STYLE}</style></head>',
        "<body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="decision {html.escape(action)}">{html.escape(paragraph)}</p>',
        f"<p>{_text(record.get('rows'))} rows; baseline {_text(decision.get('baseline'))}.</p>",
        "<h2>Candidates</h2>",
        _candidates(record) if candidates else "<p>No candidates.</p>",
        "<h2>Metrics with intervals</h2>",
        _metrics(record),
        "<h2>Against the baseline</h2>",
        _comparisons(record),
        "<h2>Thresholds at the interval's bound</h2>",
        _checks(decision),
        "<h2>Rows where the candidates disagree</h2>",
        _disagreements(disagreements),
        "<h2>Plot</h2>",
        _plot(plot),
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def write_report(
    record: Mapping[str, Any], paragraph: str, folder: Path, disagreements: pd.DataFrame | None = None, plot: Path | None = None
) -> Path:
    """Write :func:`render_report` as ``decision_report.html`` into ``folder``; its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REPORT_ARTIFACT
    path.write_text(render_report(record, paragraph, disagreements, plot), encoding="utf-8")
    return path


def inline_report(path: Path, height_px: int = 900) -> str:
    """The report at ``path`` as an ``<iframe srcdoc>`` for a notebook's output: its styles stay
    inside the frame (not the notebook's), and Jupyter and Databricks both render it."""
    document = Path(path).read_text(encoding="utf-8")
    return (
        f'<iframe title="evaluation decision report" srcdoc="{html.escape(document, quote=True)}" '
        f'style="width: 100%; height: {int(height_px)}px; border: 1px solid #ddd"></iframe>'
    )
