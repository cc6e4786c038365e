"""OAuth for route-optimized endpoints: machine-to-machine tokens, and the data-plane token exchange.

Databricks answers a route-optimized endpoint only at its data-plane URL
(``data_plane_info.query_info.endpoint_url`` of its GET) and only with an OAuth token made for
it; a personal access token is refused there. databricks-sdk gets that token as
``ServingEndpointsDataPlaneAPI.query`` does (databricks/sdk/data_plane.py,
``DataPlaneEndpointTokenSource``): ``POST {host}/oidc/v1/token`` with
``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``, the endpoint's
``authorization_details`` and, as ``assertion``, the caller's control-plane OAuth token
(``Config.oauth_token()``, which exists only for OAuth auth types). This module serves:

- ``GET /oidc/.well-known/oauth-authorization-server`` (what ``Config`` discovers from
  ``/.well-known/databricks-config``'s ``oidc_endpoint``);
- ``POST /oidc/v1/token``: ``client_credentials`` (oauth-m2m: HTTP basic auth with client id
  :data:`CLIENT_ID` and the workspace token as the secret) issues a control-plane token; the
  jwt-bearer exchange of such a token (never a PAT) issues a data-plane token for the one
  endpoint its ``authorization_details`` name.

The guard (:mod:`.guard`) accepts control-plane tokens where it accepts the workspace token, and
lets a data-plane token through only at ``/data-plane/...`` paths of its endpoint.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

CLIENT_ID = "llmops-local"  # the service principal of the local workspace (its secret: the token)
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_SECONDS = 3600
WELL_KNOWN = "/oidc/.well-known/oauth-authorization-server"
TOKEN_PATH = "/oidc/v1/token"


@dataclass(frozen=True)
class Issued:
    kind: str  # "control" or "data-plane"
    expires: float
    endpoint_id: str = ""


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


class Issuer:
    """The tokens this workspace issued, in memory (they end with the server, as short-lived ones do)."""

    def __init__(self, workspace_token: str) -> None:
        self.workspace_token = workspace_token
        self._issued: dict[str, Issued] = {}
        self._lock = threading.Lock()

    def _issue(self, kind: str, endpoint_id: str = "") -> dict:
        value = f"{'dpt' if kind == 'data-plane' else 'oat'}-{secrets.token_urlsafe(24)}"
        with self._lock:
            self._issued[value] = Issued(kind, time.time() + TOKEN_SECONDS, endpoint_id)
        return {"access_token": value, "token_type": "Bearer", "expires_in": TOKEN_SECONDS, "scope": "all-apis"}

    def valid(self, token: str, kind: str) -> Issued | None:
        found = self._issued.get(token)
        return found if found is not None and found.kind == kind and found.expires > time.time() else None

    def grant(self, form: dict[str, str], authorization: str) -> JSONResponse | dict:
        grant_type = form.get("grant_type", "")
        if grant_type == "client_credentials":
            client_id, secret = _basic(authorization) or (form.get("client_id", ""), form.get("client_secret", ""))
            if client_id != CLIENT_ID or not hmac.compare_digest(secret.encode(), self.workspace_token.encode()):
                return _oauth_error(
                    401, "invalid_client", f"Client authentication failed: client id {CLIENT_ID}, secret the workspace token"
                )
            return self._issue("control")
        if grant_type == JWT_BEARER:
            if self.valid(form.get("assertion", ""), "control") is None:
                return _oauth_error(
                    400,
                    "invalid_grant",
                    "the assertion must be an OAuth access token of this workspace; a personal access token "
                    "cannot be exchanged for a data-plane token",
                )
            try:
                details = json.loads(form.get("authorization_details") or "")
                path = details[0]["object_path"]
            except (ValueError, TypeError, KeyError, IndexError):
                return _oauth_error(
                    400, "invalid_request", "authorization_details: the endpoint's query_info.authorization_details"
                )
            return self._issue("data-plane", str(path).rsplit("/", 1)[-1])
        return _oauth_error(400, "unsupported_grant_type", f"grant_type {grant_type!r}; client_credentials or {JWT_BEARER}")


def _basic(authorization: str) -> tuple[str, str] | None:
    if authorization[:6].lower() != "basic ":
        return None
    try:
        user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
    except ValueError:
        return None
    return user, password


def routes(app: FastAPI, workspace_token: str) -> None:
    """The OIDC discovery document and token endpoint; ``app.state.oauth`` for the guard."""
    issuer = app.state.oauth = Issuer(workspace_token)

    @app.get(WELL_KNOWN)
    async def discovery(request: Request):
        host = str(request.base_url).rstrip("/")
        return {
            "issuer": f"{host}/oidc",
            "authorization_endpoint": f"{host}/oidc/v1/authorize",
            "token_endpoint": f"{host}{TOKEN_PATH}",
            "grant_types_supported": ["client_credentials", JWT_BEARER],
        }

    @app.post(TOKEN_PATH)
    async def token(request: Request):
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))  # x-www-form-urlencoded
        return issuer.grant(form, request.headers.get("authorization", ""))
