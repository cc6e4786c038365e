"""Who is calling: ``GET /api/2.0/preview/scim/v2/Me`` as Databricks answers it.

The workspace has one user (the holder of its token): ``local-user@localhost``, in the
``users`` group, as the creator of every endpoint. The body is the SCIM ``User`` that
databricks-sdk's ``iam.User.from_dict`` reads (``userName``, ``displayName``, ``emails``,
``groups``, ``schemas``); the header ``X-Databricks-Org-Id`` as the Databricks CLI's test
server sends it (databricks/cli libs/testserver/handlers.go).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

USER_NAME = "local-user@localhost"
USER_ID = "1000000000000001"
GROUPS = ("users",)
ORG_ID = "900800700600"


def me() -> dict:
    """The SCIM body of the current user."""
    return {
        "id": USER_ID,
        "userName": USER_NAME,
        "displayName": "Local User",
        "active": True,
        "emails": [{"value": USER_NAME, "type": "work", "primary": True}],
        "name": {"givenName": "Local", "familyName": "User"},
        "groups": [
            {"display": g, "value": str(1000 + i), "$ref": f"Groups/{1000 + i}", "type": "direct"} for i, g in enumerate(GROUPS)
        ],
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:workspace:2.0:User"],
    }


def routes(app: FastAPI, ctx: object) -> None:
    """Register ``GET /api/2.0/preview/scim/v2/Me``."""

    @app.get("/api/2.0/preview/scim/v2/Me")
    async def current_user():
        return JSONResponse(me(), headers={"X-Databricks-Org-Id": ORG_ID})
