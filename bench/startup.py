"""Start-up cost: `python -c "import llmops_nb"` and `llmops-nb --help` against `python -c pass`.

The three commands alternate, round after round, in one run (load on the machine hits all
of them alike); medians are compared. Target: importing the package adds at most 0.15 s
(mlflow, databricks-sdk, llama_cpp and pandas load only when used). Also lists which heavy
modules are loaded after `import llmops_nb.cli.main` (should be none).

    .venv/bin/python bench/startup.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.15
HEAVY = (
    "mlflow",
    "databricks",
    "pandas",
    "numpy",
    "llama_cpp",
    "fastapi",
    "uvicorn",
    "matplotlib",
    "pydantic",
    "yaml",
    "requests",
    "tqdm",
)


def commands() -> dict[str, list[str]]:
    cli = Path(sys.executable).parent / "llmops-nb"
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import llmops_nb": [sys.executable, "-c", "import llmops_nb"],
        "llmops-nb --help": [str(cli), "--help"] if cli.exists() else [sys.executable, "-m", "llmops_nb.cli.main", "--help"],
    }


def once(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - started


def heavy_after_cli_import() -> list[str]:
    probe = f"import sys, llmops_nb, llmops_nb.cli.main; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=ROOT)
    return out.stdout.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    cmds = commands()
    for cmd in cmds.values():  # warm the page cache and .pyc files
        once(cmd)
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(args.rounds):
        for name, cmd in cmds.items():
            times[name].append(once(cmd))
    load_after = os.getloadavg()
    med = {name: statistics.median(t) for name, t in times.items()}
    base = med["python -c pass"]
    added = {name: med[name] - base for name in cmds if name != "python -c pass"}
    heavy = heavy_after_cli_import()

    print(f"{args.rounds} rounds, medians; load {load_before[0]:.2f} -> {load_after[0]:.2f}, {os.cpu_count()} cpus")
    for name in cmds:
        extra = (
            ""
            if name == "python -c pass"
            else (
                f"   adds {added[name]:.3f} s  ({med[name] / base:.2f}x)  "
                f"{'OK' if added[name] <= TARGET_S else 'OVER'} (target <= {TARGET_S} s)"
            )
        )
        print(f"{name:18s} {med[name]:.3f} s{extra}")
    print(f"heavy modules loaded by `import llmops_nb.cli.main`: {', '.join(heavy) or 'none'}")

    out = ROOT / "bench" / "results" / "startup.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "rounds": args.rounds,
                "seconds": times,
                "median_s": med,
                "added_s": added,
                "target_added_s": TARGET_S,
                "heavy_modules_after_cli_import": heavy,
                "loadavg_before": load_before,
                "loadavg_after": load_after,
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
