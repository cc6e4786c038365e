"""Run the workspace app under uvicorn on a bound socket and publish ``<home>/server.json``."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from llmops_nb.util.paths import make_private
from llmops_nb.util.processes import kill_group
from llmops_nb.workspace.api.token import ensure_token
from llmops_nb.workspace.runners.base import RunnerContext
from llmops_nb.workspace.runners.faults import FaultInjector
from llmops_nb.workspace.store import atomic_write_json

SERVER_JSON = "server.json"


def serve(
    home: Path,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    fake: bool = False,
    token: str | None = None,
    tracking_uri: str | None = None,
    fake_latency_ms: float = 0.0,
    fake_ready_seconds: float = 0.3,
) -> None:
    """Serve in the foreground until SIGTERM/SIGINT; every child process group is stopped.

    ``home`` and everything in it are private to the user (0700 folders, 0600 files: the
    process umask is 0o077 and what an earlier umask left open is closed). ``token`` (else the
    one kept in ``home``, else a new random one) is required on every request (:mod:`.guard`).
    """
    import uvicorn

    from llmops_nb.workspace.api.app import create_app

    os.umask(0o077)  # logs, state, usage, secrets, the children's files: the user's alone
    home = Path(home).resolve()
    make_private(home)
    token = ensure_token(home, token)
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only then; without it
    # every small response waited ~40 ms (Nagle after the header write x delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    real_port = sock.getsockname()[1]
    ctx = RunnerContext(
        home=home,
        tracking_uri=tracking_uri,
        faults=FaultInjector(),
        fake=fake,
        fake_latency_ms=fake_latency_ms,
        fake_ready_seconds=fake_ready_seconds,
    )
    info = {
        "pid": os.getpid(),
        "port": real_port,
        "host": f"http://{host}:{real_port}",
        "token": token,
        "fake": fake,
        "tracking_uri": tracking_uri,
        "home": str(home),
        "children": [],
    }
    info_path = home / SERVER_JSON

    def publish() -> None:
        info["children"] = sorted(ctx.children)
        atomic_write_json(info_path, info)
        os.chmod(info_path, 0o600)

    ctx.on_children_changed = publish
    app = create_app(ctx, token=token, on_started=publish)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False, timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        for pid in list(ctx.children):  # safety net: nothing outlives the server
            kill_group(pid, 0.0)
        try:
            import json

            if json.loads(info_path.read_text()).get("pid") == os.getpid():
                info_path.unlink()
        except (OSError, ValueError):
            pass
