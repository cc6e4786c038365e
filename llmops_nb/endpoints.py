"""Create-or-update, wait for READY, get, list and delete serving endpoints.

One path over databricks-sdk for every workspace (the local one and Databricks):

- :func:`plan_changes` compares a desired :class:`~llmops_nb.config.EndpointConfig` with the
  endpoint as the workspace reports it and says which write calls are needed (none when
  they are equal);
- :func:`deploy` makes those calls (``POST`` when absent, ``PUT .../config``,
  ``PUT .../ai-gateway`` and ``PATCH .../tags`` each only if it changed), waits out an update
  that is already running (409 RESOURCE_CONFLICT), then waits until ``config_update`` is
  NOT_UPDATING **and** ``state.ready`` is READY.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmops_nb.errors import DeployFailed, DeployTimeout, EndpointError

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

    from llmops_nb.config import EndpointConfig

CREATE, CONFIG, AI_GATEWAY, TAGS = "create", "config", "ai_gateway", "tags"
FAILED_UPDATES = ("UPDATE_FAILED", "UPDATE_CANCELED")


@dataclass(frozen=True)
class DeployResult:
    """What :func:`deploy` did and where the endpoint now stands."""

    name: str
    action: str  # created | updated | unchanged
    writes: tuple[str, ...]
    ready: str
    config_update: str
    endpoint_url: str
    config_hash: str
    served_entities: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- comparison


def _subset(desired: Any, actual: Any) -> bool:
    """True when every value in ``desired`` is present and equal in ``actual``."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(
            _subset(v, actual.get(k)) for k, v in desired.items() if v is not None
        )
    if isinstance(desired, list):
        return isinstance(actual, list) and len(desired) == len(actual) and all(
            _subset(d, a) for d, a in zip(desired, actual)
        )
    if isinstance(desired, (int, float)) and not isinstance(desired, bool) and isinstance(actual, (int, float)):
        return float(desired) == float(actual)
    return desired == actual or (actual is not None and str(desired) == str(actual))


def _by_name(entities: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return sorted(entities or [], key=lambda e: str(e.get("name", "")))


def _routes(traffic: dict[str, Any] | None) -> list[dict[str, Any]]:
    return sorted((traffic or {}).get("routes") or [], key=lambda r: str(r.get("served_entity_name", "")))


def config_matches(desired_core: dict[str, Any], current_config: dict[str, Any] | None) -> bool:
    """Whether the served config already equals the desired core config."""
    if not current_config:
        return False
    if not _subset(_by_name(desired_core.get("served_entities")), _by_name(current_config.get("served_entities"))):
        return False
    if desired_core.get("traffic_config"):
        return _subset(_routes(desired_core["traffic_config"]), _routes(current_config.get("traffic_config")))
    return True


def tag_changes(desired: dict[str, str], current: list[dict[str, Any]] | None) -> tuple[dict[str, str], list[str]]:
    """Tags to add (or change) and tag keys to delete."""
    have = {t["key"]: t.get("value") for t in current or []}
    add = {k: v for k, v in desired.items() if have.get(k) != v}
    delete = sorted(k for k in have if k not in desired)
    return add, delete


def plan_changes(cfg: EndpointConfig, current: dict[str, Any] | None) -> list[str]:
    """The write calls needed to bring ``current`` (``ServingEndpointDetailed.as_dict()``) to ``cfg``."""
    if current is None:
        return [CREATE]
    changes: list[str] = []
    if not config_matches(cfg.core_config_body(), current.get("config")):
        changes.append(CONFIG)
    gateway = cfg.ai_gateway_body()
    if gateway is not None and not _subset(gateway, current.get("ai_gateway") or {}):
        changes.append(AI_GATEWAY)
    add, delete = tag_changes(dict(cfg.tags or {}), current.get("tags"))
    if add or delete:
        changes.append(TAGS)
    return changes


# --------------------------------------------------------------------------- reads


def get_endpoint(w: WorkspaceClient, name: str) -> dict[str, Any] | None:
    """The endpoint's detailed view as a dict, or None when it does not exist."""
    from databricks.sdk.errors import NotFound

    try:
        return w.serving_endpoints.get(name).as_dict()
    except NotFound:
        return None


def list_endpoints(w: WorkspaceClient) -> list[dict[str, Any]]:
    """Every endpoint of the workspace (summary view)."""
    return [e.as_dict() for e in w.serving_endpoints.list()]


def delete_endpoint(w: WorkspaceClient, name: str) -> None:
    """Delete an endpoint (locally this also stops its scoring servers)."""
    w.serving_endpoints.delete(name)


def endpoint_url(w: WorkspaceClient, name: str) -> str:
    """The full invocation URL of an endpoint on this workspace."""
    return f"{(w.config.host or '').rstrip('/')}/serving-endpoints/{name}/invocations"


def state_of(endpoint: dict[str, Any]) -> tuple[str, str]:
    """``(ready, config_update)`` of an endpoint dict."""
    state = endpoint.get("state") or {}
    return str(state.get("ready", "NOT_READY")), str(state.get("config_update", "NOT_UPDATING"))


def _failed_entity(endpoint: dict[str, Any]) -> tuple[str, str]:
    for section in ("pending_config", "config"):
        for entity in (endpoint.get(section) or {}).get("served_entities") or []:
            st = entity.get("state") or {}
            if "FAILED" in str(st.get("deployment", "")) or "ABORTED" in str(st.get("deployment", "")):
                return str(entity.get("name")), str(st.get("deployment_state_message") or st.get("deployment"))
    pending = (endpoint.get("pending_config") or {}).get("served_entities") or []
    name = pending[0].get("name") if pending else "unknown"
    return str(name), "no state message was reported"


def _failure(w: WorkspaceClient, endpoint: dict[str, Any]) -> DeployFailed:
    name = endpoint.get("name")
    _, update = state_of(endpoint)
    entity, message = _failed_entity(endpoint)
    host = (w.config.host or "").rstrip("/")
    return DeployFailed(
        f"endpoint {name}: config update ended {update}; served entity {entity} failed: {message}. "
        f"Build logs: `llmops-nb endpoints logs {name} {entity}` "
        f"({host}/api/2.0/serving-endpoints/{name}/served-models/{entity}/build-logs)"
    )


# --------------------------------------------------------------------------- waits


def wait_not_updating(
    w: WorkspaceClient, name: str, *, timeout: float = 1200, poll_interval: float = 1.0
) -> dict[str, Any]:
    """Wait until no config update is in progress (any outcome); returns the endpoint."""
    deadline = time.monotonic() + timeout
    while True:
        endpoint = get_endpoint(w, name)
        if endpoint is None:
            raise EndpointError(f"endpoint {name} does not exist")
        if state_of(endpoint)[1] != "IN_PROGRESS":
            return endpoint
        if time.monotonic() >= deadline:
            raise DeployTimeout(f"endpoint {name}: an update is still in progress after {timeout:.0f} s")
        time.sleep(poll_interval)


def wait_ready(
    w: WorkspaceClient,
    name: str,
    *,
    timeout: float = 1200,
    poll_interval: float = 1.0,
    progress: bool = True,
    on_poll: Callable[[dict[str, Any]], None] | None = None,
    first_poll_after: float = 0.0,
) -> dict[str, Any]:
    """Wait until ``config_update`` is NOT_UPDATING and ``state.ready`` is READY.

    Polls at most once per ``poll_interval`` seconds with a progress bar showing the state;
    the first poll comes ``first_poll_after`` seconds after the call (:func:`deploy` passes
    ``poll_interval`` after a create or config update, which cannot be READY at once: the
    average stays at most one GET per ``poll_interval`` while a READY switch is still seen
    within one ``poll_interval``). Raises :class:`DeployFailed` on UPDATE_FAILED/UPDATE_CANCELED and :class:`DeployTimeout`
    when ``timeout`` passes.
    """
    from tqdm.auto import tqdm

    start = time.monotonic()
    with tqdm(
        total=None, desc=f"endpoint {name}", bar_format="{desc}: {postfix} [{elapsed}]", disable=not progress
    ) as bar:
        time.sleep(max(0.0, first_poll_after))
        while True:
            polled = time.monotonic()
            endpoint = get_endpoint(w, name)
            if endpoint is None:
                raise EndpointError(f"endpoint {name} does not exist")
            ready, update = state_of(endpoint)
            bar.set_postfix_str(f"{update}, {ready}", refresh=True)
            if on_poll:
                on_poll(endpoint)
            if update in FAILED_UPDATES:
                raise _failure(w, endpoint)
            if update == "NOT_UPDATING" and ready == "READY":
                return endpoint
            if polled - start >= timeout:
                raise DeployTimeout(
                    f"endpoint {name}: not READY after {timeout:.0f} s (config_update={update}, ready={ready})"
                )
            time.sleep(max(0.0, poll_interval - (time.monotonic() - polled)))


# --------------------------------------------------------------------------- deploy


def _apply(w: WorkspaceClient, cfg: EndpointConfig, change: str, current: dict[str, Any] | None) -> None:
    from databricks.sdk.service import serving

    if change == CREATE:
        body = cfg.to_databricks_body()
        w.serving_endpoints.create(
            name=cfg.name,
            config=serving.EndpointCoreConfigInput.from_dict(body["config"]),
            ai_gateway=serving.AiGatewayConfig.from_dict(body["ai_gateway"]) if body.get("ai_gateway") else None,
            tags=[serving.EndpointTag.from_dict(t) for t in body.get("tags") or []] or None,
            description=body.get("description"),
        )
    elif change == CONFIG:
        core = serving.EndpointCoreConfigInput.from_dict({"name": cfg.name, **cfg.core_config_body()})
        w.serving_endpoints.update_config(
            name=cfg.name, served_entities=core.served_entities, traffic_config=core.traffic_config
        )
    elif change == AI_GATEWAY:
        gw = serving.AiGatewayConfig.from_dict(cfg.ai_gateway_body() or {})
        w.serving_endpoints.put_ai_gateway(
            name=cfg.name,
            rate_limits=gw.rate_limits,
            usage_tracking_config=gw.usage_tracking_config,
            inference_table_config=gw.inference_table_config,
            guardrails=gw.guardrails,
            fallback_config=gw.fallback_config,
        )
    elif change == TAGS:
        add, delete = tag_changes(dict(cfg.tags or {}), (current or {}).get("tags"))
        w.serving_endpoints.patch(
            name=cfg.name,
            add_tags=[serving.EndpointTag(key=k, value=v) for k, v in add.items()] or None,
            delete_tags=delete or None,
        )


def deploy(
    w: WorkspaceClient,
    cfg: EndpointConfig,
    *,
    wait: bool = True,
    timeout: float = 1200,
    poll_interval: float = 1.0,
    progress: bool = True,
    max_conflicts: int = 10,
) -> DeployResult:
    """Create or update the endpoint described by ``cfg``, idempotently, and wait for READY.

    Every ``entity_version`` must be resolved (see ``EndpointConfig.with_resolved_versions``).
    The same config twice makes no write call; a changed config makes one call per changed
    part; an update that meets another update in progress waits for it, then applies.
    """
    from databricks.sdk.errors import ResourceAlreadyExists, ResourceConflict

    writes: list[str] = []
    conflicts = 0
    while True:
        current = get_endpoint(w, cfg.name)
        if current is not None and state_of(current)[1] == "IN_PROGRESS":
            current = wait_not_updating(w, cfg.name, timeout=timeout, poll_interval=poll_interval)
        pending = [c for c in plan_changes(cfg, current) if c not in writes]
        try:
            for change in pending:
                _apply(w, cfg, change, current)
                writes.append(change)
            break
        except (ResourceConflict, ResourceAlreadyExists):
            # Someone else is updating (or just created) the endpoint: wait, then re-plan.
            conflicts += 1
            if conflicts > max_conflicts:
                raise
            wait_not_updating(w, cfg.name, timeout=timeout, poll_interval=poll_interval)
    # A create or config update is IN_PROGRESS right after the call: the first poll can wait.
    first_poll_after = poll_interval if CREATE in writes or CONFIG in writes else 0.0
    endpoint = (
        wait_ready(w, cfg.name, timeout=timeout, poll_interval=poll_interval, progress=progress,
                   first_poll_after=first_poll_after)
        if wait
        else get_endpoint(w, cfg.name) or {}
    )
    ready, update = state_of(endpoint)
    action = "created" if CREATE in writes else ("updated" if writes else "unchanged")
    return DeployResult(
        name=cfg.name,
        action=action,
        writes=tuple(writes),
        ready=ready,
        config_update=update,
        endpoint_url=endpoint_url(w, cfg.name),
        config_hash=cfg.config_hash(),
        served_entities=tuple(str(e.get("name")) for e in (endpoint.get("config") or {}).get("served_entities") or []),
    )
