"""Endpoint lifecycle: create, update (pending config, reuse, switch), delete, route, invoke.

All state changes happen under one asyncio lock on the server's event loop; deployments run
as tasks so the API answers at once, as Databricks does (IN_PROGRESS, then NOT_UPDATING).
"""

from __future__ import annotations

import asyncio
import builtins
import sys
import time
import uuid
from collections.abc import AsyncGenerator

from llmops_nb.protocol.streaming import assemble
from llmops_nb.workspace.apierror import ApiError, conflict, invalid, not_found, unavailable
from llmops_nb.workspace.runners.base import READY, FakeRunner, Runner, RunnerContext, ScoringServerRunner, entity_signature
from llmops_nb.workspace.runners.chat import prompt_tokens
from llmops_nb.workspace.runners.external import ExternalModelRunner
from llmops_nb.workspace.runners.streamers import open_stream
from llmops_nb.workspace.serving import fallback
from llmops_nb.workspace.serving.foundation import FOUNDATION_ENDPOINT, find_registered_model, foundation_entity
from llmops_nb.workspace.serving.ratelimit import RateLimiter
from llmops_nb.workspace.serving.routing import SmoothWeightedRoundRobin, weights_for
from llmops_nb.workspace.serving.system_tables import record_change
from llmops_nb.workspace.serving.usage import invocation_done
from llmops_nb.workspace.serving.validation import check_not_system
from llmops_nb.workspace.serving.views import endpoint_view, foundation_view
from llmops_nb.workspace.store import EndpointStore

SYSTEM = {FOUNDATION_ENDPOINT}
#: Top-level create fields kept on the record (``rate_limits``, deprecated, is kept but not shown).
STORED_TOP_LEVEL = ("description", "budget_policy_id", "email_notifications", "route_optimized", "rate_limits")


def _now_ms() -> int:
    return int(time.time() * 1000)


class Manager:
    """The endpoints of one workspace, their runners, routers and deployments."""

    def __init__(self, ctx: RunnerContext) -> None:
        self.ctx = ctx
        self.store = EndpointStore(ctx.home)
        self.lock = asyncio.Lock()
        self.active: dict[str, dict[str, Runner]] = {}
        self.pending: dict[str, dict[str, Runner]] = {}
        self.routers: dict[str, SmoothWeightedRoundRobin] = {}
        self.tasks: set[asyncio.Task] = set()
        self.limiter = RateLimiter(minute=lambda: ctx.faults.faults.gateway_minute_seconds or 60.0)
        self.started_ms = _now_ms()
        self.foundation: Runner | None = None
        self.foundation_task: asyncio.Task | None = None
        self.notes: dict[str, list[str]] = {}  # the last warnings told, for new runners' logs

    # ---- lifecycle -------------------------------------------------------------------
    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def make_runner(self, endpoint: str, entity: dict) -> Runner:
        if entity.get("external_model"):
            return ExternalModelRunner(endpoint, entity, self.ctx)
        if self.ctx.fake:
            return FakeRunner(endpoint, entity, self.ctx)
        return ScoringServerRunner(endpoint, entity, self.ctx)

    async def restore(self) -> None:
        """After a restart: start the runners of every stored config, resume updates."""
        for name, rec in list(self.store.records.items()):
            self._spawn(self._restore(name, rec))

    async def _restore(self, name: str, rec: dict) -> None:
        if rec.get("config"):
            runners = {e["name"]: self.make_runner(name, e) for e in rec["config"]["served_entities"]}
            self.active[name] = runners
            self.routers[name] = SmoothWeightedRoundRobin(weights_for(rec["config"]))
            await asyncio.gather(*(r.start() for r in runners.values()))
        if rec.get("config_update") == "IN_PROGRESS" and rec.get("pending_config"):
            await self._deploy(name)

    async def shutdown(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        runners = [r for group in (*self.active.values(), *self.pending.values()) for r in group.values()]
        if self.foundation:
            runners.append(self.foundation)
        await asyncio.gather(*(r.stop() for r in runners), return_exceptions=True)

    # ---- reads -----------------------------------------------------------------------
    def view(self, name: str, host: str) -> dict:
        if name == FOUNDATION_ENDPOINT:
            return foundation_view(host, self.started_ms)
        rec = self.store.get(name)
        if rec is None:
            raise not_found(f"Endpoint with name '{name}' does not exist.")
        return endpoint_view(rec, self.active.get(name, {}), self.pending.get(name, {}), host)

    def list(self, host: str) -> list[dict]:
        return [foundation_view(host, self.started_ms)] + [self.view(n, host) for n in sorted(self.store.records)]

    def runner_for_logs(self, name: str, entity: str) -> Runner:
        self.view(name, "")  # 404 for unknown endpoints
        for group in (self.pending.get(name, {}), self.active.get(name, {})):
            if entity in group:
                return group[entity]
        raise not_found(f"Served model '{entity}' does not exist in endpoint '{name}'.")

    def tell(self, name: str, lines: builtins.list[str]) -> None:
        """Say what the workspace does not apply: workspace log and the entities' build logs."""
        if not lines:
            return
        runners = {**self.active.get(name, {}), **self.pending.get(name, {})}
        for line in lines:
            print(f"WARNING endpoint {name}: {line}", file=sys.stderr, flush=True)
            for runner in runners.values():
                runner.log(f"WARNING (local workspace): {line}")
        self.notes[name] = lines

    # ---- writes ----------------------------------------------------------------------
    async def create(self, body: dict, creator: str) -> dict:
        name = body["name"]
        async with self.lock:
            if name in SYSTEM or self.store.get(name) is not None:
                # 409, as the Databricks CLI's test server (libs/testserver/serving_endpoints.go)
                raise ApiError(409, "RESOURCE_ALREADY_EXISTS", f"Serving endpoint with name {name} already exists")
            await self._check_registry(body["config"])
            now = _now_ms()
            rec = {
                "name": name,
                "id": uuid.uuid4().hex,
                "creator": creator,
                "creation_timestamp": now,
                "last_updated_timestamp": now,
                "config": None,
                "config_update": "IN_PROGRESS",
                "pending_config": {**body["config"], "config_version": 1, "start_time": now},
                "tags": body.get("tags") or [],
                "ai_gateway": body.get("ai_gateway"),
            }
            for key in STORED_TOP_LEVEL:
                if body.get(key) is not None:
                    rec[key] = body[key]
            self.store.put(rec)
        self._spawn(self._deploy(name))
        return rec

    async def update_config(self, name: str, config: dict) -> None:
        check_not_system(name, SYSTEM, "updated")
        async with self.lock:
            rec = self._get(name)
            if rec["config_update"] == "IN_PROGRESS":
                raise conflict(
                    f"Endpoint '{name}' is currently being updated; wait until "
                    "config_update is NOT_UPDATING before updating it again."
                )
            await self._check_registry(config)
            version = (rec["config"] or {}).get("config_version", 0) + 1
            now = _now_ms()
            rec.update(
                pending_config={**config, "config_version": version, "start_time": now},
                config_update="IN_PROGRESS",
                last_updated_timestamp=now,
            )
            rec.pop("pending_states", None)
            self.store.put(rec)
        self._spawn(self._deploy(name))

    async def _check_registry(self, config: dict) -> None:
        if self.ctx.fake:
            return
        from starlette.concurrency import run_in_threadpool

        for e in config["served_entities"]:
            if e.get("entity_name"):
                await run_in_threadpool(_check_model_version, self.ctx.tracking_uri, e["entity_name"], e["entity_version"])

    async def _deploy(self, name: str) -> None:
        rec = self.store.get(name)
        if rec is None or rec.get("pending_config") is None:
            return  # deleted (or already applied) before this task ran
        pending = rec["pending_config"]
        current = self.active.get(name, {})
        runners, started = {}, []
        for e in pending["served_entities"]:
            old = current.get(e["name"])
            if old is not None and old.signature == entity_signature(e):
                old.entity = e
                runners[e["name"]] = old
            else:
                runners[e["name"]] = self.make_runner(name, e)
                started.append(runners[e["name"]])
        self.pending[name] = runners
        for runner in started:
            for line in self.notes.get(name, []):
                runner.log(f"WARNING (local workspace): {line}")
        results = await asyncio.gather(*(r.start() for r in started), return_exceptions=True)
        ok = all(r is True for r in results)
        if ok:  # system.serving.served_entities has the entities before the endpoint says READY
            await asyncio.to_thread(record_change, self.ctx.home, rec, pending)
        to_stop: list[Runner] = []
        async with self.lock:
            rec = self.store.get(name)
            if rec is None or rec.get("pending_config") is not pending:
                to_stop = started  # deleted (or superseded) meanwhile
            elif ok:
                config = dict(rec["pending_config"])
                rec.update(config=config, pending_config=None, config_update="NOT_UPDATING", last_updated_timestamp=_now_ms())
                reused = set(map(id, runners.values()))
                to_stop = [r for r in current.values() if id(r) not in reused]
                self.active[name] = runners
                self.pending.pop(name, None)
                self.routers[name] = SmoothWeightedRoundRobin(weights_for(config))
                self.store.put(rec)
            else:
                rec["config_update"] = "UPDATE_FAILED"
                rec["last_updated_timestamp"] = _now_ms()
                rec["pending_states"] = {n: r.state_view() for n, r in runners.items()}
                self.store.put(rec)
                to_stop = [r for r in started if r.state == READY]
        for r in to_stop:
            await r.stop()

    async def put_ai_gateway(self, name: str, gateway: dict) -> dict:
        check_not_system(name, SYSTEM, "updated")
        async with self.lock:
            rec = self._get(name)
            rec["ai_gateway"] = gateway or None  # an empty PUT clears the gateway (CLI)
            rec["last_updated_timestamp"] = _now_ms()
            self.store.put(rec)
            self.limiter.forget(name)
        return gateway

    async def put_notifications(self, name: str, notifications: dict | None) -> dict:
        """``PATCH .../notifications``: replace the endpoint's email notifications."""
        check_not_system(name, SYSTEM, "updated")
        async with self.lock:
            rec = self._get(name)
            rec["email_notifications"] = notifications or None
            self.store.put(rec)
        return {"name": name, **({"email_notifications": notifications} if notifications else {})}

    async def patch_tags(self, name: str, add: builtins.list[dict], delete: builtins.list[str]) -> builtins.list[dict]:
        check_not_system(name, SYSTEM, "tagged")
        async with self.lock:
            rec = self._get(name)
            tags = {t["key"]: t.get("value") for t in rec.get("tags") or []}
            for key in delete:
                tags.pop(key, None)
            for t in add:
                tags[t["key"]] = t.get("value")
            rec["tags"] = [{"key": k, "value": v} if v is not None else {"key": k} for k, v in tags.items()]
            self.store.put(rec)
            return rec["tags"]

    async def delete(self, name: str) -> None:
        check_not_system(name, SYSTEM, "deleted")
        async with self.lock:
            rec = self._get(name)
            self.store.delete(name)
            runners = [*self.active.pop(name, {}).values(), *self.pending.pop(name, {}).values()]
            self.routers.pop(name, None)
            self.limiter.forget(name)
            self.notes.pop(name, None)
        await asyncio.gather(*(r.stop() for r in set(runners)), return_exceptions=True)
        await asyncio.to_thread(record_change, self.ctx.home, rec, rec.get("config"), deleted=True)

    def record_to_change(self, name: str, action: str) -> dict:
        """The record of an endpoint a request changes: 400 for the system endpoint, 404 for an
        unknown name (what the change itself says under the lock)."""
        check_not_system(name, SYSTEM, action)
        return self._get(name)

    def _get(self, name: str) -> dict:
        rec = self.store.get(name)
        if rec is None:
            raise not_found(f"Endpoint with name '{name}' does not exist.")
        return rec

    # ---- invocations -----------------------------------------------------------------
    async def invoke(self, name: str, body: dict, user: str, served: str | None = None) -> tuple[dict, str]:
        """Answer ``body`` with one served entity of ``name``; return (answer, entity name).

        ``served``: that served entity only, whatever the traffic split, and no fallback
        (``POST /serving-endpoints/{name}/served-models/{entity}/invocations``, Databricks'
        "query individual models behind an endpoint")."""
        if name == FOUNDATION_ENDPOINT:
            if served is not None:
                raise not_found(f"Served model '{served}' does not exist in endpoint '{name}'.")
            return await self._invoke_foundation(body), FOUNDATION_ENDPOINT
        rec, entity, runner = self._route(name, user, served)
        started = time.perf_counter()
        status, answer, failure, tried = 200, None, None, [entity]
        try:  # the picked entity, then its fallbacks when the AI gateway turns them on
            if served is not None:
                answer = await runner.invoke(body)
            else:
                answer, entity = await fallback.invoke(self.active[name], rec, entity, body, tried)
            return answer, entity
        except ApiError as e:
            status, entity, failure = e.status, tried[-1], e.body()
            raise
        finally:
            usage = answer.get("usage") if isinstance(answer, dict) else None
            if answer is not None:
                self.limiter.add_tokens(name, rec.get("ai_gateway"), user, _total_tokens(usage, body))
            invocation_done(
                self.ctx.home,
                name,
                rec,
                entity,
                status,
                (time.perf_counter() - started) * 1000,
                body,
                answer if answer is not None else failure,
                user,
            )

    def _route(self, name: str, user: str, served: str | None = None) -> tuple[dict, str, Runner]:
        """The record, entity name and runner that answer a call of ``user`` (rate limits first);
        ``served``: that entity, 404 when the endpoint has none of that name."""
        rec = self._get(name)
        if not rec.get("config"):
            if rec["config_update"] == "IN_PROGRESS":
                raise unavailable(f"Endpoint '{name}' is not ready yet: its first config is being deployed.", 2)
            raise invalid(
                f"Endpoint '{name}' has no served config: its creation failed (see the served entities' state and build logs)."
            )
        if served is not None and served not in self.active.get(name, {}):
            raise not_found(f"Served model '{served}' does not exist in endpoint '{name}'.")
        self.limiter.check(name, rec.get("ai_gateway"), user)
        entity = served if served is not None else self.routers[name].pick()
        return rec, entity, self.active[name][entity]

    async def stream(self, name: str, body: dict, user: str) -> tuple[AsyncGenerator[dict, None], str]:
        """``invoke`` for ``stream: true``: the answer's ``chat.completion.chunk`` dicts and the
        entity. Errors before the first chunk raise here (an HTTP error, not a broken stream);
        usage and rate-limit tokens are counted from the assembled answer when it ends."""
        if name == FOUNDATION_ENDPOINT:
            return await open_stream(await self._foundation_ready(), body), FOUNDATION_ENDPOINT
        rec, entity, _ = self._route(name, user)
        started = time.perf_counter()
        tried = [entity]
        try:  # fallbacks apply until the first chunk, as for plain calls
            chunks, entity = await fallback.call(self.active[name], rec, entity, tried, lambda runner: open_stream(runner, body))
        except ApiError as e:
            invocation_done(
                self.ctx.home, name, rec, tried[-1], e.status, (time.perf_counter() - started) * 1000, body, e.body(), user
            )
            raise

        async def metered() -> AsyncGenerator[dict, None]:
            seen: list[dict] = []
            try:
                async for c in chunks:
                    seen.append(c)
                    yield c
            finally:
                answer = assemble(seen)  # what the inference table logs of a stream
                self.limiter.add_tokens(name, rec.get("ai_gateway"), user, _total_tokens(answer.get("usage"), body))
                invocation_done(self.ctx.home, name, rec, entity, 200, (time.perf_counter() - started) * 1000, body, answer, user)

        return metered(), entity

    async def _invoke_foundation(self, body: dict) -> dict:
        return await (await self._foundation_ready()).invoke(body)

    async def _foundation_ready(self) -> Runner:
        """The foundation endpoint's runner, started at the first call; 503 until it is READY."""
        if self.foundation is None:
            if self.ctx.fake:
                runner = FakeRunner(FOUNDATION_ENDPOINT, foundation_entity(), self.ctx)
                runner._ready("Fake foundation model")
                self.foundation = runner
            else:
                from starlette.concurrency import run_in_threadpool

                uri = await run_in_threadpool(find_registered_model, self.ctx.tracking_uri)
                if uri is None:
                    raise not_found(
                        f"{FOUNDATION_ENDPOINT}: no SmolLM2 model is registered in "
                        "the local registry; register it first (llmops-nb register)."
                    )
                self.foundation = ScoringServerRunner(FOUNDATION_ENDPOINT, foundation_entity(), self.ctx, model_uri=uri)
                self.foundation_task = asyncio.get_running_loop().create_task(self.foundation.start())
        if (
            self.foundation_task is not None
            and self.foundation_task.done()
            and self.foundation.state != READY
            and not self.foundation_task.result()
        ):
            self.foundation, self.foundation_task = None, None  # retry the start next time
            raise unavailable(f"{FOUNDATION_ENDPOINT} failed to start; retrying.", 5)
        if self.foundation.state != READY:
            raise unavailable(f"{FOUNDATION_ENDPOINT} is starting the model; retry shortly.", 5)
        return self.foundation


def _total_tokens(usage: dict | None, body: dict) -> int:
    """The tokens of one answered call: its ``usage``, else an estimate of the prompt."""
    if isinstance(usage, dict) and usage.get("total_tokens") is not None:
        return int(usage["total_tokens"])
    return prompt_tokens(body)


def _check_model_version(tracking_uri: str | None, name: str, version: str) -> None:
    """404 RESOURCE_DOES_NOT_EXIST unless ``name`` version ``version`` is registered."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        client.get_model_version(name, version)
    except MlflowException:
        raise not_found(f"Model version {version} of registered model '{name}' does not exist in the registry.") from None
