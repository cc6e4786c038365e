"""Where an endpoint is queried: the workspace URL, or a route-optimized endpoint's data plane.

Databricks answers a route-optimized endpoint only at its data-plane URL and only with an OAuth
token made for it (databricks-sdk-py ``service/serving.py``: ``ServingEndpointDetailed.
data_plane_info.query_info`` {``endpoint_url``, ``authorization_details``};
``ServingEndpointsDataPlaneAPI.query`` posts there with a token from
``databricks/sdk/data_plane.py`` ``DataPlaneTokenSource``, which exchanges the client's
control-plane OAuth token, ``Config.oauth_token()``). :func:`route_of` reads that once per client
and endpoint (one GET); :func:`data_plane_auth` gives the ``auth`` hook that sets the data-plane
token on a request. A client that authenticates with a personal access token cannot get one:
that is one :class:`QueryError` line saying what to use instead.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmops_nb.errors import QueryError

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

OAUTH_HINT = (
    "use OAuth: a service principal's DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET (auth_type oauth-m2m), "
    "or `databricks auth login` (a personal access token is refused there)"
)


@dataclass(frozen=True)
class DataPlane:
    """A route-optimized endpoint's query URL and the authorization details its token is made for."""

    url: str
    authorization_details: str


_ROUTES: weakref.WeakKeyDictionary[Any, dict[str, DataPlane | None]] = weakref.WeakKeyDictionary()
_SOURCES: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def route_of(w: WorkspaceClient, endpoint: str) -> DataPlane | None:
    """The endpoint's data plane when it is route-optimized, else None (ask the workspace URL);
    read once per client (a GET the query itself would otherwise fail without)."""
    from databricks.sdk.errors import DatabricksError

    with _LOCK:
        known = _ROUTES.setdefault(w, {})
        if endpoint in known:
            return known[endpoint]
    try:
        ep = w.serving_endpoints.get(endpoint)
    except DatabricksError:  # no such endpoint, or not readable: the query says what is wrong
        return None
    info = ep.data_plane_info.query_info if ep.route_optimized and ep.data_plane_info else None
    plane = DataPlane(info.endpoint_url, info.authorization_details or "") if info and info.endpoint_url else None
    with _LOCK:
        _ROUTES.setdefault(w, {})[endpoint] = plane
    return plane


def data_plane_auth(w: WorkspaceClient, endpoint: str, plane: DataPlane) -> Callable[[Any], Any]:
    """The requests ``auth`` hook with the data-plane token for ``plane`` (exchanged once and
    refreshed by the SDK's token source); QueryError when the client has no OAuth token."""
    from databricks.sdk.data_plane import DataPlaneTokenSource

    with _LOCK:
        source = _SOURCES.get(w)
        if source is None:
            source = _SOURCES[w] = DataPlaneTokenSource(w.config.host, w.config.oauth_token, disable_async=True)
    try:
        token = source.token(plane.url, plane.authorization_details)
    except ValueError as exc:  # Config.oauth_token(): "OAuth tokens are not available for pat authentication"
        raise QueryError(
            f"endpoint {endpoint} is route-optimized: its data-plane URL takes only an OAuth token, and this client "
            f"authenticates with {w.config.auth_type} ({str(exc).splitlines()[0][:120]}); {OAUTH_HINT}"
        ) from None

    def auth(request: Any) -> Any:
        request.headers["Authorization"] = f"{token.token_type} {token.access_token}"
        return request

    return auth
