"""Evaluation cost, one run: concurrency 1 vs 8, and MLflow GenAI scoring on vs off.

Against the fake workspace (each answer takes ``--latency-ms``) with the bundled dataset,
MLflow in a temporary SQLite store. Prints seconds per variant and the ratios.

    .venv/bin/python bench/evaluate.py [--latency-ms 50] [--rows 48]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from llmops_nb import endpoints
from llmops_nb.config import EndpointConfig
from llmops_nb.datasets import load_dataset
from llmops_nb.evaluate import evaluate_endpoint
from llmops_nb.testing import fake_workspace


def timed(w, rows: list[dict], tmp: Path, **kwargs) -> float:  # noqa: ANN001, ANN003
    started = time.perf_counter()
    evaluate_endpoint(w, "bench", rows, tracking_uri=f"sqlite:///{tmp}/mlflow.db", progress=False, **kwargs)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--rows", type=int, default=48)
    args = parser.parse_args()
    rows = load_dataset(max_rows=args.rows)
    tmp = Path(tempfile.mkdtemp(prefix="llmops-bench-eval-"))
    with fake_workspace(tmp / "ws", latency_ms=args.latency_ms) as ws:
        w = ws.client()
        cfg = EndpointConfig.model_validate(
            {"name": "bench", "served_entities": [{"entity_name": "m", "entity_version": "1"}]})
        endpoints.deploy(w, cfg, progress=False, poll_interval=0.1)
        timed(w, rows[:2], tmp, mlflow_scoring=False)  # warm up: create the store, import everything
        serial = timed(w, rows, tmp, concurrency=1, mlflow_scoring=False)
        parallel = timed(w, rows, tmp, concurrency=8, mlflow_scoring=False)
        scored = timed(w, rows, tmp, concurrency=8, mlflow_scoring=True)
    print(f"{len(rows)} rows, {args.latency_ms:g} ms per answer (fake workspace, SQLite MLflow store)")
    print(f"concurrency 1, own scoring:      {serial:7.2f} s")
    print(f"concurrency 8, own scoring:      {parallel:7.2f} s   speed-up x{serial / parallel:.1f}")
    print(f"concurrency 8, mlflow.genai:     {scored:7.2f} s   genai scoring adds {scored - parallel:.2f} s "
          f"({(scored - parallel) / len(rows) * 1000:.0f} ms/row)")


if __name__ == "__main__":
    main()
