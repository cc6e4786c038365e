"""llama.cpp threads follow the cgroup CPU quota (real files in a temp dir); model_config overrides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmops_nb.models.cpu_quota import available_cpus, cgroup_cpu_limit, default_threads


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


@pytest.mark.parametrize(
    ("content", "limit"),
    [
        ("200000 100000", 2.0),
        ("150000 100000", 1.5),
        ("50000 100000", 0.5),
        ("max 100000", None),
        ("400000", 4.0),  # period omitted: the kernel's default 100000
        ("garbage 100000", None),
    ],
)
def test_cgroup_v2_cpu_max(tmp_path: Path, content: str, limit: float | None) -> None:
    write(tmp_path, "cpu.max", content)
    assert cgroup_cpu_limit(tmp_path) == limit


@pytest.mark.parametrize("folder", ["cpu", "cpu,cpuacct"])
@pytest.mark.parametrize(
    ("quota", "period", "limit"),
    [
        ("300000", "100000", 3.0),
        ("-1", "100000", None),
        ("25000", "50000", 0.5),
    ],
)
def test_cgroup_v1_cfs_quota(tmp_path: Path, folder: str, quota: str, period: str, limit: float | None) -> None:
    write(tmp_path, f"{folder}/cpu.cfs_quota_us", quota)
    write(tmp_path, f"{folder}/cpu.cfs_period_us", period)
    assert cgroup_cpu_limit(tmp_path) == limit


def test_v2_wins_over_v1_and_no_files_is_no_limit(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path) is None
    write(tmp_path, "cpu/cpu.cfs_quota_us", "300000")
    write(tmp_path, "cpu/cpu.cfs_period_us", "100000")
    write(tmp_path, "cpu.max", "100000 100000")
    assert cgroup_cpu_limit(tmp_path) == 1.0


def test_threads_follow_the_quota_capped_by_the_affinity(tmp_path: Path) -> None:
    cpus = available_cpus()
    assert cpus == len(os.sched_getaffinity(0))
    assert default_threads(tmp_path) == cpus  # no quota: every CPU the process may run on
    write(tmp_path, "cpu.max", "100000 100000")
    assert default_threads(tmp_path) == 1
    write(tmp_path, "cpu.max", "50000 100000")
    assert default_threads(tmp_path) == 1  # below one CPU: still one thread
    write(tmp_path, "cpu.max", f"{150000 * (cpus + 1)} 100000")
    assert default_threads(tmp_path) == cpus  # a quota above the affinity: the affinity
    if cpus >= 2:
        write(tmp_path, "cpu.max", "190000 100000")
        assert default_threads(tmp_path) == 1  # 1.9 CPUs: rounded down, not throttled


def test_model_config_n_threads_overrides_the_quota() -> None:
    from llmops_nb.models.chat_model import DEFAULT_CONFIG, llama_kwargs
    from llmops_nb.models.pyfunc import model_config

    assert llama_kwargs(DEFAULT_CONFIG)["n_threads"] == default_threads()
    config = model_config({"n_threads": 3})
    assert llama_kwargs(config)["n_threads"] == llama_kwargs(config)["n_threads_batch"] == 3


@pytest.mark.model
def test_engine_defaults_to_the_quota_threads() -> None:
    from llmops_nb.models.engine import BatchEngine
    from llmops_nb.models.gguf import bundled_gguf_path

    engine = BatchEngine(str(bundled_gguf_path()), n_ctx=256, n_seq_max=1)
    pinned = BatchEngine(str(bundled_gguf_path()), n_ctx=256, n_seq_max=1, n_threads=1)
    try:
        assert engine.n_threads == default_threads()
        assert pinned.n_threads == 1
    finally:
        engine.close()
        pinned.close()
