"""The evaluation statistics at scale: 100,000 rows x 3 candidates (issue 30: under 2 s here).

Every candidate's metrics with intervals (llmops_nb.evaluation.statistics.summarize) and the
paired comparisons against the baseline (compare_candidates), timed end to end; the ratio to
numpy's plain means of the same columns shows the cost of the intervals.

    .venv/bin/python bench/evaluation_statistics.py [--rows 100000] [--candidates 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from llmops_nb.evaluation import statistics as st


def columns(rows: int, candidates: int, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(candidates):
        out[f"c{i}"] = {
            "exact_match": (rng.random(rows) < 0.4 + 0.01 * i).astype(float),
            "contains_match": (rng.random(rows) < 0.6 + 0.01 * i).astype(float),
            "error": (rng.random(rows) < 0.01).astype(float),
            "latency_ms": rng.gamma(2.0, 60.0, rows),
            "response_length": rng.poisson(12, rows).astype(float),
            "completion_tokens": rng.poisson(20, rows).astype(float),
            "prompt_tokens": rng.poisson(40, rows).astype(float),
            "tokens_per_second": rng.gamma(5.0, 20.0, rows),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "evaluation_statistics.json")
    args = parser.parse_args()
    data = columns(args.rows, args.candidates)
    st.summarize(data["c0"])  # imports scipy outside the timing
    walls, plain = [], []
    for _ in range(args.rounds):
        started = time.perf_counter()
        summaries = {c: st.summarize(v) for c, v in data.items()}
        diffs = st.compare_candidates(data, "c0")
        walls.append(time.perf_counter() - started)
        started = time.perf_counter()
        for v in data.values():
            for x in v.values():
                float(np.nanmean(x))
        plain.append(time.perf_counter() - started)
    result = {
        "rows": args.rows,
        "candidates": args.candidates,
        "metrics_per_candidate": len(summaries["c0"]),
        "comparisons": len(diffs),
        "seconds_median": float(np.median(walls)),
        "seconds_all": walls,
        "ratio_to_plain_means": float(np.median(walls) / max(np.median(plain), 1e-9)),
        "under_2_s": bool(np.median(walls) < 2.0),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
