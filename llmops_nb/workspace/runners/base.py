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
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from llmops_nb.protocol.streaming import single_answer
from llmops_nb.util.paths import make_private
from llmops_nb.util.ports import free_port
from llmops_nb.util.processes import kill_group
from llmops_nb.workspace.apierror import ApiError, invalid, unavailable
from llmops_nb.workspace.runners.chat import count_tokens, prompt_tokens, text_of, with_nullable_fields
from llmops_nb.workspace.runners.faults import FaultInjector
from llmops_nb.workspace.runners.fields import FAKE, check_fields, custom_input_fields, model_fields, streaming_note
from llmops_nb.workspace.runners.notices import entity_notices
from llmops_nb.workspace.runners.scoring_main import IMPORTED
from llmops_nb.workspace.runners.supervisor import Backoff, ExitWatch, OutputPump, StartTimes, exit_reason

READY, CREATING, FAILED = "DEPLOYMENT_READY", "DEPLOYMENT_CREATING", "DEPLOYMENT_FAILED"
RECOVERING, ABORTED = "DEPLOYMENT_RECOVERING", "DEPLOYMENT_ABORTED"
WORKLOAD_NOTE = "not applied by the local workspace"


def not_applied(entity: dict) -> list[str]:
    """The fields of ``entity`` the local workspace accepts but does not apply (see notices)."""
    fields = [line.split(":", 1)[0].split("=", 1)[0].rsplit(".", 1)[-1] for line in entity_notices(0, entity)]
    if entity.get("workload_size") and "workload_size" not in fields and not entity.get("external_model"):
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
            raise unavailable(
                f"Served entity {self.name} of endpoint {self.endpoint} is not ready ({self.state}): {self.message}", 2
            )

    async def start(self) -> bool:
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop serving; the default has nothing to release."""

    async def invoke(self, body: dict) -> dict:
        raise NotImplementedError

    def chat_fields(self) -> tuple[frozenset[str] | None, str]:
        """The chat fields this entity honours (None: every field, forwarded) and its kind."""
        return FAKE, "served entity"

    def custom_inputs(self) -> frozenset[str]:
        """The chat fields this entity takes in ``custom_inputs`` instead (an MLflow ChatModel)."""
        return frozenset()

    def check_request(self, body: dict) -> None:
        """400 for a chat field this entity cannot honour, before its model runs (fields.py)."""
        if "messages" in body:
            honoured, kind = self.chat_fields()
            check_fields(body, honoured, self.name, kind, self.custom_inputs())


class FakeRunner(Runner):
    """Deterministic responder: ``[<entity>] echo: <last user message>``; no process."""

    async def start(self) -> bool:
        self.log(f"Starting fake served entity {self.name}.")
        f = self.ctx.faults.faults
        ready = f.ready_seconds if f.ready_seconds is not None else self.ctx.fake_ready_seconds
        await asyncio.sleep(ready)
        if self.ctx.faults.take_failure(self.name):
            self._failed(f"Served entity {self.name} failed to start: injected fault (fail_next_update).")
            return False
        self._ready(f"Fake served entity {self.name}")
        return True

    def chat_fields(self) -> tuple[frozenset[str] | None, str]:
        return FAKE, "fake responder"

    async def invoke(self, body: dict) -> dict:
        self.check_ready()
        self.check_request(body)
        f = self.ctx.faults.faults
        latency = f.latency_for(self.endpoint, self.ctx.fake_latency_ms)
        if latency:
            await asyncio.sleep(latency / 1000)
        if self.ctx.faults.question_fails(body):
            raise ApiError(
                500, "INTERNAL_ERROR", f"Injected fault: served entity {self.name} failed on this question (fail_questions)."
            )
        if self.ctx.faults.entity_fails(self.name):
            raise ApiError(
                500, "INTERNAL_ERROR", f"Injected fault: served entity {self.name} failed to answer (entity_error_rate)."
            )
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
    stops = [body["stop"]] if isinstance(body.get("stop"), str) else body.get("stop") or []
    cut = min((at for at in (content.find(s) for s in stops if s) if at >= 0), default=-1)
    if cut >= 0:
        content, finish = content[:cut], "stop"
    n = body.get("n") or 1
    p = prompt_tokens(body)
    c = count_tokens(content) * n
    digest = hashlib.sha256(json.dumps(body["messages"], sort_keys=True).encode()).hexdigest()
    return {
        "id": f"chatcmpl-{digest[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
            for i in range(n)
        ],
        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
    }


def _http(method: str, url: str, timeout: float, **kw):
    import requests

    return requests.request(method, url, timeout=timeout, **kw)


class ScoringServerRunner(Runner):
    """MLflow's scoring server for ``models:/NAME/VERSION``, supervised.

    Its exit is noticed at once (an :class:`ExitWatch` thread blocked in ``proc.wait()``) and it
    is restarted immediately; restarts are backed off (exponential, capped) only while they
    keep failing. A server that does not answer an invocation within the request timeout nor
    ``/ping`` right after is killed (whole process group) and restarted. While restarting, the
    entity is DEPLOYMENT_RECOVERING and invocations get 503 with ``Retry-After`` sized to the
    last start's duration. Every start's timestamps go to ``<entity>.starts.jsonl``.
    """

    #: lines of the child's output that end a phase of its start (see StartTimes)
    MARKERS = {"imported_at": IMPORTED.encode(), "loaded_at": b"Started server process"}
    PING_INTERVAL = 0.2
    HANG_PING_TIMEOUT = 5.0

    def __init__(self, endpoint: str, entity: dict, ctx: RunnerContext, model_uri: str | None = None) -> None:
        super().__init__(endpoint, entity, ctx)
        self.model_uri = model_uri or f"models:/{entity['entity_name']}/{entity['entity_version']}"
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.stopping = False
        self.supervisor: asyncio.Task | None = None  # the restart in progress, if any
        self.backoff = Backoff()
        self.expected_start_s = 5.0  # replaced by the last measured start
        self.recovering_since = 0.0
        self.retry_at = 0.0  # monotonic time of the next restart attempt while backing off
        self.ready_since: float | None = None
        self.starts_path = self.log_path.with_suffix(".starts.jsonl")
        self.serving_dir = Path(ctx.home) / "serving" / endpoint / self.name
        self.local_model: Path | None = None
        self._pump: OutputPump | None = None
        self._watch: ExitWatch | None = None
        self._fields: tuple[frozenset[str] | None, str] | None = None
        self._carried: frozenset[str] | None = None

    def chat_fields(self) -> tuple[frozenset[str] | None, str]:
        """What the served MLflow model honours: its MLmodel's metadata, flavor or signature."""
        if self._fields is None:
            self._fields = model_fields(self.local_model)
        return self._fields

    def custom_inputs(self) -> frozenset[str]:
        """What the served ChatModel takes in ``custom_inputs`` (its MLmodel metadata)."""
        if self._carried is None:
            self._carried = custom_input_fields(self.local_model)
        return self._carried

    def _model_dir(self) -> Path:
        """The model's artifacts, downloaded once per runner and reused by every restart."""
        if self.local_model is None or not (self.local_model / "MLmodel").exists():
            import mlflow
            import mlflow.artifacts

            dest = self.serving_dir / "model"
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            self.log(f"Downloading the artifacts of {self.model_uri}.")
            if self.ctx.tracking_uri:
                # download_artifacts resolves models:/ through the process-wide registry URI, not
                # its registry_uri argument: without this it opened ./mlflow.db of the workspace's
                # cwd (a new, empty store) whenever that was not the project folder.
                mlflow.set_tracking_uri(self.ctx.tracking_uri)
                mlflow.set_registry_uri(self.ctx.tracking_uri)
            self.local_model = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=self.model_uri,
                    dst_path=str(dest),
                    tracking_uri=self.ctx.tracking_uri,
                    registry_uri=self.ctx.tracking_uri,
                )
            )
            # the copy keeps the artifact store's modes (0644): the home stays private (issue 19)
            make_private(dest)
        return self.local_model

    def _command(self) -> tuple[list[str], dict[str, str]]:
        """MLflow's scoring-server command line for the local model copy, as ``mlflow models
        serve --env-manager local`` runs it (mlflow/pyfunc/backend.py PyFuncBackend.serve
        execs ``scoring_server.get_cmd``), without the CLI process in front of it: a
        restart skips one Python start, MLflow's import and the artifact download."""
        from mlflow.pyfunc.scoring_server import get_cmd

        command, env = get_cmd(
            str(self._model_dir()),
            port=self.port,
            host="127.0.0.1",  # type: ignore[arg-type]  # annotated int | None, but shlex.quote()d: a str
            timeout=int(self.ctx.request_timeout),
            nworkers=1,
        )
        argv = shlex.split(command)
        if argv[0] == "uvicorn":  # the same uvicorn, with the phases of its start marked
            argv = [sys.executable, "-m", "llmops_nb.workspace.runners.scoring_main", *argv[1:]]
        return argv, env

    def _spawn(self, times: StartTimes, loop: asyncio.AbstractEventLoop) -> None:
        self.port = free_port()
        times.spawned_at = time.time()
        cmd, env = self._command()
        times.launched_at = time.time()  # the artifacts are local: the server process starts
        if self.ctx.tracking_uri:
            env["MLFLOW_TRACKING_URI"] = self.ctx.tracking_uri
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env["PYTHONUNBUFFERED"] = "1"  # the output pump timestamps lines as they come
        for k, v in (self.entity.get("environment_vars") or {}).items():
            if "{{secrets/" not in str(v):
                env[k] = str(v)
        self.log(f"Starting the MLflow scoring server for {self.model_uri} on port {self.port}.")
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
        self.proc = proc
        assert proc.stdout is not None  # stdout=PIPE
        self._pump = OutputPump(proc.stdout, self.log_path, self.MARKERS)
        self._watch = ExitWatch(proc, loop, self._on_exit)
        self.ctx.children.add(proc.pid)
        self.ctx.on_children_changed()
        if self.stopping:  # stopped while this thread was starting it
            kill_group(proc, 0.0)

    async def _launch(self, times: StartTimes) -> str | None:
        """Spawn a server and wait for ``/ping``; None when it answers, else why it did not."""
        try:
            await run_in_threadpool(self._spawn, times, asyncio.get_running_loop())
        except Exception as e:  # the model's download or the command: say why, in the state and logs
            times.error = f"could not start the scoring server: {type(e).__name__}: {str(e)[:300]}"
            self.log(times.error)
            return times.error
        proc, pump = self.proc, self._pump
        assert proc is not None and pump is not None and times.launched_at is not None  # set by _spawn
        deadline = time.monotonic() + self.ctx.start_timeout
        why = None
        while not self.stopping:
            if proc.returncode is not None:  # set by the ExitWatch thread
                tail = self.logs(600).strip().splitlines()[-1:] or [""]
                why = f"the scoring server {exit_reason(proc.returncode)} while starting: {tail[0][:300]}"
                break
            if time.monotonic() > deadline:
                why = f"the scoring server did not answer /ping within {self.ctx.start_timeout:.0f} s"
                break
            try:
                r = await run_in_threadpool(_http, "GET", f"http://127.0.0.1:{self.port}/ping", 2)
                if r.status_code == 200:
                    times.ready_at = ready_at = time.time()
                    for name, at in pump.seen.items():
                        setattr(times, name, at)
                    times.ok = True
                    # a restart's expected time: from the process start (artifacts are local)
                    self.expected_start_s = ready_at - times.launched_at
                    return None
            except Exception:
                pass
            await asyncio.sleep(self.PING_INTERVAL)
        times.error = why or "stopped"
        return times.error

    async def start(self) -> bool:
        self.stopping = False
        times = StartTimes(reason="deployment")
        why = await self._launch(times)
        times.append_to(self.starts_path)
        if why is not None:
            await self._kill()
            if not self.stopping:
                self._failed(f"Served entity {self.name}: {why} (see the build logs).")
            return False
        self.ready_since = time.monotonic()
        self._ready(f"Scoring server of {self.name} ({self.model_uri})")
        if (note := streaming_note(self.local_model)) is not None:
            self.log(note)  # the build logs say where the local workspace differs from Databricks
        return True

    def _on_exit(self, proc: subprocess.Popen, code: int, exited_at: float) -> None:
        """On the loop, at once: the serving process exited; restart it unless we meant it."""
        if self.stopping or proc is not self.proc or self.state != READY:
            return  # a stop, a kill of ours, or a start that _launch reports itself
        self._recover(f"The scoring server {exit_reason(code)}", exited_at, uptime=True)

    def _recover(self, reason: str, exited_at: float, uptime: bool) -> None:
        self.backoff.exited(time.monotonic() - self.ready_since if uptime and self.ready_since is not None else None)
        self.state, self.ready_since = RECOVERING, None
        self.recovering_since = time.monotonic()
        self.message = f"{reason}; restarting it (a start takes about {self.expected_start_s:.0f} s)."
        self.log(self.message)
        self.supervisor = asyncio.get_running_loop().create_task(self._restart(reason, exited_at))

    async def _restart(self, reason: str, exited_at: float) -> None:
        attempt = 0
        while not self.stopping:
            attempt += 1
            delay = self.backoff.delay()
            if delay:
                self.retry_at = time.monotonic() + delay
                self.message = (
                    f"{reason}; restarts keep failing ({self.backoff.failures} in a "
                    f"row): backing off, next attempt in {delay:.0f} s."
                )
                self.log(self.message)
                await asyncio.sleep(delay)
                self.retry_at = 0.0
                if self.stopping:
                    return
            await self._kill(grace=0.0)  # what is left of the old process group
            times = StartTimes(reason=reason, attempt=attempt, exited_at=exited_at)
            why = await self._launch(times)
            times.append_to(self.starts_path)
            if self.stopping:
                return
            if why is None:
                assert times.ready_at is not None  # _launch returns None once /ping answered
                self.ready_since = time.monotonic()
                self.log(
                    f"Restarted in {times.ready_at - exited_at:.1f} s "
                    f"(process start {times.phases()['process_start_s']} s, model load "
                    f"{times.phases()['model_load_s']} s)."
                )
                self._ready(f"Scoring server of {self.name} ({self.model_uri}) restarted and")
                return
            self.backoff.failed()
            self.message = f"{reason}; restart {attempt} failed: {why}."
            self.log(self.message)
            exited_at = time.time()

    def retry_after(self) -> float:
        """Seconds until the entity should answer again (the 503's ``Retry-After``)."""
        now = time.monotonic()
        if self.retry_at:
            return self.retry_at - now + self.expected_start_s
        if self.state == RECOVERING:
            return self.expected_start_s - (now - self.recovering_since)
        return 2.0

    def check_ready(self) -> None:
        if self.state != READY:
            raise unavailable(
                f"Served entity {self.name} of endpoint {self.endpoint} is not ready ({self.state}): {self.message}",
                self.retry_after(),
            )

    async def _kill(self, grace: float = 5.0) -> None:
        proc = self.proc
        if proc is None:
            return
        await run_in_threadpool(kill_group, proc, grace)
        self.ctx.children.discard(proc.pid)
        self.ctx.on_children_changed()

    async def stop(self) -> None:
        self.stopping = True
        if self.supervisor:
            self.supervisor.cancel()
        await self._kill()
        await run_in_threadpool(shutil.rmtree, self.serving_dir, True)  # the model copy
        if self.state in (READY, RECOVERING):
            self.state, self.message = ABORTED, "Stopped."

    def stop_now(self) -> None:
        """Synchronous stop for signal handlers and interpreter exit."""
        self.stopping = True
        if self.proc is not None:
            kill_group(self.proc)

    async def _hung(self, proc: subprocess.Popen | None, why: str) -> None:
        """``proc`` did not answer an invocation: if ``/ping`` fails too, kill and restart it."""
        if proc is None or self.stopping or proc is not self.proc or self.state != READY:
            return
        try:
            r = await run_in_threadpool(_http, "GET", f"http://127.0.0.1:{self.port}/ping", self.HANG_PING_TIMEOUT)
            if r.status_code == 200:
                return  # alive: this one request was slow
        except Exception:
            pass
        if proc is not self.proc or self.state != READY or proc.returncode is not None:
            return  # meanwhile restarted, or it died (the ExitWatch restarts it)
        reason = (
            f"The scoring server hung: {why} and /ping did not answer within "
            f"{self.HANG_PING_TIMEOUT:.0f} s; killed its process group"
        )
        self._recover(reason, time.time(), uptime=True)

    async def invoke(self, body: dict) -> dict:
        self.check_ready()
        self.check_request(body)
        proc = self.proc
        url = f"http://127.0.0.1:{self.port}/invocations"
        try:
            r = await run_in_threadpool(_http, "POST", url, self.ctx.request_timeout, json=body)
        except Exception as e:
            import requests

            if isinstance(e, requests.Timeout):
                await self._hung(
                    proc, f"an invocation got no answer within the request timeout ({self.ctx.request_timeout:.0f} s)"
                )
            elif proc is not None and proc.returncode is None:
                await asyncio.sleep(0.2)  # a dropped connection: let the ExitWatch see the exit
            raise unavailable(
                f"The scoring server of {self.name} did not answer ({type(e).__name__}); {self.message}", self.retry_after()
            ) from None
        try:
            data = r.json()
        except ValueError:
            data = {"message": r.text[:500]}
        if r.status_code >= 400:
            msg = data.get("message") if isinstance(data, dict) else str(data)
            code = data.get("error_code") if isinstance(data, dict) else None
            msg = _model_message(msg)
            if r.status_code == 400 or code in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE"):
                raise invalid(f"The model of served entity {self.name} rejected the request: {msg}")
            raise ApiError(
                r.status_code if r.status_code in (429, 503) else 500, code or "INTERNAL_ERROR", f"The model failed: {msg}"
            )
        return with_nullable_fields(single_answer(data))  # an llm/v1 transformers model answers [completion]


def _model_message(msg: object, limit: int = 500) -> str:
    """The scoring server's reason, without MLflow's "Failed to predict data '<the whole input>'" echo."""
    text = str(msg)
    if "Error: " in text and text.startswith("Failed to predict data"):
        text = text.rsplit("Error: ", 1)[1]
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
