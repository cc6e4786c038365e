"""What an evaluation produced and decided, and the summary the evaluate notebook shows.

:class:`EvalResult` is one evaluation (its MLflow run, metrics, table and plot);
:class:`Evaluation` adds every candidate's metrics with intervals, the paired comparisons
with the baseline and the decision, and :meth:`Evaluation.report` is the text the notebook (and ``llmops-nb run``) prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops_nb.evaluation.decision import Decision
from llmops_nb.evaluation.promotion import Champion
from llmops_nb.evaluation.statistics import Difference, Estimate

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure


@dataclass
class EvalResult:
    """What one evaluation produced: its MLflow run, metrics, per-row table and plot."""

    run_id: str
    metrics: dict[str, float]
    table: pd.DataFrame
    plot_path: Path
    dataset_digest: str
    queried: int
    figure: Figure | None = None
    reasked: int = 0  # rows in flight when a previous run stopped, asked again


@dataclass
class Evaluation:
    """An evaluation and what it decided: what the evaluate notebook shows and publishes.

    ``result``: the evaluation of the candidate that may take the alias (the new version);
    ``results``: every candidate's (the same rows); ``estimates`` and ``comparisons``: their
    metrics with intervals and the paired differences with the baseline; ``record``: ``decision.json``.
    """

    result: EvalResult
    decision: Decision
    comparisons: list[Difference]
    estimates: dict[str, dict[str, Estimate]]
    champion: Champion | None
    promoted: bool
    model_name: str | None
    model_version: str | None
    alias: str
    record: dict[str, Any] = field(default_factory=dict)
    results: dict[str, EvalResult] = field(default_factory=dict)
    parent_run_id: str | None = None  # several candidates: the decision's run, the parent of theirs
    decision_plot: Path | None = None  # every candidate's rates and primary metric with intervals
    html_report: Path | None = None  # decision_report.html: the decision's tables, disagreeing rows and plot
    # one candidate against the champion's stored evaluation (its rows artifact, the same rows): that table
    baseline_tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def disagreements(self) -> pd.DataFrame:
        """The rows where the candidates' scores on the primary metric differ: each one's answer and score.

        With one candidate, the other side is the champion's stored per-row results when the
        decision compared against them (the same rows)."""
        import pandas as pd

        primary = self.decision.rule.primary
        column = "error" if primary == "error_rate" else primary.removesuffix("/mean")
        tables = {n: r.table.set_index("id") for n, r in self.results.items()}
        tables.update({n: t.set_index("id") for n, t in self.baseline_tables.items() if n not in tables})
        if len(tables) < 2 or any(column not in t for t in tables.values()):
            return pd.DataFrame(columns=["id", "question", "expected"])
        first = next(iter(tables.values()))
        scores = pd.DataFrame({n: (t[column].notna() if column == "error" else t[column]) for n, t in tables.items()})
        differ = scores.nunique(axis=1, dropna=False) > 1
        out = first.loc[differ, ["question", "expected"]].copy()
        for name, t in tables.items():
            out[f"{name}: answer"] = t.loc[differ, "answer"]
            out[f"{name}: {column}"] = scores.loc[differ, name]
        return out.reset_index()

    @property
    def run_id(self) -> str:
        """The run that records the decision: the parent run of several candidates, else the evaluation's."""
        return self.parent_run_id or self.result.run_id

    @property
    def metrics(self) -> dict[str, float]:
        return self.result.metrics

    @property
    def figure(self) -> Figure | None:
        return self.result.figure

    @property
    def table(self) -> pd.DataFrame:
        return self.result.table

    @property
    def winner(self) -> str:
        """The candidate the decision promotes, or "" (keep, inconclusive)."""
        return self.decision.winner or ""

    @property
    def metrics_table(self) -> pd.DataFrame:
        """One row per candidate and metric: value and interval."""
        import pandas as pd

        rows = [
            {"candidate": c, "metric": m, "value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n}
            for c, found in self.estimates.items()
            for m, e in found.items()
        ]
        return pd.DataFrame(rows, columns=["candidate", "metric", "value", "ci_low", "ci_high", "n"])

    @property
    def comparison_table(self) -> pd.DataFrame | None:
        """Each candidate against the baseline (paired difference, interval, p-value), or None without a baseline."""
        import pandas as pd

        if not self.comparisons:
            return None
        columns = ["candidate", "baseline", "metric", "diff", "ci_low", "ci_high", "p_value", "test", "n"]
        return pd.DataFrame([{k: getattr(d, k) for k in columns} for d in self.comparisons], columns=columns)

    def report(self) -> str:
        """Human-readable: each candidate's metrics with intervals, the comparisons, the decision."""
        m = self.metrics
        conf = self.decision.rule.confidence
        lines = [
            f"MLflow run {self.run_id}: {int(m['rows'])} rows ({self.result.queried} queried now), "
            f"errors {m['error_rate']:.1%}, latency p50 {m['latency_p50_ms']:.0f} ms / p95 {m['latency_p95_ms']:.0f} ms",
            *(
                [f"{self.result.reasked} row(s) were in flight when the previous run stopped: asked again"]
                if self.result.reasked
                else []
            ),
        ]
        for name, found in self.estimates.items():
            shown = [
                f"{metric} {e.value:.3g} [{e.ci_low:.3g}, {e.ci_high:.3g}]"
                for metric, e in found.items()
                if metric in ("exact_match", "contains_match", "error_rate") and e.n
            ]
            lines.append(f"{name}: " + ", ".join(shown) + f" ({conf:.0%} intervals)")
        k = m.get("correctness/kappa_contains_match")
        if k is not None:
            lo, hi = m.get("correctness/kappa_contains_match/ci_low"), m.get("correctness/kappa_contains_match/ci_high")
            lines.append(f"judge agreement with contains_match: Cohen's kappa {k:.2f} [{lo:.2f}, {hi:.2f}]")
        if self.decision.checks:
            lines += ["Thresholds (at the interval's bound):", *(f"  {c.line()}" for c in self.decision.checks)]
        for d in self.comparisons:
            if d.metric == self.decision.rule.primary:
                lines.append(
                    f"{d.candidate} - {d.baseline}: {d.metric} {d.diff:+.3g} [{d.ci_low:+.3g}, {d.ci_high:+.3g}], "
                    f"p = {d.p_value:.3g} ({d.test}, {d.n} paired rows)"
                )
        lines.append(self.decision.paragraph())
        target = f"{self.model_name} version {self.model_version}" if self.model_version else "this model"
        verdict = (
            f"PROMOTED: alias '{self.alias}' -> {target}"
            if self.promoted
            else f"promotion allowed, but not applied (promote=False or no version) for {target}"
            if self.decision.promote
            else f"NOT promoted: {target} keeps its aliases"
        )
        return "\n".join([*lines, verdict])
