"""What an inference table costs per request on the local workspace (issue 16).

One fake workspace (its responder answers at once, so the workspace's own overhead is all
there is to see: the worst case for a relative cost), two endpoints serving the same entity:
``bench-off`` without an inference table and ``bench-on`` with
``ai_gateway.inference_table_config.enabled``. ``--clients`` threads send ``--requests`` chat
calls each over HTTP, alternating rounds off / on / off / on (``--rounds`` of each) so drift hits
both sides alike. Printed: requests/s and p50/p95 latency per side and their ratios (on / off),
then the hook's own cost on the request path (``usage.invocation_done`` with a table, measured
in-process: it only queues) and the background writer's cost per row (``write_deltalake``
batches), and a check that the table holds one row per request.

    .venv/bin/python bench/inference_table.py [--clients 1 8] [--requests 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

import requests

from llmops_nb.protocol import inference_table as pt
from llmops_nb.testing import fake_workspace

TABLE = "main.bench.bench-on_payload"


def _create(ws, name: str, table: bool) -> None:
    body = {"name": name, "config": {"served_entities": [{"entity_name": "m", "entity_version": "1"}]}}
    if table:
        body["ai_gateway"] = {"inference_table_config": {"catalog_name": "main", "schema_name": "bench", "enabled": True}}
    r = requests.post(
        f"{ws.host}/api/2.0/serving-endpoints", json=body, headers={"Authorization": f"Bearer {ws.token}"}, timeout=10
    )
    r.raise_for_status()
    ws.client().serving_endpoints.wait_get_serving_endpoint_not_updating(name)


def _round(ws, name: str, clients: int, n: int) -> tuple[float, list[float]]:
    """(requests/s, latencies in ms) of ``clients`` threads sending ``n`` calls each."""
    url = f"{ws.host}/serving-endpoints/{name}/invocations"
    lat: list[float] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {ws.token}"
        mine = []
        for j in range(n):
            body = {
                "messages": [
                    {"role": "system", "content": "Answer briefly."},
                    {"role": "user", "content": f"question {i}-{j}: what is MLflow?"},
                ],
                "max_tokens": 32,
            }
            t = time.perf_counter()
            r = s.post(url, json=body, timeout=30)
            mine.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.text
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return clients * n / (time.perf_counter() - start), lat


def _q(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q * 100) - 1] if len(values) > 1 else values[0]


def _hook_cost(home: Path, calls: int = 20000) -> tuple[float, float]:
    """(µs per invocation_done call with a table enabled, µs per row written by the writer)."""
    from llmops_nb.workspace.serving import inference_table as it
    from llmops_nb.workspace.serving.usage import invocation_done

    rec = {
        "id": "x",
        "ai_gateway": {"inference_table_config": {"catalog_name": "c", "schema_name": "s", "enabled": True}},
        "config": {"served_entities": [{"name": "m-1", "entity_name": "m", "entity_version": "1"}]},
    }
    body = {"messages": [{"role": "user", "content": "what is MLflow?"}], "max_tokens": 32}
    answer = {
        "id": "a",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "[m-1] echo: what is MLflow?"}}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
    }
    writer = it.writer(home)
    writer.interval, writer.batch = 3600, 10**9  # the queueing alone; the flush is timed below
    invocation_done(home, "ep", rec, "m-1", 200, 1.0, body, answer, "me")
    writer.flush()  # the first append creates the table and imports deltalake: not timed
    t = time.perf_counter()
    for _ in range(calls):
        invocation_done(home, "ep", rec, "m-1", 200, 1.0, body, answer, "me")
    per_call = (time.perf_counter() - t) / calls * 1e6
    t = time.perf_counter()
    written = writer.flush()
    per_row = (time.perf_counter() - t) / max(1, written) * 1e6
    writer.close()
    return per_call, per_row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--requests", type=int, default=200, help="calls per client per round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(
        f"python {platform.python_version()}, {platform.machine()}, "
        f"clients {args.clients}, {args.requests} calls per client per round, {args.rounds} rounds per side"
    )
    with tempfile.TemporaryDirectory() as tmp, fake_workspace(Path(tmp) / "ws", ready_seconds=0.1) as ws:
        _create(ws, "bench-off", table=False)
        _create(ws, "bench-on", table=True)
        _round(ws, "bench-off", 2, 20)  # warm up both
        _round(ws, "bench-on", 2, 20)
        sent = 40  # the warm-up's calls to bench-on
        for clients in args.clients:
            side: dict[str, tuple[list[float], list[float]]] = {"off": ([], []), "on": ([], [])}
            for _ in range(args.rounds):
                for name in ("off", "on"):
                    rps, lat = _round(ws, f"bench-{name}", clients, args.requests)
                    side[name][0].append(rps)
                    side[name][1].extend(lat)
                    if name == "on":
                        sent += clients * args.requests
            (off_rps, off_lat), (on_rps, on_lat) = side["off"], side["on"]
            r_off, r_on = statistics.median(off_rps), statistics.median(on_rps)
            print(f"\n{clients} client(s): requests/s off {r_off:.0f}, on {r_on:.0f} -> ratio {r_on / r_off:.3f}")
            for q in (0.5, 0.95):
                a, b = _q(off_lat, q), _q(on_lat, q)
                print(f"  latency p{int(q * 100)}: off {a:.2f} ms, on {b:.2f} ms -> ratio {b / a:.3f}")
        # the table holds one row per request sent to bench-on (warm-up included)
        from deltalake import DeltaTable

        path = pt.local_path(ws.home, TABLE)
        deadline = time.monotonic() + 30
        rows = 0
        while time.monotonic() < deadline:
            rows = (
                len(DeltaTable(str(path)).to_pyarrow_table(columns=["databricks_request_id"]))
                if (path / "_delta_log").is_dir()
                else 0
            )
            if rows >= sent:
                break
            time.sleep(0.2)
        versions = DeltaTable(str(path)).version() + 1
        print(f"\ntable {TABLE}: {rows} rows for {sent} requests, in {versions} appends (commits)")
    with tempfile.TemporaryDirectory() as tmp:
        per_call, per_row = _hook_cost(Path(tmp))
    print(f"hook on the request path (invocation_done, table enabled): {per_call:.1f} µs per call")
    print(f"background writer (JSON, Arrow, write_deltalake in one batch): {per_row:.1f} µs per row")


if __name__ == "__main__":
    main()
