"""The FastAPI application: the serving-endpoints REST API, invocations, and ``/_fake/`` admin."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from llmops_nb.protocol.streaming import HEADERS as STREAM_HEADERS
from llmops_nb.protocol.streaming import MEDIA_TYPE, encode, with_usage_chunk
from llmops_nb.workspace.api import identity, oauth, secret_scopes, sql_statements, unity_catalog
from llmops_nb.workspace.api.guard import check_route, refusal, requester
from llmops_nb.workspace.apierror import ApiError, invalid
from llmops_nb.workspace.runners import notices, plaintext
from llmops_nb.workspace.runners.base import RunnerContext
from llmops_nb.workspace.runners.chat import DATAFRAME_KEYS, check_stream, include_usage, validate_chat
from llmops_nb.workspace.serving.foundation import FOUNDATION_ENDPOINT
from llmops_nb.workspace.serving.manager import Manager
from llmops_nb.workspace.serving.validation import validate_ai_gateway, validate_create, validate_notifications, validate_update

API = "/api/2.0/serving-endpoints"


def _error(e: ApiError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)


async def _json(request: Request) -> object:
    raw = await request.body()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise invalid(f"request body: malformed JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except UnicodeDecodeError as e:  # bytes that are not UTF-8 (or -16, -32): json.loads decodes them first
        raise invalid(f"request body: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _host(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _bearer(request: Request) -> str:
    """The requester of an authorized request (the rate-limit ``user`` key): see guard."""
    return requester(request)


def create_app(ctx: RunnerContext, *, token: str, on_started=None) -> FastAPI:
    """The workspace app over ``ctx``; the guards of :mod:`.guard` (``token``) run first."""
    manager = Manager(ctx)
    faults = ctx.faults
    workspace_id = str(abs(hash(str(ctx.home))) % 10**15)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await manager.restore()
        if on_started:
            on_started()
        yield
        await manager.shutdown()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.manager = manager

    @app.middleware("http")
    async def guard(request: Request, call_next):
        sent = path = request.scope["path"]
        if len(path) > 1 and path.endswith("/"):
            # Databricks answers `/api/2.0/serving-endpoints/` as without the slash; MLflow's
            # Databricks deployment client sends it for create and list.
            path = request.scope["path"] = path.rstrip("/") or "/"
        refused = refusal(request, token)
        if refused is not None:
            return refused
        if path.startswith("/.well-known/"):
            return await call_next(request)
        entry = None
        if ctx.fake and not path.startswith("/_fake/"):
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            entry = faults.record(request.method, sent, plaintext.masked(body))
        try:
            if path.startswith("/_fake/"):
                pass
            elif path.startswith("/api/"):
                await faults.before("api")
            else:
                await faults.before("invocations")
            response = await call_next(request)
            if entry is not None and not path.startswith(("/_fake/", "/api/")):
                response = faults.stall_body("invocations", response)
        except ApiError as e:
            response = _error(e)
        if entry is not None:
            entry["status"] = response.status_code
        return response

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        return _error(e)

    @app.get("/.well-known/databricks-config")
    async def well_known(request: Request):
        return {"oidc_endpoint": f"{_host(request)}/oidc", "workspace_id": workspace_id}

    # ---- serving-endpoints API -------------------------------------------------------
    @app.post(API)
    async def create(request: Request):
        raw = await _json(request)
        secrets: dict[str, str] = {}
        if isinstance(raw, dict) and "config" in raw:
            raw = dict(raw)
            raw["config"], secrets = plaintext.take(str(raw.get("name")), raw["config"])
        body = validate_create(raw)
        await manager.create(body, creator=_creator(request))
        plaintext.store(ctx.home, secrets)
        lines = notices.endpoint_notices(body)
        manager.tell(body["name"], lines)
        return _with_warnings(manager.view(body["name"], _host(request)), lines)

    @app.get(API)
    async def list_endpoints(request: Request):
        return {"endpoints": manager.list(_host(request))}

    @app.get(API + "/{name}")
    async def get(name: str, request: Request):
        return manager.view(name, _host(request))

    @app.delete(API + "/{name}")
    async def delete(name: str):
        await manager.delete(name)
        return {}

    @app.put(API + "/{name}/config")
    async def update_config(name: str, request: Request):
        body, secrets = plaintext.take(name, await _json(request))
        config = validate_update(name, body, manager.record_to_change(name, "updated"))
        await manager.update_config(name, config)
        plaintext.store(ctx.home, secrets)
        lines = notices.config_notices(config)
        manager.tell(name, lines)
        return _with_warnings(manager.view(name, _host(request)), lines)

    @app.put(API + "/{name}/ai-gateway")
    async def put_ai_gateway(name: str, request: Request):
        body = await _json(request)
        gateway = validate_ai_gateway(name, body, manager.record_to_change(name, "updated"))
        answer = await manager.put_ai_gateway(name, gateway)
        lines = notices.gateway_notices(gateway)
        manager.tell(name, lines)
        return _with_warnings(answer, lines)

    @app.patch(API + "/{name}/notifications")
    async def patch_notifications(name: str, request: Request):
        body = await _json(request)
        value = validate_notifications(name, body, manager.record_to_change(name, "updated"))
        answer = await manager.put_notifications(name, value)
        lines = notices.endpoint_notices({"email_notifications": value})
        manager.tell(name, lines)
        return _with_warnings(answer, lines)

    @app.patch(API + "/{name}/tags")
    async def patch_tags(name: str, request: Request):
        body = await _json(request)
        if not isinstance(body, dict):
            raise invalid("request body: must be a JSON object")
        add = body.get("add_tags") or []
        # the API's field is delete_tags (databricks-sdk PatchServingEndpointTags / serving_endpoints.patch
        # sends it); delete_keys, an older name here, is still read
        field = "delete_tags" if "delete_tags" in body else "delete_keys"
        delete = body.get(field) or []
        # a list each (a number, or a string iterated as its characters, was a 500 or a silent change)
        if not isinstance(add, list) or not all(isinstance(t, dict) and isinstance(t.get("key"), str) for t in add):
            raise invalid(f"add_tags: {add!r} is not allowed; a list of {{key, value}} objects")
        if not isinstance(delete, list) or not all(isinstance(k, str) for k in delete):
            raise invalid(f"{field}: {delete!r} is not allowed; a list of tag keys")
        return {"tags": await manager.patch_tags(name, add, delete)}

    @app.get(API + "/{name}/served-models/{entity}/build-logs")
    async def build_logs(name: str, entity: str):
        return {"logs": manager.runner_for_logs(name, entity).logs()}

    @app.get(API + "/{name}/served-models/{entity}/logs")
    async def logs(name: str, entity: str):
        return {"logs": manager.runner_for_logs(name, entity).logs()}

    # ---- invocations -----------------------------------------------------------------
    async def _invoke(name: str, body: object, request: Request, served: str | None = None) -> JSONResponse | StreamingResponse:
        check_route(request, name, manager.store.get(name))  # route-optimized: only through the data plane
        if not isinstance(body, dict):
            raise invalid("request body: must be a JSON object")
        if "messages" in body or not any(k in body for k in DATAFRAME_KEYS):
            validate_chat(body)
            if check_stream(body) and not faults.faults.stream_as_json:
                if served is not None:
                    raise invalid("stream: a served model's own invocations URL answers whole completions here")
                return await _stream(name, body, request)
        elif body.get("stream") is not None and body.get("stream") is not False:
            raise invalid(f"stream: {body['stream']!r} is not allowed for a dataframe input; only chat bodies (messages) stream")
        faults.enter()
        try:
            answer, entity = await manager.invoke(name, body, user=_bearer(request), served=served)
        finally:
            faults.leave()
        return JSONResponse(answer, headers={"served-model-name": entity})

    async def _stream(name: str, body: dict, request: Request) -> StreamingResponse:
        """``stream: true``: chat.completion.chunk events, then ``data: [DONE]`` (streaming.py)."""
        upstream = {k: v for k, v in body.items() if k != "stream_options"}
        faults.enter()
        try:
            chunks, entity = await manager.stream(name, upstream, user=_bearer(request))
        except BaseException:
            faults.leave()
            raise

        async def events():
            try:
                async for part in encode(with_usage_chunk(chunks) if include_usage(body) else chunks):
                    yield part
            finally:
                await chunks.aclose()
                faults.leave()

        return StreamingResponse(events(), media_type=MEDIA_TYPE, headers={"served-model-name": entity, **STREAM_HEADERS})

    @app.post("/serving-endpoints/chat/completions")
    async def chat_completions(request: Request):
        body = await _json(request)
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            raise invalid("model: the endpoint name is required in the body")
        name = body["model"]
        return await _invoke(name, {k: v for k, v in body.items() if k != "model"}, request)

    @app.post("/serving-endpoints/{name}/invocations")
    async def invocations(name: str, request: Request):
        return await _invoke(name, await _json(request), request)

    # One served entity whatever the traffic split (Databricks docs, "Query individual models
    # behind an endpoint": POST /serving-endpoints/{name}/served-models/{served-model}/invocations).
    @app.post("/serving-endpoints/{name}/served-models/{entity}/invocations")
    async def served_model_invocations(name: str, entity: str, request: Request):
        return await _invoke(name, await _json(request), request, served=entity)

    # ---- fake admin ------------------------------------------------------------------
    if ctx.fake:

        @app.post("/_fake/faults")
        async def set_faults(request: Request):
            body = await _json(request)
            if not isinstance(body, dict):
                raise invalid("faults: must be a JSON object")
            return faults.set(body)

        @app.get("/_fake/requests")
        async def requests_():
            return {"requests": faults.recorded}

        @app.post("/_fake/reset")
        async def reset():
            faults.reset()
            return {}

    # ---- ai_query in SQL statements: the invocation path above, without HTTP -------------
    def endpoint_kind(name: str) -> str | None:
        """What ``name`` serves, as ai_query tells endpoints apart: foundation, external or custom."""
        if name == FOUNDATION_ENDPOINT:
            return "foundation"
        rec = manager.store.get(name)
        if rec is None:
            return None
        entities = (rec.get("config") or rec.get("pending_config") or {}).get("served_entities") or []
        if entities and all(e.get("external_model") for e in entities):
            return "external"
        if entities and all(e.get("foundation_model") for e in entities):
            return "foundation"
        return "custom"

    async def invoke_for_sql(name: str, body: dict, user: str) -> dict:
        """One row of an ai_query call: the fake's faults, the chat checks, routing, rate limits and logging
        an HTTP invocation gets (recorded, on the fake, as the invocation a warehouse sends)."""
        entry = faults.record("POST", f"/serving-endpoints/{name}/invocations", body) if ctx.fake else None
        if entry is not None:
            entry["via"] = "ai_query"
        try:
            await faults.before("invocations")
            validate_chat(body)
            faults.enter()
            try:
                answer, _ = await manager.invoke(name, body, user=user)
            finally:
                faults.leave()
        except ApiError as e:
            if entry is not None:
                entry["status"] = e.status
            raise
        if entry is not None:
            entry["status"] = 200
        return answer

    app.state.sql_invoker = sql_statements.ai_query.Invoker(endpoint_kind, invoke_for_sql)

    # ---- identity, Unity Catalog namespaces, secret scopes (read by preflight) ----------
    for add_routes in (identity.routes, unity_catalog.routes, secret_scopes.routes, sql_statements.routes):
        add_routes(app, ctx)
    oauth.routes(app, token)

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def unknown(path: str, request: Request):
        return _error(ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{request.method} /{path}'"))

    return app


def _with_warnings(answer: dict, lines: list[str]) -> dict:
    """The answer, with ``warnings`` (what the local workspace does not apply) when any."""
    return {**answer, "warnings": lines} if lines else answer


def _creator(request: Request) -> str:
    return "local-user@localhost"
