"""The evaluation plot: match rates (bars) and the latency histogram, saved with the run."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

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
    ok = table[table["error"].isna()]["latency_ms"].astype(float)
    latency.hist(ok, bins=min(20, max(1, len(ok))), color="#8172B3")
    if len(ok):
        latency.axvline(ok.median(), color="black", linestyle="--", label=f"p50 {ok.median():.0f} ms")
        latency.legend()
    errors = int(table["error"].notna().sum())
    latency.set_title("Latency per request" + (f" ({errors} failed)" if errors else ""))
    latency.set_xlabel("ms")
    latency.set_ylabel("requests")
    return fig
