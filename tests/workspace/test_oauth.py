"""Route-optimized endpoints on the workspace: answered only at their data-plane URL, only to an OAuth
token made for them (databricks-sdk's own ServingEndpointsDataPlaneAPI against the fake)."""

from __future__ import annotations

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.errors import PermissionDenied
from databricks.sdk.service.serving import ChatMessage, ChatMessageRole
from ws_helpers import core, entity

from llmops_nb.workspace.api.oauth import CLIENT_ID

MESSAGES = [ChatMessage(role=ChatMessageRole.USER, content="hi")]


def _m2m(ws) -> WorkspaceClient:  # noqa: ANN001
    return WorkspaceClient(config=Config(host=ws.host, client_id=CLIENT_ID, client_secret=ws.token, auth_type="oauth-m2m"))


def test_a_route_optimized_endpoint_answers_only_at_its_data_plane_to_an_oauth_token(w, ws) -> None:  # noqa: ANN001
    w.serving_endpoints.create_and_wait(name="ro-1", config=core("ro-1", entity("m", "1")), route_optimized=True)
    w.serving_endpoints.create_and_wait(name="ro-plain", config=core("ro-plain", entity("m", "1")))
    ep = w.serving_endpoints.get("ro-1")
    info = ep.data_plane_info.query_info
    assert ep.endpoint_url == info.endpoint_url and "/data-plane/serving-endpoints/ro-1/invocations" in info.endpoint_url
    assert ep.id in info.authorization_details
    assert w.serving_endpoints.get("ro-plain").data_plane_info is None
    with pytest.raises(PermissionDenied, match="Endpoint ro-1 is route-optimized: query it at its endpoint_url"):
        w.serving_endpoints.query(name="ro-1", messages=MESSAGES)  # the workspace URL, with a PAT
    refused = requests.post(
        info.endpoint_url,
        json={"messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {ws.token}"},
        timeout=10,
    )
    assert refused.status_code == 401 and "a personal access token is refused here" in refused.json()["message"]
    with pytest.raises(ValueError, match="OAuth tokens are not available for pat authentication"):
        w.serving_endpoints_data_plane.query(name="ro-1", messages=MESSAGES)  # the SDK itself needs OAuth
    m2m = _m2m(ws)
    assert m2m.current_user.me().user_name  # an M2M token serves the control plane
    answer = m2m.serving_endpoints_data_plane.query(name="ro-1", messages=MESSAGES)
    assert answer.choices[0].message.content == "[m-1] echo: hi"
    with pytest.raises(PermissionDenied):
        m2m.serving_endpoints.query(name="ro-1", messages=MESSAGES)  # OAuth, but not through the data plane
    assert m2m.serving_endpoints.query(name="ro-plain", messages=MESSAGES).choices  # other endpoints as before


def test_a_data_plane_token_is_for_its_endpoint_only(w, ws) -> None:  # noqa: ANN001
    w.serving_endpoints.create_and_wait(name="ro-a", config=core("ro-a", entity("m", "1")), route_optimized=True)
    w.serving_endpoints.create_and_wait(name="ro-b", config=core("ro-b", entity("m", "1")), route_optimized=True)
    m2m = _m2m(ws)
    a, b = (m2m.serving_endpoints.get(n).data_plane_info.query_info for n in ("ro-a", "ro-b"))
    control = m2m.config.oauth_token().access_token
    exchanged = requests.post(
        f"{ws.host}/oidc/v1/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": control,
            "authorization_details": a.authorization_details,
        },
        timeout=10,
    ).json()["access_token"]
    body = {"messages": [{"role": "user", "content": "hi"}]}
    ok = requests.post(a.endpoint_url, json=body, headers={"Authorization": f"Bearer {exchanged}"}, timeout=10)
    assert ok.status_code == 200, ok.text
    other = requests.post(b.endpoint_url, json=body, headers={"Authorization": f"Bearer {exchanged}"}, timeout=10)
    assert other.status_code == 403 and other.json()["message"] == "This data-plane token is not for endpoint ro-b."
    pat = requests.post(
        f"{ws.host}/oidc/v1/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": ws.token,
            "authorization_details": a.authorization_details,
        },
        timeout=10,
    )
    assert pat.status_code == 400 and pat.json()["error"] == "invalid_grant"  # a PAT is never exchanged
    assert (
        requests.get(
            f"{ws.host}/api/2.0/serving-endpoints/ro-a", headers={"Authorization": f"Bearer {exchanged}"}, timeout=10
        ).status_code
        == 401
    )
