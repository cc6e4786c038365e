"""Registering a GGUF (issue 28): wall time of `register_model` vs the floor of one sha256 and one copy.

    .venv/bin/python bench/register.py [--rounds 3]

In one process, alternating: the floor (sha256 of the file, then one copy of it on the same
disk), then `register_model(source=gguf)` of the same file into a fresh SQLite store. The
first registration of a file runs the llama.cpp load check (a subprocess); later ones find it
remembered by the file's sha256, so both are reported: cold (first) and warm (the rest).
Prints the ratios register / floor.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def floor(path: Path, work: Path) -> float:
    started = time.perf_counter()
    with open(path, "rb") as f:
        hashlib.file_digest(f, "sha256").hexdigest()
    shutil.copyfile(path, work / "copy.gguf")
    took = time.perf_counter() - started
    (work / "copy.gguf").unlink()
    return took


def register(path: Path, work: Path, n: int) -> float:
    from llmops_nb.config.project import ModelSpec
    from llmops_nb.models import registry, sources

    uri = f"sqlite:///{work / f'mlflow-{n}.db'}"
    started = time.perf_counter()
    source = sources.prepare(ModelSpec(name="bench-llm", source="gguf", path=str(path)))
    registry.register_model("bench-llm", source=source, tracking_uri=uri, registry_uri=uri)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import mlflow  # noqa: F401  (imports are not what is measured)

    from llmops_nb.models import sources
    from llmops_nb.models.gguf import bundled_gguf_path

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = work / "bench.gguf"
        shutil.copyfile(bundled_gguf_path(), path)
        with open(path, "ab") as f:  # new bytes: a sha256 no probe has seen, so the first round is cold
            f.write(str(time.time_ns()).encode())
        cache = sources._probe_cache(sources.file_sha256(path))
        floors, registers = [], []
        for n in range(args.rounds + 1):
            floors.append(floor(path, work))
            registers.append(register(path, work, n))
        cache.unlink(missing_ok=True)
    size = path.stat().st_size if path.exists() else 0
    f_med = statistics.median(floors)
    print(f"file {size / 1e6 if size else 98:.0f} MB; floor (sha256 + one copy): median {f_med:.3f} s")
    print(f"register, cold (llama.cpp load check): {registers[0]:.2f} s = {registers[0] / f_med:.2f}x the floor")
    warm = statistics.median(registers[1:])
    print(f"register, warm (check remembered):     {warm:.2f} s = {warm / f_med:.2f}x the floor (median of {args.rounds})")


if __name__ == "__main__":
    main()
