"""How many CPUs this process may use: the container's CPU quota (cgroup), else its affinity.

In a container with a CPU limit (a Databricks serving container, ``docker run --cpus``,
a Kubernetes ``resources.limits.cpu``), ``os.cpu_count()`` reports the host's cores; a
llama.cpp thread team that large is throttled by the CFS quota and spins on cores it may
not use. The quota is read as joblib/loky's ``cpu_count`` reads it (loky/backend/context.py,
``_cpu_count_cgroup``): cgroup v2 ``cpu.max`` ("<quota> <period>" or "max <period>"), else
cgroup v1 ``cpu/cpu.cfs_quota_us`` and ``cpu/cpu.cfs_period_us`` (-1: no limit). Unlike
loky, a fractional quota is rounded down (at least 1): a 1.5-CPU container runs one busy
thread without throttling, two would be throttled.

Standard library only: logged beside ``engine.py`` (``code_paths``) and imported as
``cpu_quota`` where llmops_nb is not installed.
"""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_limit(root: Path | str = CGROUP_ROOT) -> float | None:
    """CPUs allowed by the cgroup CPU quota under ``root`` (e.g. 2.5), or None without a limit."""
    root = Path(root)
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        return None if quota == "max" else _ratio(quota, period or "100000")
    for folder in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        cfs_quota, cfs_period = (_read(root / folder / f"cpu.cfs_{name}_us") for name in ("quota", "period"))
        if cfs_quota is not None and cfs_period is not None:
            return _ratio(cfs_quota, cfs_period)
    return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask (or ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def default_threads(root: Path | str = CGROUP_ROOT) -> int:
    """Threads for llama.cpp: the CPU quota rounded down (at least 1), capped by the affinity."""
    cpus = available_cpus()
    limit = cgroup_cpu_limit(root)
    return cpus if limit is None else max(1, min(cpus, int(limit)))
