"""Run MLflow's own scoring server (``mlflow models serve``) for a model URI, for tests/benches."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from llmops_nb.errors import ModelError
from llmops_nb.util.ports import free_port
from llmops_nb.util.processes import kill_group


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def scoring_server(
    model_uri: str,
    *,
    tracking_uri: str,
    port: int = 0,
    timeout: float = 180.0,
    log_path: Path | None = None,
    workers: int = 1,
) -> Iterator[str]:
    """Start ``mlflow models serve --env-manager local [--workers N]``; yield its base URL.

    The server runs in its own process group, which is killed on exit.
    """
    port = port or free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    cmd = [
        os.path.join(bin_dir, "mlflow"),
        "models",
        "serve",
        "-m",
        model_uri,
        "-p",
        str(port),
        "--env-manager",
        "local",
        "--workers",
        str(workers),
    ]
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not _answers(f"{base}/ping"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ModelError(
                    f"mlflow models serve {model_uri} did not answer on {base}"
                    f" (exit code {proc.poll()}); see {log_path or 'its output'}"
                )
            time.sleep(0.2)
        yield base
    finally:
        kill_group(proc, 10.0)
        if not isinstance(log, int):  # our log file, not DEVNULL
            log.close()
