"""A rollout over time: each served entity's share of the traffic and its error rate, per read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from llmops_nb.rollout.state import RolloutRecord


def plot_rollout(record: RolloutRecord) -> Any:
    """A matplotlib figure: traffic share (top) and error rate (bottom) per entity over time,
    the step's target percent dashed."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (share, errors) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    t0 = record.points[0]["at"] if record.points else record.started
    times = [p["at"] - t0 for p in record.points]
    for name in (record.champion, record.challenger):
        if name is None:
            continue
        rows = [p["entities"].get(name, {}) for p in record.points]
        share.plot(times, [100 * r.get("share", float("nan")) for r in rows], marker="o", label=name)
        rates = [100 * r["errors"] / r["requests"] if r.get("requests") else float("nan") for r in rows]
        errors.plot(times, rates, marker="o", label=name)
    share.step(
        times, [p["percent"] for p in record.points], where="post", linestyle="--", color="grey", label="target (challenger)"
    )
    share.set_ylabel("traffic share (%)")
    errors.set_ylabel("error rate (%)")
    errors.set_xlabel("seconds since the first read")
    share.legend(fontsize=8)
    share.set_title(f"rollout {record.id} on {record.endpoint}: {record.state}")
    fig.tight_layout()
    return fig
