"""Deploy waits: time from the endpoint's switch to READY until the deploy returns, and GETs/s.

Our ``deploy`` against databricks-sdk's ``serving_endpoints.create_and_wait``, both
creating a new endpoint on the fake workspace whose served entity takes ``ready_seconds``
to start, alternating, in one run. The switch time is the endpoint's
``last_updated_timestamp`` (set by the fake at the switch, ms resolution); the GETs are the
fake's recorded ``GET /api/2.0/serving-endpoints/<name>`` after the create call and before
the deploy returned. Target: a delay within 1 s, with at most one GET per second on average
while waiting. ``ready_seconds`` varies over the repetitions so that the switch falls at
different phases of the polling.

    .venv/bin/python bench/deploy_wait.py [--reps 4] [--ready-seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.endpoints.apply import deploy
from llmops_nb.testing import fake_workspace

ROOT = Path(__file__).resolve().parents[1]
API = "/api/2.0/serving-endpoints"


def config(name: str) -> EndpointConfig:
    return EndpointConfig.model_validate({"name": name, "served_entities": [{"entity_name": "m", "entity_version": "1"}]})


def ours(w, name: str) -> None:  # noqa: ANN001
    deploy(w, config(name), progress=False)


def sdk(w, name: str) -> None:  # noqa: ANN001
    from databricks.sdk.service import serving

    body = config(name).to_databricks_body()
    w.serving_endpoints.create_and_wait(
        name=name, config=serving.EndpointCoreConfigInput.from_dict(body["config"]), timeout=timedelta(minutes=5)
    )


def measure(ws, w, side: str, name: str, ready_seconds: float) -> dict:  # noqa: ANN001
    ws.set_faults(ready_seconds=ready_seconds)
    started = time.time()
    (ours if side == "ours" else sdk)(w, name)
    returned = time.time()
    ready_at = w.serving_endpoints.get(name).as_dict()["last_updated_timestamp"] / 1000
    mine = [r for r in ws.requests() if r["path"] in (f"{API}/{name}", API) and started <= r["time"] <= returned]
    posted = next(r["time"] for r in mine if r["method"] == "POST")
    gets = [r["time"] for r in mine if r["method"] == "GET" and r["path"] == f"{API}/{name}" and r["time"] > posted]
    waited = returned - posted
    return {
        "side": side,
        "name": name,
        "ready_seconds": ready_seconds,
        "delay_s": returned - ready_at,
        "gets": len(gets),
        "waited_s": waited,
        "gets_per_s": len(gets) / waited,
        "get_offsets_s": [round(t - posted, 3) for t in gets],
        "ready_offset_s": round(ready_at - posted, 3),
    }


def summary(rows: list[dict]) -> dict:
    delays = [r["delay_s"] for r in rows]
    return {
        "delay_mean_s": statistics.mean(delays),
        "delay_max_s": max(delays),
        "gets_per_s_mean": sum(r["gets"] for r in rows) / sum(r["waited_s"] for r in rows),
        "gets_per_s_max": max(r["gets_per_s"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=4, help="deploys per side")
    parser.add_argument("--ready-seconds", type=float, default=5.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="llmops-bench-deploy-"))
    rows: list[dict] = []
    load_before = os.getloadavg()
    with fake_workspace(tmp / "ws") as ws:
        w = ws.client()
        for i in range(args.reps):
            ready = args.ready_seconds + i / args.reps  # the switch at another phase each time
            for side in ("ours", "sdk") if i % 2 == 0 else ("sdk", "ours"):
                row = measure(ws, w, side, f"wait-{side}-{i}", ready)
                rows.append(row)
                print(
                    f"{side:4s} ready_seconds {ready:5.2f}: returned {row['delay_s']:.3f} s after READY, "
                    f"{row['gets']} GETs in {row['waited_s']:.2f} s ({row['gets_per_s']:.2f}/s), "
                    f"GETs at {row['get_offsets_s']}",
                    flush=True,
                )
    load_after = os.getloadavg()
    result = {side: summary([r for r in rows if r["side"] == side]) for side in ("ours", "sdk")}
    print(f"\nload {load_before[0]:.2f} -> {load_after[0]:.2f}, {os.cpu_count()} cpus; target: delay <= 1 s, <= 1 GET/s")
    for side, label in (("ours", "deploy"), ("sdk", "create_and_wait (SDK)")):
        s = result[side]
        print(
            f"{label:22s} delay after READY mean {s['delay_mean_s']:.3f} s, max {s['delay_max_s']:.3f} s; "
            f"GETs/s while waiting {s['gets_per_s_mean']:.2f} (max {s['gets_per_s_max']:.2f})"
        )
    o, k = result["ours"], result["sdk"]
    print(
        f"ratio ours / SDK: mean delay {o['delay_mean_s'] / k['delay_mean_s']:.2f}, "
        f"GETs/s {o['gets_per_s_mean'] / k['gets_per_s_mean']:.2f}"
    )
    out = ROOT / "bench" / "results" / "deploy_wait.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "summary": result,
                "rows": rows,
                "ready_seconds": args.ready_seconds,
                "loadavg_before": load_before,
                "loadavg_after": load_after,
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
