"""Stopping a child process and everything it started: one :func:`kill_group`.

Every long-lived child (the local workspace, its scoring servers, ``mlflow models serve``,
the test tracking server) is started with ``start_new_session=True``, so it leads a process
group of its own and stopping that group stops its children too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

_PROC = Path("/proc")


def kill_group(target: subprocess.Popen | int, grace: float = 5.0, *, kill_wait: float = 5.0) -> bool:
    """SIGTERM the process group led by ``target`` (a Popen or a pid), wait up to ``grace``
    seconds for it to end, then SIGKILL what is left and wait up to ``kill_wait`` more.

    ``target`` must lead its own group (started with ``start_new_session=True``); the
    caller's own group is never signalled. A process that already ended is fine (nothing is
    sent, no error). A Popen is reaped. Returns True if something of the group was running.
    """
    proc = target if isinstance(target, subprocess.Popen) else None
    pgid = proc.pid if proc is not None else int(target)  # type: ignore[arg-type]
    if pgid <= 0 or pgid == os.getpgrp():
        return False
    was_running = not _ended(proc, pgid)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, kill_wait)):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        if _wait_ended(proc, pgid, wait):
            break
    return was_running


def _wait_ended(proc: subprocess.Popen | None, pgid: int, timeout: float) -> bool:
    """Poll until the leader and every live member of the group are gone (True) or ``timeout``."""
    deadline = time.monotonic() + max(0.0, timeout)
    while not _ended(proc, pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _ended(proc: subprocess.Popen | None, pgid: int) -> bool:
    leader_done = proc.poll() is not None if proc is not None else not _running(pgid)
    return leader_done and not _group_alive(pgid)


def _running(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return _state(pid) not in ("Z", "X", None) if _PROC.is_dir() else True


def _state(pid: int) -> str | None:
    try:
        return (_PROC / str(pid) / "stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _group_alive(pgid: int) -> bool:
    """True while a live (non-zombie) process is in group ``pgid``."""
    if not _PROC.is_dir():  # no /proc (macOS): any member, zombies included
        try:
            os.killpg(pgid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields after the command: state, ppid, pgrp, ...  (proc(5))
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False
