"""The llama.cpp runtime: the installed build is portable, the smoke check reports a crash in one line."""

from __future__ import annotations

import signal
import sys
import tomllib
from pathlib import Path

import pytest

from llmops_nb.models import runtime

ROOT = Path(__file__).resolve().parents[2]


def test_installed_ggml_cpu_library_has_no_amx_or_avx512() -> None:
    """Fails when the built ggml CPU library holds AMX tile (or AVX-512) instructions.

    AMX kernels die with SIGILL on the project's Intel Xeon VMs; this check runs on any CPU,
    so a regression (a -march=native build, say) is caught where no AMX CPU is at hand.
    """
    import llama_cpp

    folder = Path(llama_cpp.__file__).parent
    libraries = runtime.ggml_cpu_libraries(folder)
    assert libraries, f"no libggml-cpu*.so under {folder}"
    counts = runtime.audit(folder)
    assert counts == {"AMX": 0, "AVX-512": 0}, f"{[p.name for p in libraries]}: {counts}"


def test_forbidden_instructions_are_recognised_in_objdump_output() -> None:
    """The audit's patterns match real objdump lines of AMX and AVX-512 code, and not AVX2 code."""
    amx = """
  4f2a10:	c4 e2 7b 49 e0       	tilezero %tmm4
  4f2a15:	c4 e2 79 49 00       	ldtilecfg (%rax)
  4f2a1a:	c4 a2 7b 4b 0c 20    	tileloadd (%rax,%r12,1),%tmm1
  4f2a20:	c4 e2 73 5e c1       	tdpbssd %tmm1,%tmm1,%tmm0
"""
    avx512 = "  4f2a30:	62 f1 7c 48 58 c1    	vaddps %zmm1,%zmm0,%zmm0\n"
    avx2 = "  4f2a40:	c5 fc 58 c1          	vaddps %ymm1,%ymm0,%ymm0\n  vfmadd231ps %ymm2,%ymm1,%ymm0\n"
    assert runtime.forbidden_instructions(amx) == {"AMX": 4, "AVX-512": 0}
    assert runtime.forbidden_instructions(avx512) == {"AMX": 0, "AVX-512": 3}
    assert runtime.forbidden_instructions(avx2) == {"AMX": 0, "AVX-512": 0}


def test_check_turns_a_sigill_into_one_line_saying_what_to_do() -> None:
    """A child that dies of SIGILL (as the AMX build did) gives one line naming the signal and the fix."""
    crash = [sys.executable, "-c", f"import os; os.kill(os.getpid(), {int(signal.SIGILL)})"]
    result = runtime.check(crash)
    assert not result.ok
    assert "\n" not in result.line
    assert "SIGILL" in result.line and "illegal instruction" in result.line
    assert "make clean-runtime install" in result.line


def test_check_reports_a_failing_load_with_its_last_error_line() -> None:
    failing = [sys.executable, "-c", "raise SystemExit('ValueError: Failed to load model from file')"]
    result = runtime.check(failing)
    assert not result.ok and "\n" not in result.line
    assert "Failed to load model from file" in result.line


@pytest.mark.model
def test_check_decodes_with_the_installed_build() -> None:
    """The real check: the installed llama.cpp loads SmolLM2 and decodes tokens in a subprocess."""
    result = runtime.check()
    assert result.ok, result.line
    assert "decoded" in result.line and " 0 tokens" not in result.line


def test_pin_is_the_one_in_pyproject() -> None:
    """The version `make install` builds is the one the `local` extra asks for."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert runtime.LLAMA_CPP_REQUIREMENT in extras["local"]


def test_wheel_cache_key_changes_with_version_and_flags(tmp_path, monkeypatch) -> None:
    """A change of flags or version never reuses a wheel built another way (pip's cache would)."""
    base = runtime.cache_key()
    assert runtime.cache_key(cmake_args=runtime.CMAKE_ARGS + " -DGGML_NATIVE=ON") != base
    assert runtime.cache_key(requirement="llama-cpp-python==0.3.35") != base
    monkeypatch.setenv("LLMOPS_WHEELHOUSE", str(tmp_path))
    assert runtime.built_wheel() is None
    kept = tmp_path / base / "llama_cpp_python-0.3.36-cp311-cp311-linux_x86_64.whl"
    kept.parent.mkdir()
    kept.write_bytes(b"")
    assert runtime.built_wheel() == kept
    assert runtime.built_wheel(runtime.cache_key(requirement="llama-cpp-python==0.3.35")) is None


def test_build_flags_turn_off_native_and_amx() -> None:
    flags = runtime.CMAKE_ARGS.split()
    assert "-DGGML_NATIVE=OFF" in flags
    assert {"-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"} <= set(flags)


def test_audit_finds_amx_in_a_real_compiled_library(tmp_path) -> None:
    """A library compiled with AMX intrinsics (as -march=native makes ggml on Sapphire Rapids) fails the audit."""
    import shutil
    import subprocess

    compiler = shutil.which("gcc") or shutil.which("cc")
    assert compiler, "a C compiler is needed (the llama.cpp build needs one too)"
    source = tmp_path / "amx.c"
    source.write_text("#include <immintrin.h>\nvoid zero_tile(void) { _tile_zero(4); _tile_release(); }\n")
    subprocess.run(
        [compiler, "-O2", "-mamx-tile", "-shared", "-fPIC", "-o", str(tmp_path / "libggml-cpu.so"), str(source)], check=True
    )
    counts = runtime.audit(tmp_path)
    assert counts["AMX"] >= 2, counts
