"""The spark engine against its ceiling, the threads engine beside it, and the driver's memory (issue 32).

The fake workspace answers every request after ``--latency-ms`` L and refuses (429, Retry-After)
any invocation beyond ``--cap`` C in flight, so no engine can do better than C / L rows per
second. Each measurement is a fresh process (its own peak RSS) running ``evaluate_endpoint`` on
generated rows, MLflow run and artifacts included (row traces off, as for a large evaluation):

- spark, ``local[2]``, ``--rows`` (20,000) rows in ``--partitions`` tasks, two at a time, each
  with concurrency C / 2: rows/s over the ``query_seconds`` the run logs (the Spark job and the
  driver's read-back of the results) against C / L (target >= 0.8);
- threads, the same rows at concurrency C: its rows/s beside it;
- the spark driver's peak RSS (``ru_maxrss`` of the Python driver; Spark's JVM is a process of
  its own) at ``--rows`` against ``--small-rows`` (2,000) (target <= 1.2x).

    .venv/bin/python bench/spark_engine.py [--rows 20000] [--small-rows 2000] [--latency-ms 200] [--cap 16]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ is sys.path[0] when run as a script: keep its modules from shadowing libraries (bench/candidates.py).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402


def child(args: argparse.Namespace) -> None:
    """One measurement in this process: print its JSON line."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    from llmops_nb.evaluation.orchestrate import evaluate_endpoint
    from llmops_nb.evaluation.spark_engine import SparkEngine

    w = WorkspaceClient(
        config=Config(host=args.host, token=os.environ["BENCH_TOKEN"], auth_type="pat", retry_timeout_seconds=600)
    )
    rows = [{"id": f"r{i:06d}", "question": f"Say {i}.", "expected": str(i)} for i in range(args.child_rows)]
    engine = SparkEngine(partitions=args.partitions, master="local[2]") if args.child_engine == "spark" else None
    tmp = Path(tempfile.mkdtemp(prefix="llmops-bench-spark-"))
    started = time.perf_counter()
    result = evaluate_endpoint(
        w,
        "chat",
        rows,
        concurrency=args.cap,
        tracking_uri=f"sqlite:///{tmp}/mlflow.db",
        progress=False,
        mlflow_scoring=False,
        output_dir=tmp / "out",
        engine=engine,
    )
    total = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    from mlflow import MlflowClient

    query = MlflowClient(f"sqlite:///{tmp}/mlflow.db").get_run(result.run_id).data.metrics["query_seconds"]
    line = {
        "engine": args.child_engine,
        "rows": args.child_rows,
        "query_seconds": query,
        "total_seconds": total,
        "rows_per_s": args.child_rows / query,
        "error_rate": result.metrics["error_rate"],
        "unique_ids": int(result.table["id"].nunique()),
        "driver_peak_rss_mb": peak_mb,
    }
    print("RESULT " + json.dumps(line), flush=True)


def run_child(args: argparse.Namespace, host: str, token: str, engine: str, rows: int) -> dict:
    command = [sys.executable, __file__, "--child-engine", engine, "--child-rows", str(rows), "--host", host]
    command += ["--cap", str(args.cap), "--partitions", str(args.partitions)]
    env = {**os.environ, "BENCH_TOKEN": token, "PYSPARK_PYTHON": sys.executable}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    found = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not found:
        raise SystemExit(f"{engine} {rows}: no result\n{done.stderr[-3000:]}")
    return json.loads(found[-1].removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--small-rows", type=int, default=2_000)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--cap", type=int, default=16)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "spark_engine.json")
    parser.add_argument("--child-engine", default="")
    parser.add_argument("--child-rows", type=int, default=0)
    parser.add_argument("--host", default="")
    args = parser.parse_args()
    if args.child_engine:
        child(args)
        return

    from llmops_nb.config.endpoint import EndpointConfig
    from llmops_nb.endpoints.apply import deploy
    from llmops_nb.testing import fake_workspace

    ceiling = args.cap / (args.latency_ms / 1000)
    tmp = Path(tempfile.mkdtemp(prefix="llmops-bench-spark-ws-"))
    with fake_workspace(tmp / "ws") as ws:
        body = {"name": "chat", "served_entities": [{"entity_name": "m", "entity_version": "1"}]}
        deploy(ws.client(), EndpointConfig.model_validate(body), progress=False, poll_interval=0.1)
        ws.set_faults(latency_ms=args.latency_ms, max_concurrency=args.cap, retry_after=0.2)
        runs = {
            "spark_small": run_child(args, ws.host, ws.token, "spark", args.small_rows),
            "spark": run_child(args, ws.host, ws.token, "spark", args.rows),
            "threads": run_child(args, ws.host, ws.token, "threads", args.rows),
        }
    result = {
        "latency_ms": args.latency_ms,
        "cap": args.cap,
        "ceiling_rows_per_s": ceiling,
        "partitions": args.partitions,
        "master": "local[2]",
        "spark_to_ceiling": runs["spark"]["rows_per_s"] / ceiling,
        "threads_to_ceiling": runs["threads"]["rows_per_s"] / ceiling,
        "driver_rss_ratio": runs["spark"]["driver_peak_rss_mb"] / runs["spark_small"]["driver_peak_rss_mb"],
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
