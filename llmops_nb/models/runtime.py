"""The llama.cpp runtime: a portable llama-cpp-python wheel, built once, and a smoke check.

llama-cpp-python has no binary wheel on PyPI, and its source build compiles ggml with
``-march=native``. On an Intel Xeon with AMX (Sapphire Rapids) that turns on ggml's AMX
kernels, which die with SIGILL (``tilezero`` in ``ggml_backend_amx_mul_mat``) in the VMs this
project runs in; and a wheel built that way on one machine, cached by pip or logged with a
model, may not run on the next. So the project builds the wheel itself with ``GGML_NATIVE=OFF``:
ggml then compiles for a fixed x86-64-v3 level (SSE4.2, AVX, AVX2, FMA, F16C, BMI2; see
``vendor/llama.cpp/ggml/CMakeLists.txt``: with NATIVE off those options default on, AVX-512 and
AMX default off), which every x86-64 CPU since Haswell and Zen 1 runs.

The wheel is kept in a wheelhouse keyed by version, flags, Python and machine, outside pip's
own cache (pip reuses a cached wheel whatever flags are passed later), so a new ``.venv``
installs it in seconds and a change of flags builds anew.

Standard library only: ``make install`` runs it with ``python -m`` before the project's
dependencies are installed. ``python -m llmops_nb.models.runtime install|check|wheel``.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

# The pin lives here and in pyproject.toml's `local` extra; tests/models/test_runtime.py keeps
# them equal.
LLAMA_CPP_REQUIREMENT = "llama-cpp-python==0.3.36"
# GGML_NATIVE=OFF: no -march=native, so no AMX or AVX-512 code the CPUID advertises but a VM
# may not run; the x86-64-v3 instruction options stay on (their default when NATIVE is off).
CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
# Instructions the portable build must not contain: AMX tiles, and AVX-512 (zmm registers).
FORBIDDEN = {
    "AMX": re.compile(r"\b(tilezero|tileloadd|tileloaddt1|tilestored|ldtilecfg|sttilecfg|tilerelease|tdpb\w*)\b"),
    "AVX-512": re.compile(r"%zmm\d+"),
}
CHECK_TIMEOUT_S = 180.0
_HOW_TO_REBUILD = "rebuild with `make clean-runtime install` (README: 'The llama.cpp build')"


def cache_key(requirement: str = LLAMA_CPP_REQUIREMENT, cmake_args: str = CMAKE_ARGS) -> str:
    """What makes a built wheel reusable: version, flags, Python ABI and machine."""
    parts = [requirement, cmake_args, sysconfig.get_platform(), sys.implementation.cache_tag or ""]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def wheelhouse() -> Path:
    """Where built wheels are kept: ``$LLMOPS_WHEELHOUSE`` or ``~/.cache/llmops-nb/wheels``."""
    if os.environ.get("LLMOPS_WHEELHOUSE"):
        return Path(os.environ["LLMOPS_WHEELHOUSE"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "llmops-nb" / "wheels"


def built_wheel(key: str | None = None) -> Path | None:
    """The wheel built for this key, if there is one."""
    folder = wheelhouse() / (key or cache_key())
    wheels = sorted(folder.glob("llama_cpp_python-*.whl"))
    return wheels[-1] if wheels else None


def forbidden_instructions(disassembly: str) -> dict[str, int]:
    """Counts of forbidden instructions (by family) in ``objdump -d`` output."""
    return {family: len(pattern.findall(disassembly)) for family, pattern in FORBIDDEN.items()}


def disassemble(library: Path) -> str:
    """``objdump -d`` of a shared library (binutils comes with the compiler the build needs)."""
    objdump = shutil.which("objdump")
    if objdump is None:
        raise RuntimeError("objdump not found: install binutils (it comes with gcc)")
    return subprocess.run([objdump, "-d", "--no-show-raw-insn", str(library)], check=True, capture_output=True, text=True).stdout


def ggml_cpu_libraries(folder: Path) -> list[Path]:
    """The ggml CPU backend libraries under a folder (an installed ``llama_cpp`` or an unpacked wheel).

    A wheel holds each library several times (``.so``, ``.so.0``, ``.so.0.x.y`` as copies): one
    path per distinct content.
    """
    seen: dict[str, Path] = {}
    for path in sorted(folder.rglob("libggml-cpu*.so*")):
        if path.is_file():
            seen.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), path)
    return sorted(seen.values())


def audit(folder: Path) -> dict[str, int]:
    """Forbidden instruction counts summed over the ggml CPU libraries under ``folder``."""
    libraries = ggml_cpu_libraries(folder)
    if not libraries:
        raise RuntimeError(f"no libggml-cpu*.so under {folder}")
    totals = dict.fromkeys(FORBIDDEN, 0)
    for library in libraries:
        for family, count in forbidden_instructions(disassemble(library)).items():
            totals[family] += count
    return totals


def build(requirement: str = LLAMA_CPP_REQUIREMENT, cmake_args: str = CMAKE_ARGS) -> Path:
    """The portable wheel: reused from the wheelhouse, or built (5-7 minutes on 2 cores) and audited."""
    key = cache_key(requirement, cmake_args)
    if (wheel := built_wheel(key)) is not None:
        return wheel
    target = wheelhouse() / key
    print(
        f"Building {requirement} for any x86-64-v3 CPU (no AMX, no AVX-512); once per version, about 5-7 minutes on 2 cores ...",
        flush=True,
    )
    env = dict(
        os.environ,
        CMAKE_ARGS=cmake_args,
        CMAKE_BUILD_PARALLEL_LEVEL=os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(os.cpu_count() or 2),
    )
    with tempfile.TemporaryDirectory(prefix="llmops-llama-") as tmp:
        started = time.monotonic()
        # --no-cache-dir: neither take a wheel pip built earlier with other flags nor leave ours there.
        _run_with_ticker(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-cache-dir",
                "--no-binary",
                "llama-cpp-python",
                requirement,
                "-w",
                tmp,
            ],
            env,
            started,
        )
        (wheel,) = Path(tmp).glob("llama_cpp_python-*.whl")
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(unpacked)
        found = {family: n for family, n in audit(unpacked).items() if n}
        if found:
            raise RuntimeError(f"the llama.cpp build still holds {found} instructions; not kept")
        target.mkdir(parents=True, exist_ok=True)
        kept = Path(shutil.copy2(wheel, target / wheel.name))
    print(f"Built {kept.name} in {time.monotonic() - started:.0f} s -> {kept}", flush=True)
    return kept


def _run_with_ticker(command: list[str], env: dict[str, str], started: float, every: float = 30.0) -> None:
    """Run the build, printing the elapsed time every ``every`` seconds; its log only if it fails."""
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        while True:
            try:
                proc.wait(timeout=every)
                break
            except subprocess.TimeoutExpired:
                print(f"  ... building llama.cpp, {time.monotonic() - started:.0f} s", flush=True)
        if proc.returncode != 0:
            log.seek(0)
            sys.stderr.write(log.read()[-5000:])
            raise subprocess.CalledProcessError(proc.returncode, command)


def install(requirement: str = LLAMA_CPP_REQUIREMENT, cmake_args: str = CMAKE_ARGS) -> Path:
    """Build (or reuse) the portable wheel and install it into this interpreter's environment."""
    wheel = build(requirement, cmake_args)
    # --force-reinstall: replace a llama-cpp-python of the same version built another way.
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall", str(wheel)], check=True)
    return wheel


# The smoke check's child: load the bundled model and decode a few tokens greedily.
_CHECK_CHILD = """
import sys, time
from llama_cpp import Llama
from llmops_nb.models.gguf import bundled_gguf_path
llm = Llama(str(bundled_gguf_path()), n_ctx=256, n_threads=2, verbose=False)
t = time.monotonic()
out = llm.create_chat_completion([{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0)
print(out["usage"]["completion_tokens"], round(time.monotonic() - t, 3))
"""


@dataclass(frozen=True)
class CheckResult:
    """What the smoke check saw: ``ok`` and one line to print."""

    ok: bool
    line: str


def check(command: list[str] | None = None, timeout: float = CHECK_TIMEOUT_S) -> CheckResult:
    """Run the smoke check in a subprocess, so a crash (SIGILL) is reported instead of suffered."""
    command = command or [sys.executable, "-c", _CHECK_CHILD]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return CheckResult(
            False,
            f"llama.cpp check: decoding 8 tokens took over {timeout:.0f} s; "
            f"the build may be broken on this CPU: {_HOW_TO_REBUILD}",
        )
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode)
        why = "an instruction this CPU or its VM does not run (illegal instruction)" if sig == signal.SIGILL else "a crash"
        return CheckResult(
            False,
            f"llama.cpp check: loading SmolLM2 and decoding died with {sig.name}, "
            f"{why} on {platform.processor() or platform.machine()}: {_HOW_TO_REBUILD}",
        )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return CheckResult(False, f"llama.cpp check: the model did not load or decode ({last}); run `make install` again")
    tokens, seconds = proc.stdout.split()[-2:]
    return CheckResult(True, f"llama.cpp check: SmolLM2 decoded {tokens} tokens in {float(seconds):.2f} s")


def _installed_llama_cpp() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("llama_cpp is not installed: run `make install`")
    return Path(next(iter(spec.submodule_search_locations)))


def main(argv: list[str] | None = None) -> int:
    """``install`` (build if needed, then install), ``wheel`` (print its path; exit 2 if it does not fit
    the bundle's Databricks Runtime), ``check``, ``audit``."""
    args = sys.argv[1:] if argv is None else argv
    action = args[0] if args else "check"
    if action == "install":
        print(f"llama-cpp-python: installed {install().name}")
    elif action == "wheel":  # the bundle's build step: the wheel the job cluster and serving install
        wheel = build()
        from llmops_nb.models.environment import TARGET_HINT, wheel_mismatch  # packaging: not at install time

        if (why := wheel_mismatch(wheel)) is not None:
            print(f"llama-cpp-python wheel: {why}: {TARGET_HINT}", file=sys.stderr)
            return 2
        print(wheel)
    elif action == "audit":
        counts = audit(_installed_llama_cpp())
        print(", ".join(f"{family}: {n}" for family, n in counts.items()))
        return 1 if any(counts.values()) else 0
    elif action == "check":
        result = check()
        print(result.line, file=sys.stdout if result.ok else sys.stderr)
        return 0 if result.ok else 1
    else:
        print(f"action: {action!r} is not allowed; one of install, wheel, audit, check", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
