"""Waiting on a serving endpoint: until no update runs, or until READY."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmops_nb.endpoints.ops import get_endpoint, state_of
from llmops_nb.errors import DeployFailed, DeployTimeout, EndpointError

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

FAILED_UPDATES = ("UPDATE_FAILED", "UPDATE_CANCELED")


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


def wait_not_updating(w: WorkspaceClient, name: str, *, timeout: float = 1200, poll_interval: float = 1.0) -> dict[str, Any]:
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
    accept_failed_update: bool = False,
) -> dict[str, Any]:
    """Wait until ``config_update`` is NOT_UPDATING and ``state.ready`` is READY.

    With ``accept_failed_update`` (no config update of ours is pending: the failed update is
    an earlier one and the endpoint still serves its last good config), a READY endpoint
    whose ``config_update`` is UPDATE_FAILED or UPDATE_CANCELED is returned too.

    Polls at most once per ``poll_interval`` seconds with a progress bar showing the state;
    the first poll comes ``first_poll_after`` seconds after the call (:func:`deploy` passes
    ``poll_interval`` after a create or config update, which cannot be READY at once: the
    average stays at most one GET per ``poll_interval`` while a READY switch is still seen
    within one ``poll_interval``). Raises :class:`DeployFailed` on UPDATE_FAILED/UPDATE_CANCELED and :class:`DeployTimeout`
    when ``timeout`` passes.
    """
    from tqdm.auto import tqdm

    start = time.monotonic()
    with tqdm(total=None, desc=f"endpoint {name}", bar_format="{desc}: {postfix} [{elapsed}]", disable=not progress) as bar:
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
                if accept_failed_update and ready == "READY":
                    return endpoint
                raise _failure(w, endpoint)
            if update == "NOT_UPDATING" and ready == "READY":
                return endpoint
            if polled - start >= timeout:
                raise DeployTimeout(f"endpoint {name}: not READY after {timeout:.0f} s (config_update={update}, ready={ready})")
            time.sleep(max(0.0, poll_interval - (time.monotonic() - polled)))
