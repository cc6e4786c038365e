"""The evaluation plots: match rates and the latency histogram of one run; the candidates side by side with intervals."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure

PLOT_ARTIFACT = "eval_plot.png"


def use_headless_backend() -> None:
    """Agg when nothing can show a window (no display, no notebook kernel, no choice made)."""
    import matplotlib

    if (
        "matplotlib.pyplot" not in sys.modules
        and not os.environ.get("MPLBACKEND")
        and "ipykernel" not in sys.modules
        and not os.environ.get("DISPLAY")
    ):
        matplotlib.use("Agg")


def plot_results(table: pd.DataFrame) -> Figure:
    """Match rates (bars) and the latency histogram, side by side."""
    use_headless_backend()
    import matplotlib.pyplot as plt

    fig, (scores, latency) = plt.subplots(1, 2, figsize=(10, 3.6))
    # Fixed margins rather than tight_layout(), which draws the whole figure once more (~0.1 s).
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.14, top=0.91, wspace=0.18)
    plt.close(fig)  # returned, not auto-shown: a notebook displays it once
    names = ["exact_match", "contains_match"]
    means = [float(table[n].mean()) if len(table) else 0.0 for n in names]
    bars = scores.bar(["exact match", "contains match"], means, color=["#4C72B0", "#55A868"])
    scores.bar_label(bars, labels=[f"{m:.0%}" for m in means])
    scores.set_ylim(0, 1.1)
    scores.set_title(f"Answer scores ({len(table)} rows)")
    ok = table[table["error"].isna()]["latency_ms"].astype(float).dropna()  # none timed: engine ai_query
    latency.hist(ok, bins=min(20, max(1, len(ok))), color="#8172B3")
    if len(ok):
        latency.axvline(ok.median(), color="black", linestyle="--", label=f"p50 {ok.median():.0f} ms")
        latency.legend()
    errors = int(table["error"].notna().sum())
    latency.set_title("Latency per request" + (f" ({errors} failed)" if errors else ""))
    latency.set_xlabel("ms")
    latency.set_ylabel("requests")
    return fig


DECISION_PLOT = "decision_plot.png"
#: The 0/1 metrics drawn per candidate, with their intervals.
RATE_METRICS = ("contains_match", "exact_match", "error_rate")


def plot_decision(
    estimates: Mapping[str, Mapping[str, Any]],
    cost_per_1k: Mapping[str, float | None] | None = None,
    primary: str = "contains_match",
) -> Figure:
    """Each rate with its interval per candidate (bars), and the primary metric against p95
    latency (and against cost per 1,000 requests when prices are given), intervals both ways."""
    use_headless_backend()
    import matplotlib.pyplot as plt

    costs = {k: v for k, v in (cost_per_1k or {}).items() if v is not None}
    panels = 3 if costs else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.8))
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.16, top=0.9, wspace=0.28)
    plt.close(fig)
    names = list(estimates)
    rates, quality = axes[0], axes[1]
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        found = [estimates[name].get(m) for m in RATE_METRICS]
        values = [e.value if e else 0.0 for e in found]
        low = [max(0.0, e.value - e.ci_low) if e else 0.0 for e in found]
        high = [max(0.0, e.ci_high - e.value) if e else 0.0 for e in found]
        xs = [x + (i - (len(names) - 1) / 2) * width for x in range(len(RATE_METRICS))]
        rates.bar(xs, values, width, yerr=[low, high], capsize=3, label=name)
    rates.set_xticks(range(len(RATE_METRICS)), [m.replace("_", " ") for m in RATE_METRICS])
    rates.set_ylim(0, 1.1)
    rates.set_title("Rates with 95% intervals")
    rates.legend(fontsize=8)

    def scatter(ax: Any, x_of: Any, label: str) -> None:
        for name in names:
            y = estimates[name].get(primary)
            x = x_of(name)
            if y is None or x is None:
                continue
            xv, xlo, xhi = x
            ax.errorbar(
                [xv], [y.value], xerr=[[max(0.0, xv - xlo)], [max(0.0, xhi - xv)]],
                yerr=[[max(0.0, y.value - y.ci_low)], [max(0.0, y.ci_high - y.value)]], fmt="o", capsize=3, label=name,
            )  # fmt: skip
        ax.set_xlabel(label)
        ax.set_ylabel(primary)
        ax.legend(fontsize=8)

    def latency(name: str) -> tuple[float, float, float] | None:
        e = estimates[name].get("latency_p95_ms")
        return None if e is None or e.n == 0 else (e.value, e.ci_low, e.ci_high)

    scatter(quality, latency, "latency p95 (ms)")
    quality.set_title(f"{primary} against p95 latency")
    if costs:
        scatter(axes[2], lambda n: (costs[n], costs[n], costs[n]) if n in costs else None, "cost per 1,000 requests")
        axes[2].set_title(f"{primary} against cost")
    return fig
