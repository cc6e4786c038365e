"""Apply a deploy plan through databricks-sdk, then wait as the Databricks CLI does.

:func:`deploy` plans (:mod:`llmops_nb.endpoints.plan`), refuses an immutable change before
any write unless ``recreate`` is set (then ``DELETE`` and ``POST``, as the CLI's
"Recreated" does), writes ``tags`` -> ``ai_gateway`` -> ``config`` and waits: for READY
after a create or a config update (an UPDATE_FAILED then is :class:`DeployFailed`); after
tag or gateway writes only, for READY with no update in progress, accepting an earlier
failed update when the endpoint serves the desired config (that is how a deploy of the
last good config recovers an endpoint whose last update failed).

The create, config, ai-gateway and notifications writes send the SDK's own body, path and
headers through ``w.api_client.do`` and keep the answer's ``warnings`` (what the local
workspace accepts but does not apply, one line per field; Databricks never sends the key) in
:attr:`DeployResult.warnings`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmops_nb.endpoints import plan as planning
from llmops_nb.endpoints.events import POLLED, WRITTEN, DeployEvent
from llmops_nb.endpoints.ops import endpoint_url, get_endpoint, state_of
from llmops_nb.endpoints.plan import (
    AI_GATEWAY,
    CONFIG,
    CREATE,
    DELETE,
    DISABLE_INFERENCE_TABLE,
    EMAIL_NOTIFICATIONS,
    TAGS,
    TELEMETRY,
)
from llmops_nb.endpoints.waits import FAILED_UPDATES, wait_not_updating, wait_ready
from llmops_nb.errors import DeployTimeout, EndpointError

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

    from llmops_nb.config.endpoint import EndpointConfig


@dataclass(frozen=True)
class DeployResult:
    """What :func:`deploy` did and where the endpoint now stands."""

    name: str
    action: str  # created | recreated | updated | unchanged
    writes: tuple[str, ...]
    ready: str
    config_update: str
    endpoint_url: str
    config_hash: str
    served_entities: tuple[str, ...] = field(default=())
    notes: tuple[str, ...] = field(default=())
    # what the workspace accepted but does not apply (the local workspace's ``warnings`` key)
    warnings: tuple[str, ...] = field(default=())

    def messages(self) -> list[str]:
        """One line per warning (``warning: ...``) then per note (``note: ...``), for printing."""
        return [f"warning: {line}" for line in self.warnings] + [f"note: {line}" for line in self.notes]


# --------------------------------------------------------------------------- typed bodies


def _typed(cls_name: str, body: dict[str, Any], where: str) -> Any:
    """``body`` as the SDK dataclass; an error if the installed SDK would drop part of it."""
    from databricks.sdk import version
    from databricks.sdk.service import serving

    obj = getattr(serving, cls_name).from_dict(body)
    lost = _dropped(body, obj.as_dict())
    if lost:
        raise EndpointError(
            f"{where}.{lost}: not supported by the installed databricks-sdk {version.__version__}; upgrade databricks-sdk"
        )
    return obj


def _dropped(sent: Any, kept: Any, path: str = "") -> str | None:
    """The first path present in ``sent`` and missing (or changed to None) in ``kept``."""
    if isinstance(sent, dict):
        for key, value in sent.items():
            if value is None:
                continue
            if not isinstance(kept, dict) or kept.get(key) is None:
                return f"{path}.{key}".lstrip(".")
            found = _dropped(value, kept[key], f"{path}.{key}")
            if found:
                return found
    elif isinstance(sent, list) and isinstance(kept, list):
        for i, (s, k) in enumerate(zip(sent, kept)):
            found = _dropped(s, k, f"{path}[{i}]")
            if found:
                return found
    return None


def _disabled_table_gateway(current: dict[str, Any]) -> dict[str, Any]:
    """The current gateway with its inference table disabled, location kept (the first PUT of
    disable-then-set: databricks-sdk ``AiGatewayInferenceTableConfig`` docstrings)."""
    from llmops_nb.endpoints.normalize import input_fields

    gateway = {k: v for k, v in (current.get("ai_gateway") or {}).items() if k in input_fields("AiGatewayConfig")}
    gateway["inference_table_config"] = {**gateway.get("inference_table_config", {}), "enabled": False}
    return gateway


# --------------------------------------------------------------------------- writes


def _kwargs_for(method: Any, body: dict[str, Any], where: str) -> dict[str, Any]:
    """``body`` as keyword arguments of an SDK method, each typed as its annotation says
    (a dataclass, a list of dataclasses, or a plain value); one line for what it lacks."""
    import typing

    hints = typing.get_type_hints(method)
    kwargs: dict[str, Any] = {}
    for key, value in body.items():
        if value is None:
            continue
        if key not in hints:
            raise EndpointError(
                f"{where}.{key}: not supported by the installed databricks-sdk's {method.__name__}; upgrade databricks-sdk"
            )
        hint = hints[key]
        args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        inner = typing.get_args(args[0])[0] if typing.get_origin(args[0]) is list else args[0]
        if not hasattr(inner, "from_dict"):
            kwargs[key] = value
        elif isinstance(value, list):
            kwargs[key] = [_typed(inner.__name__, item, f"{where}.{key}[{i}]") for i, item in enumerate(value)]
        else:
            kwargs[key] = _typed(inner.__name__, value, f"{where}.{key}")
    return kwargs


SERVING_ENDPOINTS = "/api/2.0/serving-endpoints"


def _sdk_body(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The JSON body the SDK method builds from these typed arguments (``as_dict`` each dataclass)."""

    def plain(value: Any) -> Any:
        return value.as_dict() if hasattr(value, "as_dict") else value

    return {
        key: [plain(v) for v in value] if isinstance(value, list) else plain(value)
        for key, value in kwargs.items()
        if value is not None
    }


def _send(w: WorkspaceClient, http_method: str, path: str, sdk_method: Any, body: dict[str, Any], where: str) -> list[str]:
    """Send ``body`` as ``sdk_method`` would (typed and checked, same path and headers:
    databricks-sdk ``service/serving.py``) and return the answer's ``warnings`` lines.

    The SDK's typed return drops unknown keys, hence the raw call; errors are the SDK's own
    (``ApiClient.do`` raises them), so a 409 still reads as ``ResourceConflict``.
    """
    kwargs = _kwargs_for(sdk_method, body, where)
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    workspace_id = getattr(w.config, "workspace_id", None)
    if workspace_id:
        headers["X-Databricks-Workspace-Id"] = workspace_id
    answer = w.api_client.do(http_method, path, body=_sdk_body(kwargs), headers=headers)
    found = answer.get("warnings") if isinstance(answer, dict) else None
    return [str(line) for line in found] if isinstance(found, list) else []


def _write(
    w: WorkspaceClient, cfg: EndpointConfig, change: str, current: dict[str, Any] | None, timeout: float = 1200
) -> list[str]:
    """Make one planned write; the workspace's warning lines about it (none from Databricks)."""
    api = type(w.serving_endpoints)
    at = f"{SERVING_ENDPOINTS}/{cfg.name}"
    if change == CREATE:
        return _send(w, "POST", SERVING_ENDPOINTS, api.create, cfg.to_databricks_body(), "endpoint")
    if change == TAGS:
        from databricks.sdk.service import serving

        add, delete = planning.tag_changes(dict(cfg.tags or {}), (current or {}).get("tags"))
        w.serving_endpoints.patch(
            name=cfg.name,
            add_tags=[serving.EndpointTag(key=k, value=v) for k, v in add.items()] or None,
            delete_tags=delete or None,
        )
        return []
    if change in (DISABLE_INFERENCE_TABLE, AI_GATEWAY):
        # No ai_gateway in the config: every argument None, an empty `{}` PUT clears the gateway
        # (the CLI's updateAiGateway with a nil AiGateway).
        gateway = (
            _disabled_table_gateway(current or {})
            if change == DISABLE_INFERENCE_TABLE
            else cfg.to_databricks_body().get("ai_gateway") or {}
        )
        return _send(w, "PUT", f"{at}/ai-gateway", api.put_ai_gateway, gateway, "ai_gateway")
    if change == CONFIG:
        core = {k: v for k, v in cfg.to_databricks_body()["config"].items() if k != "name"}
        return _send(w, "PUT", f"{at}/config", api.update_config, core, "config")
    if change == EMAIL_NOTIFICATIONS:
        body = {"email_notifications": cfg.to_databricks_body().get("email_notifications") or {}}
        return _send(w, "PATCH", f"{at}/notifications", api.update_notifications, body, "endpoint")
    if change == TELEMETRY:
        # The CLI waits first: "The telemetry API rejects endpoints with an update in progress."
        wait_not_updating(w, cfg.name, timeout=timeout)
        body = {"telemetry_config": cfg.to_databricks_body().get("telemetry_config")}
        w.serving_endpoints.patch_telemetry_config(name=cfg.name, **_kwargs_for(api.patch_telemetry_config, body, "endpoint"))
        return []
    raise ValueError(change)  # pragma: no cover - the plan makes no other write


def _delete_and_wait_gone(w: WorkspaceClient, name: str, *, timeout: float, poll_interval: float) -> None:
    """``DELETE`` the endpoint, then wait until GET no longer finds it (the name is free)."""
    w.serving_endpoints.delete(name)
    deadline = time.monotonic() + timeout
    while get_endpoint(w, name) is not None:
        if time.monotonic() >= deadline:
            raise DeployTimeout(f"endpoint {name}: still there {timeout:.0f} s after DELETE")
        time.sleep(poll_interval)


# --------------------------------------------------------------------------- deploy


def deploy(
    w: WorkspaceClient,
    cfg: EndpointConfig,
    *,
    wait: bool = True,
    timeout: float = 1200,
    poll_interval: float = 1.0,
    progress: bool = True,
    max_conflicts: int = 10,
    recreate: bool = False,
    on_event: Callable[[DeployEvent], None] | None = None,
    before_writes: Callable[[dict[str, Any] | None], None] | None = None,
) -> DeployResult:
    """Create or update the endpoint described by ``cfg``, idempotently, and wait for READY.

    Every ``entity_version`` must be resolved (see ``EndpointConfig.with_resolved_versions``).
    The same config twice makes no write call; a changed config makes one call per changed
    part, in the order tags, ai_gateway, config; an update that meets another update in
    progress waits for it, re-plans, then applies. A change to an immutable field raises
    :class:`~llmops_nb.endpoints.plan.ImmutableChange` before any write, unless ``recreate``:
    then the endpoint is deleted and created again from ``cfg``.

    ``on_event`` gets a ``written`` :class:`DeployEvent` once the writes are made, then a
    ``polled`` one at each state read while waiting. ``before_writes`` is called with the
    endpoint as the plan read it (None: none yet) when the plan has writes, before the first one:
    it may raise to refuse (from the same GET, no extra read).
    """
    from databricks.sdk.errors import ResourceAlreadyExists, ResourceConflict

    writes: list[str] = []
    warnings: list[str] = []
    conflicts = 0
    while True:
        current = get_endpoint(w, cfg.name)
        if current is not None and state_of(current)[1] == "IN_PROGRESS":
            current = wait_not_updating(w, cfg.name, timeout=timeout, poll_interval=poll_interval)
        plan = planning.make_plan(cfg, current)
        if plan.immutable and not recreate:
            raise plan.refusal(cfg.name)
        if before_writes is not None and plan.writes:
            before_writes(current)
        try:
            if plan.immutable:
                _delete_and_wait_gone(w, cfg.name, timeout=timeout, poll_interval=poll_interval)
                writes.append(DELETE)
                plan, current = planning.Plan((CREATE,)), None
            for change in plan.writes:
                warnings += [line for line in _write(w, cfg, change, current, timeout) if line not in warnings]
                writes.append(change)
            break
        except (ResourceConflict, ResourceAlreadyExists):
            # Someone else is updating (or just created) the endpoint: wait, then re-plan.
            conflicts += 1
            if conflicts > max_conflicts:
                raise
            wait_not_updating(w, cfg.name, timeout=timeout, poll_interval=poll_interval)
    rolled_out = CREATE in writes or CONFIG in writes
    if DELETE in writes:
        action = "recreated"
    else:
        action = "created" if CREATE in writes else ("updated" if writes else "unchanged")

    def polled(found: dict[str, Any]) -> None:
        if on_event is not None:
            on_event(DeployEvent(POLLED, cfg.name, *state_of(found), action))

    if on_event is not None:
        on_event(DeployEvent(WRITTEN, cfg.name, action=action))
    endpoint = (
        wait_ready(
            w,
            cfg.name,
            timeout=timeout,
            poll_interval=poll_interval,
            progress=progress,
            # a create or config update is IN_PROGRESS right after the call
            first_poll_after=poll_interval if rolled_out else 0.0,
            accept_failed_update=not rolled_out,
            on_poll=polled,
        )
        if wait
        else get_endpoint(w, cfg.name) or {}
    )
    ready, update = state_of(endpoint)
    notes: tuple[str, ...] = ()
    if update in FAILED_UPDATES and not rolled_out:
        notes = (
            f"the last config update ended {update}; the endpoint serves the desired config "
            f"(config_version {(endpoint.get('config') or {}).get('config_version')}) and is {ready}",
        )
    return DeployResult(
        name=cfg.name,
        action=action,
        writes=tuple(writes),
        ready=ready,
        config_update=update,
        endpoint_url=endpoint_url(w, cfg.name, endpoint),
        config_hash=cfg.config_hash(),
        served_entities=tuple(str(e.get("name")) for e in (endpoint.get("config") or {}).get("served_entities") or []),
        notes=notes,
        warnings=tuple(warnings),
    )
