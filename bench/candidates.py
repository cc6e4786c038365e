"""Three candidates on the bundled rows at once vs the slowest candidate evaluated alone (issue 30: <= 1.2x).

The fake workspace answers each candidate's endpoint after its own latency: ``L``, ``1.25 L``
and ``1.5 L`` (the slowest), as three models of different sizes would. Each is asked the
bundled rows with its own concurrency and rate control. Two ratios, each the median of
``--rounds``, interleaved (the machine is shared):

- ``ratio_together_to_alone``: wall time of ``evaluate_candidates`` (the three at once, one
  parent MLflow run, the statistics, the decision, its plot and HTML report) over that of
  ``evaluate_endpoint`` on the slowest alone (its run, rows and plot, no decision);
- ``ratio_together_to_alone_decided``: the same over ``evaluate_candidates`` with the slowest as
  the only candidate (the same decision record, plot and report, for one).

``--latency-ms`` takes several values (a sweep); 1,000 ms is near what SmolLM2 takes for a
64-token answer here, 200 ms a fast hosted model. A last entry has all three equally slow
(1.5 L at the first latency): their per-candidate bookkeeping then lands at the same moment.

    .venv/bin/python bench/candidates.py [--latency-ms 200 1000] [--concurrency 8] [--rounds 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ is sys.path[0] when this runs as a script: its modules shadow libraries' imports of the
# same names (a bench/statistics.py broke mlflow's `from statistics import mean`; run from bench/,
# this evaluation measured 1.8x, from elsewhere 1.4x). Take it off before anything imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from llmops_nb.config.endpoint import EndpointConfig  # noqa: E402
from llmops_nb.endpoints.apply import deploy  # noqa: E402
from llmops_nb.evaluation.candidates import Target  # noqa: E402
from llmops_nb.evaluation.datasets import load_dataset  # noqa: E402
from llmops_nb.evaluation.orchestrate import evaluate_candidates, evaluate_endpoint  # noqa: E402
from llmops_nb.testing import fake_workspace  # noqa: E402


def measure(ws, w, rows, tmp: Path, latency_ms: float, concurrency: int, rounds: int, spread: bool = True) -> dict:  # noqa: ANN001
    """One latency of the sweep: the three ways, interleaved ``rounds`` times (``spread``: L, 1.25 L, 1.5 L; else all 1.5 L)."""
    uri = f"sqlite:///{tmp}/mlflow.db"
    common = {"tracking_uri": uri, "progress": False, "mlflow_scoring": False, "concurrency": concurrency}
    targets = [Target("a", "cand-a"), Target("b", "cand-b"), Target("c", "cand-c")]
    spreads = {"a": 1.0, "b": 1.25, "c": 1.5} if spread else {"a": 1.5, "b": 1.5, "c": 1.5}
    ws.set_faults(endpoint_latency_ms={f"cand-{k}": f * latency_ms for k, f in spreads.items()})
    alone, decided, together = [], [], []
    evaluation = None
    for i in range(rounds):
        started = time.perf_counter()
        evaluate_endpoint(w, "cand-c", rows, output_dir=tmp / f"alone-{latency_ms}-{i}", **common)
        alone.append(time.perf_counter() - started)
        started = time.perf_counter()
        evaluate_candidates(
            w, targets[2:], rows, model_name=None, thresholds={}, output_dir=tmp / f"one-{latency_ms}-{i}", **common
        )
        decided.append(time.perf_counter() - started)
        started = time.perf_counter()
        evaluation = evaluate_candidates(
            w, targets, rows, model_name=None, thresholds={}, output_dir=tmp / f"all-{latency_ms}-{i}", **common
        )
        together.append(time.perf_counter() - started)
    waves = -(-len(rows) // concurrency)
    return {
        "latency_ms": {k: f * latency_ms for k, f in spreads.items()},
        "floor_s": waves * 1.5 * latency_ms / 1000,
        "alone_s": statistics.median(alone),
        "alone_decided_s": statistics.median(decided),
        "together_s": statistics.median(together),
        "ratio_together_to_alone": statistics.median(together) / statistics.median(alone),
        "ratio_together_to_alone_decided": statistics.median(together) / statistics.median(decided),
        "alone_all": alone,
        "alone_decided_all": decided,
        "together_all": together,
        "decision": evaluation.decision.action if evaluation else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[200.0, 1000.0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "candidates.json")
    args = parser.parse_args()
    rows = load_dataset()
    tmp = Path(tempfile.mkdtemp(prefix="llmops-bench-cands-"))
    with fake_workspace(tmp / "ws") as ws:
        w = ws.client()
        for name, version in (("cand-a", "1"), ("cand-b", "2"), ("cand-c", "3")):
            body = {"name": name, "served_entities": [{"entity_name": "m", "entity_version": version}]}
            deploy(w, EndpointConfig.model_validate(body), progress=False, poll_interval=0.1)
        common = {"tracking_uri": f"sqlite:///{tmp}/mlflow.db", "progress": False, "mlflow_scoring": False}
        targets = [Target("a", "cand-a"), Target("b", "cand-b"), Target("c", "cand-c")]
        evaluate_candidates(w, targets, rows[:6], model_name=None, thresholds={}, **common)  # warm-up: imports, store
        sweep = [measure(ws, w, rows, tmp, ms, args.concurrency, args.rounds) for ms in args.latency_ms]
        # the worst case: three candidates equally slow, whose bookkeeping all lands at the same moment
        sweep.append(measure(ws, w, rows, tmp, args.latency_ms[0], args.concurrency, args.rounds, spread=False))
    result = {"rows": len(rows), "candidates": 3, "concurrency_each": args.concurrency, "rounds": args.rounds, "sweep": sweep}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
