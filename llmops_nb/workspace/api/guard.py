"""Request guards of the local workspace, checked before anything runs (as a Jupyter server does).

1. ``Host`` must name the loopback address the workspace listens on (``127.0.0.1:PORT``,
   ``localhost:PORT`` or ``[::1]:PORT``): 403 otherwise, which closes the door to DNS
   rebinding (a page of ``evil.example`` resolved to 127.0.0.1 sends ``Host: evil.example``).
2. An ``Origin`` header, when sent, must be the workspace's own origin: 403 otherwise. Browsers
   send it on every cross-site POST (a ``text/plain`` "simple" request needs no CORS
   preflight); databricks-sdk, MLflow, the OpenAI client and curl send none.
3. ``Authorization: Bearer <token>`` (see :mod:`.token`) on every route but
   ``/.well-known/databricks-config``, the discovery document databricks-sdk's ``Config``
   fetches before it authenticates (it holds no data): 401 otherwise, with how to get it.
   ``Bearer <token>:<name>`` is accepted too and names the requester ``<name>``: the AI
   gateway's ``user`` rate limits (and their ``principal``) count per name. The plain token
   is the requester :data:`.token.OWNER`.
"""

from __future__ import annotations

import hmac

from fastapi import Request
from fastapi.responses import JSONResponse

from llmops_nb.workspace.api.oauth import TOKEN_PATH, WELL_KNOWN
from llmops_nb.workspace.api.token import OWNER
from llmops_nb.workspace.apierror import ApiError
from llmops_nb.workspace.serving.views import DATA_PLANE_PREFIX

# the OIDC discovery document and token endpoint authenticate by their own means (api/oauth.py)
OPEN_PATHS = frozenset({"/.well-known/databricks-config", WELL_KNOWN, TOKEN_PATH})
#: The request scope key set for a request that came through the data plane: its token's endpoint id.
DATA_PLANE_ENDPOINT = "llmops.data_plane_endpoint_id"
#: Paths whose requests carry their own credential (a signed, expiring URL) and no token: the
#: presigned downloads of statement results (api/sql_statements.py, EXTERNAL_LINKS).
PRESIGNED_PREFIXES = ("/_presigned/",)
_SHOWN = 80  # characters of a refused header value repeated in the message


def _refused(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error_code": code, "message": message}, status_code=status)


def allowed_hosts(request: Request) -> list[str]:
    """The ``Host`` values this workspace answers: the loopback names with its port."""
    address, port = (request.scope.get("server") or ("127.0.0.1", 0))[:2]
    hosts = [f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"]
    bound = f"[{address}]:{port}" if ":" in str(address) else f"{address}:{port}"
    if bound not in hosts and address not in ("0.0.0.0", "::"):
        hosts.append(bound)  # served on another address on purpose (--host)
    return hosts


def _bearer(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else ""


def authorized(sent: str, token: str) -> bool:
    """True for ``token`` and ``token:<name>`` (constant-time comparison of the token part)."""
    head, rest = sent[: len(token)], sent[len(token) :]
    return hmac.compare_digest(head.encode(), token.encode()) and (rest == "" or (rest.startswith(":") and len(rest) > 1))


def requester(request: Request) -> str:
    """Who sends an authorized request: ``<name>`` of ``Bearer <token>:<name>``, else the owner."""
    return _bearer(request).partition(":")[2] or OWNER


def refusal(request: Request, token: str) -> JSONResponse | None:
    """The refusal of ``request`` (403 Host or Origin, 401 token), or None when it may run."""
    hosts = allowed_hosts(request)
    host = request.headers.get("host", "")
    if host.lower() not in hosts:
        return _refused(
            403,
            "PERMISSION_DENIED",
            f"Host header {host[:_SHOWN]!r} is not allowed; the local workspace answers only {', '.join(hosts)}",
        )
    origin = request.headers.get("origin")
    if origin is not None and origin.lower() not in {f"http://{h}" for h in hosts}:
        return _refused(
            403,
            "PERMISSION_DENIED",
            f"Origin {origin[:_SHOWN]!r} is not allowed; the local workspace refuses "
            f"cross-site requests (only http://{hosts[0]} may send one)",
        )
    path = request.scope["path"]
    issuer = getattr(request.app.state, "oauth", None)
    if path.startswith(DATA_PLANE_PREFIX + "/"):
        return _data_plane(request, issuer)
    if path in OPEN_PATHS or path.startswith(PRESIGNED_PREFIXES) or authorized(_bearer(request), token):
        return None
    if issuer is not None and issuer.valid(_bearer(request), "control") is not None:
        return None  # an OAuth (machine-to-machine) token of this workspace
    return _refused(
        401,
        "UNAUTHENTICATED",
        "Credential was not sent or was of an unsupported type for this API; send "
        "'Authorization: Bearer <token>' with the token `llmops-nb workspace env` prints",
    )


def _data_plane(request: Request, issuer: object) -> JSONResponse | None:
    """A data-plane request: only a data-plane token passes (a PAT or a control-plane token is
    refused, as Databricks refuses them at a route-optimized endpoint's URL); the path becomes the
    invocation route, marked with the token's endpoint id for :func:`check_route`."""
    found = issuer.valid(_bearer(request), "data-plane") if issuer is not None else None  # type: ignore[attr-defined]
    if found is None:
        return _refused(
            401,
            "UNAUTHENTICATED",
            "A route-optimized endpoint's data-plane URL takes only an OAuth token made for it (POST /oidc/v1/token, "
            "grant_type jwt-bearer with the endpoint's data_plane_info.query_info.authorization_details); "
            "a personal access token is refused here",
        )
    request.scope[DATA_PLANE_ENDPOINT] = found.endpoint_id
    request.scope["path"] = request.scope["path"][len(DATA_PLANE_PREFIX) :]
    return None


def check_route(request: Request, name: str, record: dict | None) -> None:
    """403 for a route-optimized endpoint asked at the workspace URL, or a data-plane request
    for another endpoint than its token's (ApiError)."""
    through = request.scope.get(DATA_PLANE_ENDPOINT)
    optimized = bool(record and record.get("route_optimized"))
    if optimized and through is None:
        raise ApiError(
            403,
            "PERMISSION_DENIED",
            f"Endpoint {name} is route-optimized: query it at its endpoint_url (data_plane_info.query_info, "
            "the data plane) with an OAuth token made for it; the workspace URL does not serve it",
        )
    if through is not None and (not optimized or (record or {}).get("id") != through):
        raise ApiError(403, "PERMISSION_DENIED", f"This data-plane token is not for endpoint {name}.")
