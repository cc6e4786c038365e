"""Issue 33: how fast a canary rollout gets traffic back to the champion once the challenger fails.

On the fake workspace (real HTTP, the real databricks-sdk), a champion (v1) serves; a rollout of v2
starts (steps [10, 50, 100]; min_requests high, so step 1 keeps watching) under a load generator
(3 threads). After the step has watched healthy traffic for two watch intervals, the challenger
starts failing ``--error-rates`` of its answers (each in turn) (the fake's ``entity_error_rate``): that is the
moment it crosses ``max_error_rate`` (0.05). Measured per run:

- detect: the fault's start -> the rollback's ``PUT .../config`` (as the workspace received it);
- update: that PUT -> the endpoint READY on the champion alone (one config update);
- back: the fault's start -> READY on the champion (detect + update), and the last answer of the
  challenger seen by the load generator.

The target: back <= 2 x interval_s + one config update. Writes bench/results/rollout.json.

``--reader inference_table`` reads the traffic as on Databricks instead (the endpoint's AI-gateway
inference table joined to ``system.serving.served_entities`` through the SQL statements API,
:mod:`llmops_nb.rollout.inference_table`), its rows held back ``--lags`` seconds by the fake (over
its ~1 s flush), each read asking again for the last lag + 2 s: detection then waits for the
failures to land, so the target there is 2 x interval_s + lag + 1 s + one update. Writes
bench/results/rollout_inference_table.json.

Each run seeds the fake's fault RNG on its own (``set_faults`` restarts it from the seed; one seed
for all would give every run the same failures). The decision is :func:`llmops_nb.rollout.judge.watch`:
sequential (always-valid) tests of the error rate, valid at every read, their level split over the
watched steps (each run's ``watched_steps``); only the latency rule still splits over
``judge.looks(config)`` (``latency_looks``).

    .venv/bin/python bench/rollout.py [--intervals 0.5 1 2] [--repeats 3] [--error-rates 0.3 1.0] [--seed 33] [--out FILE]
    .venv/bin/python bench/rollout.py --reader inference_table --lags 0 2 5 --intervals 1 [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.config.rollout import RolloutConfig
from llmops_nb.endpoints.apply import deploy
from llmops_nb.endpoints.ops import get_endpoint
from llmops_nb.rollout.canary import Canary
from llmops_nb.rollout.judge import looks, watched_steps
from llmops_nb.rollout.state import RolloutStore
from llmops_nb.rollout.traffic import UsageRecords
from llmops_nb.testing import fake_workspace
from llmops_nb.testing.load import LoadGenerator

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"


TABLE = {"catalog_name": "main", "schema_name": "bench", "enabled": True}


def _endpoint(name: str, version: str, *, table: bool = False) -> EndpointConfig:
    gateway = {"inference_table_config": TABLE} if table else {"usage_tracking_config": {"enabled": True}}
    return EndpointConfig.model_validate(
        {
            "name": name,
            "served_entities": [{"entity_name": MODEL, "entity_version": version, "workload_size": "Small"}],
            "ai_gateway": gateway,
        }
    )


def one_run(ws, name: str, interval: float, error_rate: float, tmp: Path, phase: float = 0.0, lag: float | None = None,  # noqa: ANN001
            fault_seed: int = 0) -> dict:  # fmt: skip
    """One rollout whose challenger starts failing mid-step (``phase`` of an interval after a
    read: 0 is the worst case, a whole interval before the next read); the timings in seconds.
    ``lag`` set: traffic read from the inference table, its rows held back that long. ``fault_seed``:
    the fake's fault RNG, which every ``set_faults`` restarts from its seed (the same seed in every
    run gives every run the same failures: Random(0)'s first 100 draws have 18 below 0.3)."""
    from llmops_nb.rollout.inference_table import InferenceTableReader, table_for
    from llmops_nb.rollout.traffic import TrafficReader

    w = ws.client()
    table = lag is not None
    deploy(w, _endpoint(name, "1", table=table), timeout=60, poll_interval=0.1, progress=False)
    rc = RolloutConfig(strategy="canary", min_requests=10**6, max_wait_s=600, interval_s=interval, max_error_rate=0.05)
    reader: TrafficReader = UsageRecords(ws.home)
    if lag is not None:
        ws.set_faults(inference_table_lag_s=lag)
        full = table_for(_endpoint(name, "2", table=True))
        assert full is not None
        reader = InferenceTableReader(w, "wh-bench", full, lag_s=lag + 2.0)  # the fake's flush adds ~1 s
    canary = Canary(w, _endpoint(name, "2", table=table), rc, store=RolloutStore(tmp / name), reader=reader,
                    poll_interval=0.1, progress=False, log=None)  # fmt: skip
    challenger = f"{MODEL}-2"
    fault: dict[str, float] = {}

    def break_challenger() -> None:  # once step 1 has watched two intervals of healthy traffic
        while True:
            record = canary.store.latest(name)
            if record is not None and len(record.points) >= 2:
                break
            time.sleep(0.01)
        time.sleep(phase * interval)  # where in the watch interval the failures start
        ws.set_faults(entity_error_rate={challenger: error_rate}, seed=fault_seed)
        fault["at"] = time.time()

    breaker = threading.Thread(target=break_challenger, daemon=True)
    with LoadGenerator(ws.host, ws.token, name) as load:
        breaker.start()
        outcome = canary.deploy()
        time.sleep(0.5)
    ws.set_faults(entity_error_rate={})
    assert outcome.state == "rolled_back" and outcome.record is not None, outcome.reason
    ready = outcome.record.updated  # saved rolled_back right after READY on the champion alone
    served = [e["name"] for e in (get_endpoint(w, name) or {})["config"]["served_entities"]]
    assert served == [f"{MODEL}-1"], served
    puts = [r for r in ws.requests() if r["method"] == "PUT" and r["path"] == f"/api/2.0/serving-endpoints/{name}/config"]
    put = puts[-1]["time"]
    last_challenger = max(a.at for a in load.answers if a.entity == challenger or challenger in a.message)
    during = [a for a in load.answers if fault["at"] <= a.at <= put]
    mine = sum(1 for a in during if a.entity == challenger or challenger in a.message)
    return {
        "interval_s": interval,
        "watched_steps": watched_steps(rc),  # the error rule's level is split over them (judge.watched_steps)
        "latency_looks": looks(rc),  # the latency rule's Bonferroni looks (judge.looks)
        "challenger_calls_at_decision": _calls_at_decision(outcome.reason),
        "fault_seed": fault_seed,
        "phase": round(phase, 3),
        "detect_s": round(put - fault["at"], 3),
        "update_s": round(ready - put, 3),
        "back_s": round(ready - fault["at"], 3),
        "last_challenger_answer_s": round(last_challenger - fault["at"], 3),
        "challenger_calls_per_s": round(mine / max(put - fault["at"], 1e-9), 1),
        "dropped": len(load.dropped),
        "requests": len(load.answers),
        "reason": outcome.reason,
    }


def _calls_at_decision(reason: str) -> int:
    """The challenger's calls in the window that decided (the reason's "k/n errors")."""
    import re

    found = re.search(r"challenger \S+: \d+/(\d+) errors", reason)
    return int(found.group(1)) if found else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--error-rates", type=float, nargs="+", default=[0.3, 1.0])
    parser.add_argument("--seed", type=int, default=33)
    parser.add_argument("--reader", choices=["usage", "inference_table"], default="usage")
    parser.add_argument("--lags", type=float, nargs="+", default=[0.0], help="with --reader inference_table")
    parser.add_argument(
        "--out", default="", help="results file under bench/results (default rollout.json / rollout_inference_table.json)"
    )
    args = parser.parse_args()
    runs: list[dict] = []
    rng = random.Random(args.seed)
    seeds = random.Random(args.seed + 1)  # each run's fault seed (the phases stay those of --seed)
    lags: list[float | None] = list(args.lags) if args.reader == "inference_table" else [None]
    with tempfile.TemporaryDirectory() as tmp, fake_workspace(Path(tmp) / "ws", ready_seconds=0.2) as ws:
        for error_rate, lag in ((e, g) for e in args.error_rates for g in lags):
            for interval in args.intervals:
                for i in range(args.repeats):
                    phase = 0.0 if i == 0 else rng.random()  # the first run at the worst phase, the others anywhere
                    name = f"bench-{len(runs)}"
                    fault_seed = seeds.randrange(2**31)
                    run = {"error_rate": error_rate, **one_run(ws, name, interval, error_rate, Path(tmp), phase, lag, fault_seed)}
                    landing = 0.0 if lag is None else lag + 1.0  # the fault's lag and the fake's ~1 s flush
                    run.update(lag_s=lag, target_s=round(2 * interval + landing + run["update_s"], 3))
                    run["met"] = run["back_s"] <= run["target_s"]
                    runs.append(run)
                    print(
                        f"error rate {error_rate:g}, lag {lag}, interval {interval:g} s, phase {phase:.2f}: detect {run['detect_s']:.2f} s "
                        f"+ update {run['update_s']:.2f} s = {run['back_s']:.2f} s (target {run['target_s']:.2f} s: "
                        f"{'met' if run['met'] else 'NOT met'}); challenger {run['challenger_calls_per_s']:g} calls/s; "
                        f"dropped {run['dropped']}",
                        flush=True,
                    )
    summary = {}
    for error_rate, lag in ((e, g) for e in args.error_rates for g in lags):
        for interval in args.intervals:
            mine = [r for r in runs if r["interval_s"] == interval and r["error_rate"] == error_rate and r["lag_s"] == lag]
            where = "" if lag is None else f", lag {lag:g} s"
            summary[f"error_rate {error_rate:g}{where}, interval {interval:g} s"] = {
                "median_back_s": statistics.median(r["back_s"] for r in mine),
                "median_detect_over_interval": round(statistics.median(r["detect_s"] / interval for r in mine), 3),
                "worst_phase_back_s": mine[0]["back_s"],
                "median_update_s": statistics.median(r["update_s"] for r in mine),
                "met": sum(r["met"] for r in mine),
                "runs": len(mine),
            }
    out = {"max_error_rate": 0.05, "fake_ready_seconds": 0.2, "load_threads": 3, "reader": args.reader, "summary": summary,
           "runs": runs}  # fmt: skip
    default = "rollout.json" if args.reader == "usage" else "rollout_inference_table.json"
    path = ROOT / "bench" / "results" / (args.out or default)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
