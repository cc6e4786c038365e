"""A real remote MLflow tracking server for tests and benchmarks, behind a latency-adding proxy.

    with tracking_server(tmp_path, delay_ms=20) as server:
        evaluate_endpoint(..., tracking_uri=server.uri)   # http://127.0.0.1:<proxy port>

``mlflow server`` runs with a SQLite backend and ``--serve-artifacts`` (artifacts go through
the server, as on Databricks) on 127.0.0.1 on a free port; a small asyncio TCP proxy in
front of it delays each request by ``delay_ms`` (it stands for the round trip to a Databricks
workspace) and counts them. Both stop on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from llmops_nb.util.ports import free_port
from llmops_nb.util.processes import kill_group


@dataclass
class LatencyProxy:
    """Forwards TCP connections to ``target_port``; waits ``delay_ms`` before each request it forwards."""

    target_port: int
    delay_ms: float
    port: int = 0
    requests: int = 0
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            server.close()
            self._loop.run_until_complete(server.wait_closed())

        self._thread = threading.Thread(target=run, name="latency-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None:

            async def cancel_all() -> None:
                for task in asyncio.all_tasks():
                    if task is not asyncio.current_task():
                        task.cancel()

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(cancel_all(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        with contextlib.suppress(asyncio.CancelledError):  # cancelled when the proxy stops
            await self._pipe(reader, up_writer, up_reader, writer)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Both directions; a client chunk that follows a server answer starts a new request."""
        state = {"answered": True}

        async def up() -> None:
            while data := await reader.read(65536):
                if state["answered"]:
                    state["answered"] = False
                    self.requests += 1
                    await asyncio.sleep(self.delay_ms / 1000)
                up_writer.write(data)
                await up_writer.drain()
            with contextlib.suppress(Exception):
                up_writer.close()

        async def down() -> None:
            while data := await up_reader.read(65536):
                state["answered"] = True
                writer.write(data)
                await writer.drain()
            with contextlib.suppress(Exception):
                writer.close()

        await asyncio.gather(up(), down(), return_exceptions=True)


@dataclass
class TrackingServer:
    """A running ``mlflow server`` and the proxy in front of it."""

    uri: str  # through the proxy: what a test or bench uses
    direct_uri: str  # the server itself
    proxy: LatencyProxy
    root: Path


def _wait_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited ({proc.returncode}); see {log}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.3)
    raise TimeoutError(f"mlflow server not up after {timeout:g} s; see {log}")


@contextlib.contextmanager
def tracking_server(root: Path, *, delay_ms: float = 20.0, workers: int = 1) -> Iterator[TrackingServer]:
    """Start ``mlflow server`` (SQLite, served artifacts) under ``root`` and a proxy; stop both after."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = root / "mlflow-server.log"
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--serve-artifacts",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--workers",
        str(workers),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
    # The server's job runner (online scoring, periodic tasks: mlflow/server/__init__.py,
    # MLFLOW_SERVER_ENABLE_JOB_EXECUTION) starts five more Python processes that import MLflow
    # for 20 s or more: on a 2-core machine that is the client's CPU, not the server's
    # latency. Nothing here uses server-side jobs; a user's own setting wins.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True)
    proxy = LatencyProxy(port, delay_ms)
    try:
        _wait_up(f"http://127.0.0.1:{port}", proc, log)
        proxy.start()
        yield TrackingServer(f"http://127.0.0.1:{proxy.port}", f"http://127.0.0.1:{port}", proxy, root)
    finally:
        proxy.stop()
        kill_group(proc, 20.0, kill_wait=10.0)
