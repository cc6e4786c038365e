"""launcher: start, reuse, token, restart with state, and stop leaving no process behind."""

from __future__ import annotations

import threading

import psutil
import pytest
import requests
from ws_helpers import chat, core, entity, post, ready, wait_until

from llmops_nb.testing import fake_workspace
from llmops_nb.workspace import launcher


def test_token_is_required(tmp_path):
    with fake_workspace(tmp_path / "ws", token="s3cret") as ws:
        r = requests.get(f"{ws.host}/api/2.0/serving-endpoints", timeout=5)
        assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"
        r = post(ws, "/serving-endpoints/x/invocations", chat(), token="wrong")
        assert r.status_code == 401
        assert requests.get(f"{ws.host}/.well-known/databricks-config", timeout=5).ok
        assert [e.name for e in ws.client().serving_endpoints.list()]


def test_state_survives_restart(tmp_path):
    with fake_workspace(tmp_path / "ws") as ws:
        w = ws.client()
        w.serving_endpoints.create_and_wait(name="keep-me", config=core("keep-me", entity("m")))
        w.serving_endpoints.patch("keep-me", add_tags=[])
        old_port = ws.info.port
        ws.restart()
        assert ws.info.port != old_port or ws.info.pid
        w = ws.client()
        ep = wait_until(w, "keep-me", ready)
        assert ep.config.served_entities[0].name == "m-1"
        r = post(ws, "/serving-endpoints/keep-me/invocations", chat("still here"))
        assert r.json()["choices"][0]["message"]["content"] == "[m-1] echo: still here"


def test_ensure_running_reuses_and_stop_leaves_nothing(tmp_path):
    home = tmp_path / "ws"
    infos: list = []
    threads = [threading.Thread(target=lambda: infos.append(launcher.ensure_running(home, None, fake=True))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({i.pid for i in infos}) == 1  # the file lock let one caller start it
    info = launcher.status(home)
    assert info is not None and info.pid == infos[0].pid
    proc = psutil.Process(info.pid)
    assert launcher.stop(home) is True
    assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    assert launcher.status(home) is None
    assert not (home / "server.json").exists()
    assert launcher.stop(home) is False


def test_fake_workspace_leaves_no_process(tmp_path):
    with fake_workspace(tmp_path / "ws") as ws:
        pid = ws.info.pid
        assert psutil.pid_exists(pid)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []


def test_start_failure_is_reported(tmp_path):
    import socket

    from llmops_nb.errors import WorkspaceError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(WorkspaceError, match="exited with code"):
            launcher.ensure_running(tmp_path / "ws", None, fake=True, port=busy.getsockname()[1])
    assert launcher.status(tmp_path / "ws") is None
