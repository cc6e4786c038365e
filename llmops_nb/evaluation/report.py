"""What an evaluation produced and decided, and the summary the evaluate notebook shows.

:class:`EvalResult` is one evaluation (its MLflow run, metrics, table and plot);
:class:`Evaluation` adds the gate, the comparison with the champion and the promotion
decision, and :meth:`Evaluation.report` is the text the notebook (and ``llmops-nb run``) prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llmops_nb.evaluation.promotion import Champion, Comparison, GateDecision, PromotionDecision

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
    """An evaluation and what it decided: what the evaluate notebook shows and publishes."""

    result: EvalResult
    gate: GateDecision
    comparison: Comparison | None
    champion: Champion | None
    decision: PromotionDecision
    promoted: bool
    model_name: str | None
    model_version: str | None
    alias: str

    @property
    def run_id(self) -> str:
        return self.result.run_id

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
    def comparison_table(self) -> pd.DataFrame | None:
        """Champion vs candidate side by side, or None when there is no champion to compare with."""
        return self.comparison.table if self.comparison else None

    def report(self) -> str:
        """Human-readable: metrics, each threshold, the comparison, and the decision."""
        m = self.metrics
        lines = [
            f"MLflow run {self.run_id}: {int(m['rows'])} rows ({self.result.queried} queried now), "
            f"exact {m['exact_match']:.1%}, contains {m['contains_match']:.1%}, errors {m['error_rate']:.1%}, "
            f"latency p50 {m['latency_p50_ms']:.0f} ms / p95 {m['latency_p95_ms']:.0f} ms",
            *(
                [f"{self.result.reasked} row(s) were in flight when the previous run stopped: asked again"]
                if self.result.reasked
                else []
            ),
            "Gate:",
            *(f"  {line}" for line in self.gate.summary()),
        ]
        if self.comparison is not None and self.champion is not None:
            lines += [f"Versus champion (version {self.champion.version}):", *(f"  {line}" for line in self.comparison.summary())]
        target = f"{self.model_name} version {self.model_version}" if self.model_version else "this model"
        verdict = (
            f"PROMOTED: alias '{self.alias}' -> {target}"
            if self.promoted
            else f"promotion allowed, but not applied (promote=False or no version) for {target}"
            if self.decision.promote
            else f"NOT promoted: {target} keeps its aliases"
        )
        return "\n".join([*lines, verdict, *(f"  {r}" for r in self.decision.reasons)])
