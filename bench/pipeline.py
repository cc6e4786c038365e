"""The chain's overhead: `llmops-nb run` against the same four steps as plain functions.

Usage: python bench/pipeline.py [--rounds 2] [--max-rows N] [--config configs/local.yml]

Both sides run on the local workspace with the real model, in a scratch project folder,
alternating (functions, chain, functions, chain, ...) so that load on the machine hits both
alike. Each round registers a new version, so each deploy makes one real update (a new
scoring server) on both sides. Prints the wall times, the per-step split of the chain and
the ratio chain / functions (target: at most 1.3). A third side, the chain with
``--cold-kernels`` (each kernel started when its step begins, as plain papermill does),
shows what starting kernels ahead saves (``--skip-cold`` leaves it out).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def functions_once(config: Path, max_rows: int | None) -> dict[str, float]:
    """The four steps as plain functions in this process (what the notebooks call)."""
    from llmops_nb.backends import load_project
    from llmops_nb.steps.deploy import deploy
    from llmops_nb.steps.evaluate import evaluate
    from llmops_nb.steps.query import query
    from llmops_nb.steps.register import register

    times: dict[str, float] = {}
    t = time.perf_counter()
    project, backend = load_project(str(config))
    registered = register(project, backend)
    times["register"] = time.perf_counter() - t
    t = time.perf_counter()
    deployed = deploy(project, backend, model_version=registered["model_version"], progress=False)
    times["deploy"] = time.perf_counter() - t
    t = time.perf_counter()
    query(
        project,
        backend,
        ["What is MLflow?", "Name the three primary colors.", "What is the capital of France?"],
        endpoint_name=deployed["endpoint_name"],
    )
    times["serve"] = time.perf_counter() - t
    t = time.perf_counter()
    evaluate(
        project,
        backend,
        endpoint_name=deployed["endpoint_name"],
        model_name=registered["model_name"],
        model_version=registered["model_version"],
        max_rows=max_rows,
        progress=False,
    )
    times["evaluate"] = time.perf_counter() - t
    return times


def chain_once(config: Path, max_rows: int | None, env: dict[str, str], warm: bool = True) -> tuple[float, dict[str, float]]:
    """`llmops-nb run` as a user runs it (a new process, papermill kernels)."""
    cmd = [
        sys.executable,
        "-m",
        "llmops_nb.cli.main",
        "run",
        "--config",
        str(config),
        "--warm-kernels" if warm else "--cold-kernels",
    ]
    if max_rows:
        cmd += ["--max-rows", str(max_rows)]
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=env["LLMOPS_PROJECT_DIR"])
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"llmops-nb run failed:\n{done.stderr[-3000:]}")
    run_dir = Path(done.stdout.split("run folder: ", 1)[1].splitlines()[0])
    return wall, json.loads((run_dir / "summary.json").read_text())["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-rows", type=int, default=None, help="evaluation rows (default: the whole dataset)")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "local.yml")
    parser.add_argument(
        "--skip-cold", action="store_true", help="skip the third side: the chain with cold kernels (--cold-kernels)"
    )
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="llmops-bench-pipeline-"))
    shutil.copytree(ROOT / "configs", scratch / "configs")
    config = scratch / "configs" / args.config.name
    os.environ["LLMOPS_PROJECT_DIR"] = str(scratch)
    for key in ("MLFLOW_TRACKING_URI", "LLMOPS_HOME", "DATABRICKS_HOST", "LLMOPS_BACKEND"):
        os.environ.pop(key, None)
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")

    plain, chained, chain_steps, cold, cold_steps, plain_steps = [], [], [], [], [], []
    try:
        for i in range(args.rounds):
            t = time.perf_counter()
            split = functions_once(config, args.max_rows)
            plain.append(time.perf_counter() - t)
            plain_steps.append(split)
            wall, steps = chain_once(config, args.max_rows, env)
            chained.append(wall)
            chain_steps.append(steps)
            line = f"round {i + 1}: functions {plain[-1]:.1f} s {_fmt(split)} | chain {wall:.1f} s {_fmt(steps)}"
            if not args.skip_cold:
                wall, steps = chain_once(config, args.max_rows, env, warm=False)
                cold.append(wall)
                cold_steps.append(steps)
                line += f" | chain, cold kernels {wall:.1f} s {_fmt(steps)}"
            print(f"{line} | load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        from llmops_nb.workspace import launcher

        launcher.stop(scratch / ".llmops")
    f, c = statistics.median(plain), statistics.median(chained)
    print(f"\nfunctions in one process: median {f:.1f} s over {len(plain)} rounds")
    print(f"llmops-nb run (papermill): median {c:.1f} s")
    print(
        f"ratio chain / functions: {c / f:.2f} (target <= 1.3: {'met' if c / f <= 1.3 else 'MISSED'}); "
        f"per round: {', '.join(f'{b / a:.2f}' for a, b in zip(plain, chained))}"
    )
    if cold:
        k = statistics.median(cold)
        print(f"llmops-nb run --cold-kernels: median {k:.1f} s; ratio {k / f:.2f} (warm kernels save {k - c:.1f} s)")
    out = ROOT / "bench" / "results" / "pipeline.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "functions_s": plain,
                "functions_steps_s": plain_steps,
                "chain_s": chained,
                "chain_steps_s": chain_steps,
                "chain_cold_s": cold,
                "chain_cold_steps_s": cold_steps,
                "ratio": c / f,
                "ratio_cold": statistics.median(cold) / f if cold else None,
                "max_rows": args.max_rows,
                "cpus": os.cpu_count(),
                "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            },
            indent=2,
        )
    )
    shutil.rmtree(scratch, ignore_errors=True)


def _fmt(split: dict[str, float]) -> str:
    return "(" + ", ".join(f"{k} {v:.1f}" for k, v in split.items()) + ")"


if __name__ == "__main__":
    main()
