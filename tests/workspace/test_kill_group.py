"""``llmops_nb.util.processes.kill_group``: the one way a child's process group is stopped."""

from __future__ import annotations

import os
import subprocess
import sys

from llmops_nb.util.processes import _group_alive, kill_group

# a leader with a grandchild in its group; the leader ignores SIGTERM when asked to
LEADER = (
    "import signal, subprocess, sys, time\n"
    "if sys.argv[1] == 'stubborn': signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print('up', flush=True)\ntime.sleep(60)\n"
)


def _start(kind: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", LEADER, kind], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "up"
    return proc


def test_sigterm_stops_the_leader_and_its_group_and_reaps_it() -> None:
    proc = _start("polite")
    assert _group_alive(proc.pid)
    assert kill_group(proc, grace=10) is True
    assert proc.returncode == -15  # SIGTERM was enough
    assert not _group_alive(proc.pid)


def test_a_leader_ignoring_sigterm_is_killed_after_the_grace() -> None:
    proc = _start("stubborn")
    assert kill_group(proc, grace=0.3) is True
    assert proc.returncode == -9
    assert not _group_alive(proc.pid)


def test_a_pid_works_too_and_a_dead_process_is_no_error() -> None:
    proc = _start("polite")
    assert kill_group(proc.pid, grace=10) is True
    proc.wait(10)
    assert not _group_alive(proc.pid)
    assert kill_group(proc, grace=0) is False  # already ended: nothing sent, no error
    assert kill_group(proc.pid, grace=0) is False
    assert kill_group(os.getpgrp()) is False  # never the caller's own group
