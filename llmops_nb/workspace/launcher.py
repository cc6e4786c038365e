"""Start, find and stop the local workspace server (the only module client code imports).

Cheap to import: no fastapi, uvicorn or mlflow here. The server runs detached (its own
session) and publishes ``<home>/server.json`` (pid, port, token, fake, child process groups,
mode 0600); the token is also kept in ``<home>/token`` (see :mod:`.token`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from llmops_nb.errors import WorkspaceError
from llmops_nb.util.paths import private_dir
from llmops_nb.util.processes import kill_group
from llmops_nb.workspace.api.token import check_token

SERVER_JSON = "server.json"
_spawned: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class WorkspaceInfo:
    """Where a running local workspace is."""

    host: str
    port: int
    pid: int
    token: str | None
    home: Path
    fake: bool


def _read(home: Path) -> dict | None:
    try:
        return json.loads((Path(home) / SERVER_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie, reaped here if it is our child, counts as dead)."""
    proc = _spawned.get(pid)
    if proc is not None and proc.poll() is not None:
        _spawned.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _answers(host: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{host}/.well-known/databricks-config", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def _info(data: dict, home: Path) -> WorkspaceInfo:
    return WorkspaceInfo(
        host=data["host"],
        port=int(data["port"]),
        pid=int(data["pid"]),
        token=data.get("token"),
        home=Path(home),
        fake=bool(data.get("fake")),
    )


def status(home: Path) -> WorkspaceInfo | None:
    """The live workspace of ``home``, or None if none runs and answers."""
    data = _read(home)
    if not data or not _alive(int(data.get("pid", 0))) or not _answers(data["host"]):
        return None
    return _info(data, home)


def ensure_running(
    home: Path,
    tracking_uri: str | None,
    *,
    fake: bool | None = False,
    token: str | None = None,
    port: int = 0,
    fake_options: dict | None = None,
    timeout: float = 60.0,
    refuse_fake: bool = False,
) -> WorkspaceInfo:
    """Reuse the workspace running in ``home`` (same fake/token), or start one detached.

    ``fake=None`` reuses whichever workspace runs there (a fake one started by
    ``llmops-nb workspace start --fake`` included) and starts a real one if none does.
    ``refuse_fake=True`` raises :func:`fake_refused` when a fake one runs there instead of
    replacing it (someone started it on purpose; it is not ours to stop).
    """
    from filelock import FileLock

    if token:
        check_token(token)
    home = private_dir(Path(home).resolve())
    with FileLock(str(home / ".server.lock"), mode=0o600):
        info = status(home)
        if info is not None:
            if refuse_fake and info.fake:
                raise fake_refused(info)
            if fake in (None, info.fake) and (token is None or info.token == token):
                return info
            stop(home)
        return _start(
            home, tracking_uri, fake=bool(fake), token=token, port=port, fake_options=fake_options or {}, timeout=timeout
        )


def fake_refused(info: WorkspaceInfo) -> WorkspaceError:
    """The one line a local run gets when the workspace of its home is the fake one."""
    return WorkspaceError(
        f"the workspace running in {info.home} is the fake one (deterministic echo answers, "
        f"pid {info.pid}): the local backend will not use it; stop it with `llmops-nb "
        f"workspace stop`, or set LLMOPS_HOME to another folder, or to use the fake on purpose "
        f"run with --backend databricks and DATABRICKS_HOST={info.host}"
    )


def _start(
    home: Path, tracking_uri: str | None, *, fake: bool, token: str | None, port: int, fake_options: dict, timeout: float
) -> WorkspaceInfo:
    (home / SERVER_JSON).unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "llmops_nb.workspace", "serve", "--home", str(home), "--port", str(port)]
    if tracking_uri:
        cmd += ["--tracking-uri", tracking_uri]
    if fake:
        cmd.append("--fake")
        for key in ("latency_ms", "ready_seconds"):
            if fake_options.get(key) is not None:
                cmd += [f"--fake-{key.replace('_', '-')}", str(fake_options[key])]
    env = dict(os.environ)
    env.pop("LLMOPS_WORKSPACE_TOKEN", None)
    if token:
        env["LLMOPS_WORKSPACE_TOKEN"] = token  # not in argv: ps shows argv to everyone
    log = private_dir(home / "logs") / "workspace.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    _spawned[proc.pid] = proc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace")[-800:]
            raise WorkspaceError(
                f"the local workspace exited with code {proc.returncode} while "
                f"starting; see {log}: {tail.strip().splitlines()[-1:]}"
            )
        data = _read(home)
        if data and data.get("pid") == proc.pid and _answers(data["host"], 1.0):
            return _info(data, home)
        time.sleep(0.1)
    stop(home)
    raise WorkspaceError(f"the local workspace did not answer within {timeout:.0f} s; see {log}")


def stop(home: Path, timeout: float = 15.0) -> bool:
    """Stop the workspace of ``home`` and every child process group; True if one was running."""
    data = _read(home)
    if not data:
        return False
    pid = int(data.get("pid", 0))
    children = [int(c) for c in data.get("children", [])]
    was_alive = pid > 0 and _alive(pid)
    if was_alive:  # SIGTERM, up to ``timeout`` to stop its children and exit, then SIGKILL
        kill_group(_spawned.get(pid) or pid, timeout)
    for child in children:  # normally already stopped by the server itself
        kill_group(child, 0.0)
    kill_group(pid, 0.0)  # anything left in the server's own session
    _spawned.pop(pid, None)
    (Path(home) / SERVER_JSON).unlink(missing_ok=True)
    return was_alive
