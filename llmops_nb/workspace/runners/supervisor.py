"""Supervision of one child process: its exit noticed at once, its output timestamped, restarts
backed off only while they keep failing, and the timings of every start kept on disk.

- :class:`ExitWatch`: a daemon thread blocked in ``proc.wait()`` that calls back on the event
  loop the moment the process exits (no periodic poll);
- :class:`OutputPump`: a daemon thread copying the child's output to its log file and noting
  when given marker lines first appear (the phases of a start);
- :class:`Backoff`: no delay for a first restart; exponential and capped while restarts fail
  or the restarted process dies again within ``stable_s``;
- :class:`StartTimes`: the timestamps of one start, appended as a JSON line next to the log.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO


class ExitWatch:
    """Call ``on_exit(proc, returncode, exited_at)`` on ``loop`` as soon as ``proc`` exits."""

    def __init__(
        self, proc: subprocess.Popen, loop: asyncio.AbstractEventLoop, on_exit: Callable[[subprocess.Popen, int, float], None]
    ) -> None:
        self.proc, self.loop, self.on_exit = proc, loop, on_exit
        self.exited = threading.Event()
        self.exited_at: float | None = None
        self.thread = threading.Thread(target=self._run, name=f"exit-watch-{proc.pid}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        code = self.proc.wait()  # reaps it; kill_group's own wait(timeout) sees returncode
        self.exited_at = time.time()
        self.exited.set()
        try:
            self.loop.call_soon_threadsafe(self.on_exit, self.proc, code, self.exited_at)
        except RuntimeError:  # the loop is closed: the server is shutting down
            pass


class OutputPump:
    """Copy ``stream`` line by line to ``log_path``; note when each marker first appears."""

    def __init__(self, stream: IO[bytes], log_path: Path, markers: dict[str, bytes]) -> None:
        self.stream, self.log_path, self.markers = stream, log_path, markers
        self.seen: dict[str, float] = {}
        self.thread = threading.Thread(target=self._run, name="output-pump", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with self.stream, self.log_path.open("ab") as out:
            for line in iter(self.stream.readline, b""):
                now = time.time()
                for name, marker in self.markers.items():
                    if name not in self.seen and marker in line:
                        self.seen[name] = now
                out.write(line)
                out.flush()


@dataclass
class Backoff:
    """Delay before the next restart: none while at most one failure is counted, then
    ``base * 2**(n-2)`` s for ``n`` failures in a row, capped at ``cap``.

    A failure is a restart whose process did not come up, or a process that died again within
    ``stable_s`` of being ready; a process that stayed up longer resets the count.
    """

    base: float = 1.0
    cap: float = 30.0
    stable_s: float = 10.0
    failures: int = 0

    def exited(self, uptime_s: float | None) -> None:
        """The ready process exited after ``uptime_s`` (None: it never became ready)."""
        if uptime_s is None or uptime_s < self.stable_s:
            self.failures += 1
        else:
            self.failures = 0

    def failed(self) -> None:
        self.failures += 1

    def delay(self) -> float:
        if self.failures <= 1:  # one exit or one failed start: restart at once
            return 0.0
        return min(self.cap, self.base * 2 ** (self.failures - 2))


@dataclass
class StartTimes:
    """Wall-clock timestamps (``time.time()``) of one start of a scoring server.

    ``exited_at``: the previous process's exit as seen by its :class:`ExitWatch` (or when a
    hang was declared); ``spawned_at``: the start begins (model artifacts checked, fetched on
    a first start); ``launched_at``: the server process is started; ``imported_at``: it has
    imported Python's and MLflow's modules; ``loaded_at``: it has loaded the model and
    started serving; ``ready_at``: ``/ping`` answered 200.
    """

    reason: str
    attempt: int = 1
    exited_at: float | None = None
    spawned_at: float | None = None
    launched_at: float | None = None
    imported_at: float | None = None
    loaded_at: float | None = None
    ready_at: float | None = None
    ok: bool = False
    error: str | None = None

    def phases(self) -> dict[str, float | None]:
        """Seconds spent in each phase (None where a timestamp is missing)."""

        def span(a: float | None, b: float | None) -> float | None:
            return round(b - a, 3) if a is not None and b is not None else None

        return {
            "cleanup_s": span(self.exited_at, self.spawned_at),
            "artifacts_s": span(self.spawned_at, self.launched_at),
            "process_start_s": span(self.spawned_at, self.imported_at),
            "model_load_s": span(self.imported_at, self.loaded_at),
            "bind_s": span(self.loaded_at, self.ready_at),
            "start_s": span(self.spawned_at, self.ready_at),
        }

    def append_to(self, path: Path) -> None:
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({**asdict(self), **self.phases()}) + "\n")


def read_starts(path: Path) -> list[dict]:
    """The start records appended by :meth:`StartTimes.append_to` (oldest first)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def exit_reason(code: int) -> str:
    """``code`` as a person reads it: "was killed by SIGKILL" or "exited with code 1"."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
