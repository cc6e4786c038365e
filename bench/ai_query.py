"""The ai_query engine against the threads engine on the fake workspace (issue 32).

The fake answers each chat call after ``--latency-ms`` L. The fake's SQL warehouse asks the rows of
one ai_query statement 8 at a time (workspace/api/ai_query.py, CONCURRENCY), so with the threads
engine at concurrency 8 both have the same ceiling, 8 / L rows per second; the figures say what the
statements (parameters in, EXTERNAL_LINKS chunks out, two SQLite passes) cost on top of the asking.
Both evaluate the same ``--rows`` generated rows on the fake's foundation endpoint, in this one process;
rows/s is over the whole ``evaluate_endpoint`` call (MLflow run and artifacts included, row traces off).

    .venv/bin/python bench/ai_query.py [--rows 2000] [--latency-ms 50] [--per-statement 1000]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ is sys.path[0] when run as a script: keep its modules from shadowing libraries (bench/candidates.py).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

FOUNDATION = "databricks-smollm2-135m-instruct"
AT_ONCE = 8  # the fake warehouse's ai_query concurrency, and the threads engine's here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--per-statement", type=int, default=1000)
    args = parser.parse_args()

    from llmops_nb.evaluation.ai_query_engine import AiQueryEngine
    from llmops_nb.evaluation.orchestrate import evaluate_endpoint
    from llmops_nb.testing import fake_workspace

    rows = [{"id": f"r{i:06d}", "question": f"Say {i}.", "expected": str(i)} for i in range(args.rows)]
    ceiling = AT_ONCE / (args.latency_ms / 1000)
    figures: dict[str, dict[str, float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="llmops-bench-aiq-") as tmp,
        fake_workspace(Path(tmp) / "ws", latency_ms=args.latency_ms) as ws,
    ):
        for name, engine in (("threads", None), ("ai_query", AiQueryEngine("wh-bench", args.per_statement))):
            started = time.perf_counter()
            result = evaluate_endpoint(
                ws.client(retry_timeout_seconds=600, http_timeout_seconds=600),
                FOUNDATION,
                rows,
                concurrency=AT_ONCE,
                tracking_uri=f"sqlite:///{tmp}/mlflow-{name}.db",
                progress=False,
                mlflow_scoring=False,
                output_dir=Path(tmp) / name,
                engine=engine,
                system=None,
            )
            seconds = time.perf_counter() - started  # the whole evaluate_endpoint: asking, scoring, the MLflow run
            rate = args.rows / seconds
            figures[name] = {"rows": args.rows, "seconds": round(seconds, 2), "rows_per_s": round(rate, 1)}
            figures[name]["of_ceiling"] = round(rate / ceiling, 3)
            assert result.metrics["error_rate"] == 0.0, result.metrics
    line = {"latency_ms": args.latency_ms, "at_once": AT_ONCE, "ceiling_rows_per_s": round(ceiling, 1), **figures}
    line["ai_query_vs_threads"] = round(figures["ai_query"]["rows_per_s"] / figures["threads"]["rows_per_s"], 3)
    print(json.dumps(line))


if __name__ == "__main__":
    main()
