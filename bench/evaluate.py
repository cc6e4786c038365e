"""Evaluation against a remote endpoint: ours vs a sequential loop vs mlflow.genai.evaluate's loop.

The fake workspace answers each invocation after ``--latency-ms`` L and allows
``--max-concurrency`` C calls at once (429 with Retry-After beyond), so N rows cannot take
less than N*L/C. In one run, against the same endpoint, with MLflow in a temporary SQLite
store:

- **ours**: ``evaluate_endpoint(..., concurrency=C, mlflow_scoring=False)`` (query, own
  scores, MLflow run with params, metrics, table, plot), and again with
  ``mlflow_scoring=True`` (MLflow GenAI scorers on top: a fixed cost per row, reported apart);
- **sequential**: ``client.chat`` per row, one after another;
- **genai**: ``mlflow.genai.evaluate(data, predict_fn, scorers=[a trivial scorer])`` with its
  default predict workers (10 > C: some calls get a 429 and the SDK retries them; part of
  what is measured) and the SQLite-safe trace settings of ``llmops_nb.evaluation.scorers`` apart from
  the worker count.

Each side's invocations are counted from the fake's request record (status 200 per
question) to check that every row was asked exactly once. Target: ours at most 1.15 x
N*L/C. The bundled dataset (52 rows) is cycled to N rows with unique ids and questions.

    .venv/bin/python bench/evaluate.py --compare [--rows 200] [--latency-ms 200] [--max-concurrency 8]

At scale (issue 18; the default): the default path (``mlflow_scoring=True``: traces with
assessments for the rows that matter, per-row table) in a fresh process per case, so each
case's peak RSS is its own: N=200, C=8 on SQLite (target 1.3 x N*L/C); N=200, C=8 on a
remote ``mlflow server`` behind a proxy adding 20 ms per request (target 1.5); N=500 and
N=5,000 at C=32 on SQLite (target 1.2; peak RSS printed for both: it must stay flat).

    .venv/bin/python bench/evaluate.py [--latency-ms 200]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmops_nb.chat import client
from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.endpoints.apply import deploy
from llmops_nb.evaluation.asking import DEFAULT_SYSTEM
from llmops_nb.evaluation.datasets import load_dataset
from llmops_nb.evaluation.orchestrate import evaluate_endpoint
from llmops_nb.testing import fake_workspace

ROOT = Path(__file__).resolve().parents[1]
ENDPOINT = "bench"
TARGET = 1.15
# llmops_nb.evaluation.scorers.SQLITE_EVAL_ENV without the worker count: genai keeps its default workers.
GENAI_ENV = {"MLFLOW_GENAI_EVAL_MAX_SCORER_WORKERS": "1", "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false"}


def cycled_rows(n: int) -> list[dict[str, Any]]:
    """``n`` rows: the bundled dataset repeated, ids and questions made unique per cycle."""
    base = load_dataset()
    rows = []
    for i in range(n):
        row, k = dict(base[i % len(base)]), i // len(base)
        if k:
            row["id"], row["question"] = f"{row['id']}-{k}", f"{row['question']} (#{k})"
        rows.append(row)
    return rows


def invocations(ws, since: float) -> collections.Counter:  # noqa: ANN001
    """Answered (200) invocations since ``since``, by last user message; and the 429s under key None."""
    counts: collections.Counter = collections.Counter()
    for r in ws.requests():
        if r["time"] < since or not r["path"].endswith("/invocations"):
            continue
        if r["status"] == 200:
            counts[[m for m in r["body"]["messages"] if m["role"] == "user"][-1]["content"]] += 1
        elif r["status"] == 429:
            counts[None] += 1
    return counts


def run_side(ws, rows: list[dict], fn: Callable[[], Any]) -> dict[str, Any]:  # noqa: ANN001
    since = time.time()
    started = time.perf_counter()
    fn()
    seconds = time.perf_counter() - started
    counts = invocations(ws, since)
    asked = [counts.get(r["question"], 0) for r in rows]
    return {
        "seconds": seconds,
        "answered_calls": sum(asked),
        "rows_asked_once": sum(1 for a in asked if a == 1),
        "rows_asked_more": sum(1 for a in asked if a > 1),
        "rows_not_asked": sum(1 for a in asked if a == 0),
        "throttled_429": counts.get(None, 0),
        "load": os.getloadavg()[0],
    }


def sequential(w, rows: list[dict], max_tokens: int) -> None:  # noqa: ANN001
    for r in rows:
        client.chat(w, ENDPOINT, r["question"], max_tokens=max_tokens, system=DEFAULT_SYSTEM)


def genai(w, rows: list[dict], tracking_uri: str, max_tokens: int) -> None:  # noqa: ANN001
    import mlflow
    from mlflow.genai.scorers import scorer

    @scorer(name="answered")
    def answered(outputs: str) -> bool:
        return bool(outputs)

    def predict_fn(question: str) -> str:
        return client.chat(w, ENDPOINT, question, max_tokens=max_tokens, system=DEFAULT_SYSTEM).content

    changed = {k: v for k, v in GENAI_ENV.items() if k not in os.environ}
    os.environ.update(changed)
    try:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_experiment("bench-genai")
        with mlflow.start_run():
            mlflow.genai.evaluate(
                data=[{"inputs": {"question": r["question"]}} for r in rows], predict_fn=predict_fn, scorers=[answered]
            )
    finally:
        for k in changed:
            os.environ.pop(k, None)


SCALE_CASES = [  # name, rows, concurrency, store, target ratio
    ("sqlite N=200 C=8", 200, 8, "sqlite", 1.3),
    ("remote+20ms N=200 C=8", 200, 8, "remote", 1.5),
    ("sqlite N=500 C=32", 500, 32, "sqlite", 1.2),
    ("sqlite N=5000 C=32", 5000, 32, "sqlite", 1.2),
]


def one_case(rows_n: int, concurrency: int, store: str, latency_ms: float, max_tokens: int) -> dict[str, Any]:
    """One default-path evaluation in this process (after a small warm-up); its figures."""
    import resource

    from llmops_nb.testing.tracking_server import tracking_server

    tmp = Path(tempfile.mkdtemp(prefix="llmops-bench-eval-"))
    rows = cycled_rows(rows_n)
    ideal = rows_n * latency_ms / 1000 / concurrency
    with contextlib.ExitStack() as stack:
        if store == "remote":
            server = stack.enter_context(tracking_server(tmp / "tracking", delay_ms=20))
            tracking_uri = server.uri
        else:
            tracking_uri = f"sqlite:///{tmp}/mlflow.db"
        ws = stack.enter_context(fake_workspace(tmp / "ws"))
        w = ws.client()
        cfg = EndpointConfig.model_validate({"name": ENDPOINT, "served_entities": [{"entity_name": "m", "entity_version": "1"}]})
        deploy(w, cfg, progress=False, poll_interval=0.1)
        common = {
            "tracking_uri": tracking_uri,
            "progress": False,
            "max_tokens": max_tokens,
            "concurrency": concurrency,
            "output_dir": tmp / "out",
        }
        evaluate_endpoint(w, ENDPOINT, rows[:4], **common)  # warm-up: imports, store, matplotlib
        ws.set_faults(latency_ms=latency_ms, max_concurrency=concurrency)
        side = run_side(ws, rows, lambda: evaluate_endpoint(w, ENDPOINT, rows, **common))
    side.update(
        rows=rows_n,
        concurrency=concurrency,
        store=store,
        ideal_s=ideal,
        ratio=side["seconds"] / ideal,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    return side


def scale(latency_ms: float, max_tokens: int) -> None:
    """Each case of :data:`SCALE_CASES` in a fresh process; a table and bench/results/evaluate_scale.json."""
    import subprocess
    import sys

    load_before = os.getloadavg()
    results = []
    for name, n, c, store, target in SCALE_CASES:
        proc = subprocess.run(
            [sys.executable, __file__, "--one", str(n), str(c), store, str(latency_ms), str(max_tokens)],
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            print(f"{name}: failed\n{proc.stderr[-2000:]}", flush=True)
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r.update(name=name, target=target)
        results.append(r)
        print(
            f"{name:24s} {r['seconds']:7.2f} s = {r['ratio']:.3f} x N*L/C ({r['ideal_s']:.2f} s; target {target}: "
            f"{'met' if r['ratio'] <= target else 'MISSED'}), rows asked once {r['rows_asked_once']}/{n}, "
            f"429s {r['throttled_429']}, peak RSS {r['peak_rss_mb']:.0f} MB, load {r['load']:.2f}",
            flush=True,
        )
    load_after = os.getloadavg()
    print(f"L={latency_ms:g} ms; load average {load_before[0]:.2f} -> {load_after[0]:.2f}, {os.cpu_count()} cpus")
    out = ROOT / "bench" / "results" / "evaluate_scale.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "latency_ms": latency_ms,
                "cases": results,
                "loadavg_before": load_before,
                "loadavg_after": load_after,
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )


def main() -> None:
    import sys

    if sys.argv[1:2] == ["--one"]:
        n, c, store, latency, tokens = sys.argv[2:7]
        print(json.dumps(one_case(int(n), int(c), store, float(latency), int(tokens))))
        return
    if "--compare" not in sys.argv:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--latency-ms", type=float, default=200.0)
        parser.add_argument("--max-tokens", type=int, default=16)
        args = parser.parse_args()
        scale(args.latency_ms, args.max_tokens)
        return
    sys.argv.remove("--compare")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--max-concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--skip-sequential", action="store_true", help="skip the N*L sequential loop")
    args = parser.parse_args()
    rows = cycled_rows(args.rows)
    ideal = args.rows * args.latency_ms / 1000 / args.max_concurrency
    tmp = Path(tempfile.mkdtemp(prefix="llmops-bench-eval-"))
    tracking_uri = f"sqlite:///{tmp}/mlflow.db"
    load_before = os.getloadavg()
    sides: dict[str, dict[str, Any]] = {}
    with fake_workspace(tmp / "ws") as ws:
        w = ws.client()
        cfg = EndpointConfig.model_validate({"name": ENDPOINT, "served_entities": [{"entity_name": "m", "entity_version": "1"}]})
        deploy(w, cfg, progress=False, poll_interval=0.1)
        common = {
            "tracking_uri": tracking_uri,
            "progress": False,
            "max_tokens": args.max_tokens,
            "concurrency": args.max_concurrency,
        }
        # Warm up (imports, the SQLite store, matplotlib, genai's modules) without the faults.
        evaluate_endpoint(w, ENDPOINT, rows[:4], mlflow_scoring=True, **common)
        genai(w, rows[:2], tracking_uri, args.max_tokens)
        ws.set_faults(latency_ms=args.latency_ms, max_concurrency=args.max_concurrency)

        run_ids: dict[bool, str] = {}

        def ours(scoring: bool) -> Callable[[], None]:
            def go() -> None:
                run_ids[scoring] = evaluate_endpoint(w, ENDPOINT, rows, mlflow_scoring=scoring, **common).run_id

            return go

        # Ours three times, interleaved with the others (the machine is shared): the median counts.
        plan = [
            ("ours#1", ours(False)),
            ("genai", lambda: genai(w, rows, tracking_uri, args.max_tokens)),
            ("ours#2", ours(False)),
            ("ours+mlflow_scoring", ours(True)),
            ("ours#3", ours(False)),
        ]
        if not args.skip_sequential:
            plan.append(("sequential", lambda: sequential(w, rows, args.max_tokens)))
        for name, fn in plan:
            sides[name] = run_side(ws, rows, fn)
            if name.startswith("ours"):
                import mlflow

                run = mlflow.get_run(run_ids[name == "ours+mlflow_scoring"])
                sides[name]["query_seconds"] = run.data.metrics["query_seconds"]
            s = sides[name]
            print(
                f"{name:20s} {s['seconds']:7.2f} s  {s['seconds'] / ideal:5.2f} x N*L/C   "
                f"rows asked once {s['rows_asked_once']}/{len(rows)} (more: {s['rows_asked_more']}, "
                f"none: {s['rows_not_asked']}), 429s {s['throttled_429']}, load {s['load']:.2f}",
                flush=True,
            )
    load_after = os.getloadavg()
    runs = sorted((sides[f"ours#{i}"] for i in (1, 2, 3)), key=lambda s: s["seconds"])
    ours_s = sides["ours"] = runs[1]  # the median run
    print(
        f"\nN={args.rows} rows, L={args.latency_ms:g} ms, C={args.max_concurrency}: N*L/C = {ideal:.2f} s; "
        f"load {load_before[0]:.2f} -> {load_after[0]:.2f}, {os.cpu_count()} cpus"
    )
    print(
        f"ours (mlflow_scoring=False, median of 3): {ours_s['seconds']:.2f} s "
        f"= {ours_s['seconds'] / ideal:.3f} x N*L/C "
        f"({'OK' if ours_s['seconds'] <= TARGET * ideal else 'MISSED'}, target <= {TARGET}); "
        f"querying alone {ours_s['query_seconds']:.2f} s = {ours_s['query_seconds'] / ideal:.3f} x"
    )
    for name in ("sequential", "genai", "ours+mlflow_scoring"):
        if name in sides:
            print(f"  {name} / ours: {sides[name]['seconds'] / ours_s['seconds']:.2f}")
    print(
        f"  MLflow GenAI scoring adds {sides['ours+mlflow_scoring']['seconds'] - ours_s['seconds']:.2f} s "
        f"({(sides['ours+mlflow_scoring']['seconds'] - ours_s['seconds']) / args.rows * 1000:.0f} ms/row)"
    )
    out = ROOT / "bench" / "results" / "evaluate.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "rows": args.rows,
                "latency_ms": args.latency_ms,
                "max_concurrency": args.max_concurrency,
                "ideal_s": ideal,
                "target_ratio": TARGET,
                "sides": sides,
                "ratio_ours_to_ideal": ours_s["seconds"] / ideal,
                "loadavg_before": load_before,
                "loadavg_after": load_after,
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
