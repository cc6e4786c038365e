"""Entity runners: what answers for one served entity of an endpoint.

- :class:`ScoringServerRunner` runs MLflow's own scoring server (``mlflow models serve``)
  for a registered model version as a child process group;
- :class:`ExternalModelRunner` forwards chat bodies to an OpenAI-compatible or Anthropic API,
  resolving the key from its secret reference at request time;
- :class:`FakeRunner` answers deterministically after a configurable latency (``--fake``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from starlette.concurrency import run_in_threadpool

from llmops_nb.models.serving import free_port

from .apierror import ApiError, invalid, unavailable
from .chat import count_tokens, prompt_tokens, text_of
from .faults import FaultInjector
from .notices import entity_notices

READY, CREATING, FAILED = "DEPLOYMENT_READY", "DEPLOYMENT_CREATING", "DEPLOYMENT_FAILED"
RECOVERING, ABORTED = "DEPLOYMENT_RECOVERING", "DEPLOYMENT_ABORTED"
WORKLOAD_NOTE = "not applied by the local workspace"


def not_applied(entity: dict) -> list[str]:
    """The fields of ``entity`` the local workspace accepts but does not apply (see notices)."""
    fields = [line.split(":", 1)[0].split("=", 1)[0].rsplit(".", 1)[-1]
              for line in entity_notices(0, entity)]
    if entity.get("workload_size") and "workload_size" not in fields \
            and not entity.get("external_model"):
        fields.insert(0, "workload_size")  # Small too: no concurrency is provisioned
    return fields


@dataclass
class RunnerContext:
    """What every runner of one server shares."""

    home: Path
    tracking_uri: str | None
    faults: FaultInjector
    fake: bool = False
    fake_latency_ms: float = 0.0
    fake_ready_seconds: float = 0.3
    start_timeout: float = float(os.environ.get("LLMOPS_ENTITY_START_TIMEOUT", "900"))
    request_timeout: float = float(os.environ.get("LLMOPS_SCORING_TIMEOUT", "600"))
    children: set[int] = field(default_factory=set)
    on_children_changed: Callable[[], None] = lambda: None


def entity_signature(entity: dict) -> str:
    """Two entities with the same signature are the same deployment (reused on update)."""
    keys = ("entity_name", "entity_version", "external_model", "foundation_model")
    return json.dumps({k: entity.get(k) for k in keys}, sort_keys=True)


class Runner:
    """Base: deployment state, message, and the process log of one served entity."""

    def __init__(self, endpoint: str, entity: dict, ctx: RunnerContext) -> None:
        self.endpoint, self.entity, self.ctx = endpoint, entity, ctx
        self.name: str = entity["name"]
        self.signature = entity_signature(entity)
        self.state = CREATING
        self.message = "Creating the served entity."
        self.log_path = Path(ctx.home) / "logs" / endpoint / f"{self.name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, line: str) -> None:
        with self.log_path.open("a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    def logs(self, max_chars: int = 20000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-max_chars:]

    def _ready(self, what: str) -> None:
        self.state = READY
        ignored = not_applied(self.entity)
        note = f" ({WORKLOAD_NOTE}: {', '.join(ignored)})" if ignored else ""
        self.message = f"{what} is ready{note}."
        self.log(self.message)

    def _failed(self, why: str) -> None:
        self.state = FAILED
        self.message = why
        self.log(f"FAILED: {why}")

    def state_view(self) -> dict:
        return {"deployment": self.state, "deployment_state_message": self.message}

    def check_ready(self) -> None:
        if self.state != READY:
            raise unavailable(f"Served entity {self.name} of endpoint {self.endpoint} is not "
                              f"ready ({self.state}): {self.message}", 2)

    async def start(self) -> bool:
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop serving; the default has nothing to release."""

    async def invoke(self, body: dict) -> dict:
        raise NotImplementedError


class FakeRunner(Runner):
    """Deterministic responder: ``[<entity>] echo: <last user message>``; no process."""

    async def start(self) -> bool:
        self.log(f"Starting fake served entity {self.name}.")
        f = self.ctx.faults.faults
        ready = f.ready_seconds if f.ready_seconds is not None else self.ctx.fake_ready_seconds
        await asyncio.sleep(ready)
        if self.ctx.faults.take_failure(self.name):
            self._failed(f"Served entity {self.name} failed to start: injected fault "
                         "(fail_next_update).")
            return False
        self._ready(f"Fake served entity {self.name}")
        return True

    async def invoke(self, body: dict) -> dict:
        self.check_ready()
        f = self.ctx.faults.faults
        latency = f.latency_ms if f.latency_ms is not None else self.ctx.fake_latency_ms
        if latency:
            await asyncio.sleep(latency / 1000)
        return fake_answer(self.name, body)


def fake_answer(model: str, body: dict) -> dict:
    """The deterministic answer of the fake responder to a chat or dataframe body."""
    if "messages" not in body:
        rows = body.get("dataframe_records") or body.get("instances") or body.get("inputs") or []
        n = len(rows) if isinstance(rows, list) else 1
        return {"predictions": [f"[{model}] echo: row {i}" for i in range(n)]}
    users = [m for m in body["messages"] if m.get("role") == "user"] or body["messages"]
    last = text_of(users[-1].get("content"))[:200]
    words = f"[{model}] echo: {last}".split()
    max_tokens = body.get("max_tokens")
    finish = "stop"
    if max_tokens is not None and len(words) > max_tokens:
        words, finish = words[:max_tokens], "length"
    content = " ".join(words)
    n = body.get("n") or 1
    p = prompt_tokens(body)
    c = count_tokens(content) * n
    digest = hashlib.sha256(json.dumps(body["messages"], sort_keys=True).encode()).hexdigest()
    return {
        "id": f"chatcmpl-{digest[:24]}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": i, "message": {"role": "assistant", "content": content},
                     "finish_reason": finish} for i in range(n)],
        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
    }


def _http(method: str, url: str, timeout: float, **kw):
    import requests

    return requests.request(method, url, timeout=timeout, **kw)


class ScoringServerRunner(Runner):
    """MLflow's scoring server for ``models:/NAME/VERSION``, supervised and restarted if it dies."""

    def __init__(self, endpoint: str, entity: dict, ctx: RunnerContext,
                 model_uri: str | None = None) -> None:
        super().__init__(endpoint, entity, ctx)
        self.model_uri = model_uri or f"models:/{entity['entity_name']}/{entity['entity_version']}"
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.stopping = False
        self.supervisor: asyncio.Task | None = None

    def _spawn(self) -> None:
        self.port = free_port()
        env = dict(os.environ)
        if self.ctx.tracking_uri:
            env["MLFLOW_TRACKING_URI"] = self.ctx.tracking_uri
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env["MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"] = str(int(self.ctx.request_timeout))
        for k, v in (self.entity.get("environment_vars") or {}).items():
            if "{{secrets/" not in str(v):
                env[k] = str(v)
        cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", self.model_uri,
               "-p", str(self.port), "-h", "127.0.0.1", "--env-manager", "local"]
        self.log(f"Starting the MLflow scoring server for {self.model_uri} on port {self.port}.")
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env,
                                         start_new_session=True)
        self.ctx.children.add(self.proc.pid)
        self.ctx.on_children_changed()

    async def _wait_ping(self) -> bool:
        deadline = time.monotonic() + self.ctx.start_timeout
        while time.monotonic() < deadline and not self.stopping:
            code = self.proc.poll() if self.proc else -1
            if code is not None:
                tail = self.logs(600).strip().splitlines()[-1:] or [""]
                self._failed(f"The scoring server of {self.name} exited with code {code} while "
                             f"starting: {tail[0][:300]} (see the build logs).")
                return False
            try:
                r = await run_in_threadpool(_http, "GET", f"http://127.0.0.1:{self.port}/ping", 2)
                if r.status_code == 200:
                    return True
            except Exception:
                pass
            await asyncio.sleep(0.5)
        if not self.stopping:
            self._failed(f"The scoring server of {self.name} did not answer /ping within "
                         f"{self.ctx.start_timeout:.0f} s (see the build logs).")
        return False

    async def start(self) -> bool:
        self.stopping = False
        await run_in_threadpool(self._spawn)
        if not await self._wait_ping():
            await self._kill()
            return False
        self._ready(f"Scoring server of {self.name} ({self.model_uri})")
        self.supervisor = asyncio.get_running_loop().create_task(self._supervise())
        return True

    async def _supervise(self) -> None:
        while not self.stopping:
            await asyncio.sleep(1.0)
            if self.stopping or self.proc is None or self.proc.poll() is None:
                continue
            code = self.proc.returncode
            self.state = RECOVERING
            self.message = f"The scoring server exited with code {code}; restarting it."
            self.log(self.message)
            await self._kill()
            await run_in_threadpool(self._spawn)
            if await self._wait_ping():
                self._ready(f"Scoring server of {self.name} ({self.model_uri}) restarted and")
            else:
                await self._kill()
                await asyncio.sleep(5)

    async def _kill(self) -> None:
        proc = self.proc
        if proc is None:
            return
        await run_in_threadpool(kill_group, proc)
        self.ctx.children.discard(proc.pid)
        self.ctx.on_children_changed()

    async def stop(self) -> None:
        self.stopping = True
        if self.supervisor:
            self.supervisor.cancel()
        await self._kill()
        if self.state == READY:
            self.state, self.message = ABORTED, "Stopped."

    def stop_now(self) -> None:
        """Synchronous stop for signal handlers and interpreter exit."""
        self.stopping = True
        if self.proc is not None:
            kill_group(self.proc)

    async def invoke(self, body: dict) -> dict:
        self.check_ready()
        url = f"http://127.0.0.1:{self.port}/invocations"
        try:
            r = await run_in_threadpool(_http, "POST", url, self.ctx.request_timeout, json=body)
        except Exception as e:
            raise unavailable(f"The scoring server of {self.name} did not answer: "
                              f"{type(e).__name__}.", 2) from None
        try:
            data = r.json()
        except ValueError:
            data = {"message": r.text[:500]}
        if r.status_code >= 400:
            msg = data.get("message") if isinstance(data, dict) else str(data)
            code = data.get("error_code") if isinstance(data, dict) else None
            msg = _model_message(msg)
            if r.status_code == 400 or code in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE"):
                raise invalid(f"The model rejected the request: {msg}")
            raise ApiError(r.status_code if r.status_code in (429, 503) else 500,
                           code or "INTERNAL_ERROR", f"The model failed: {msg}")
        return data


def _model_message(msg: object, limit: int = 500) -> str:
    """The scoring server's reason, without MLflow's "Failed to predict data '<the whole input>'" echo."""
    text = str(msg)
    if "Error: " in text and text.startswith("Failed to predict data"):
        text = text.rsplit("Error: ", 1)[1]
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def kill_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the process group of ``proc``, then SIGKILL what is left after ``grace``."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = proc.pid
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        if not _group_alive(pgid):
            return
        time.sleep(0.1)
        if not _group_alive(pgid):
            return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False
