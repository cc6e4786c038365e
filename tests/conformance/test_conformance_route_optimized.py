"""Conformance: a route-optimized endpoint answers only at its data-plane URL, only to an OAuth token
made for it (databricks-sdk-py serving.py: ServingEndpointDetailed.endpoint_url / data_plane_info,
ServingEndpointsDataPlaneAPI.query), and our chat and chat_stream go there."""

from __future__ import annotations

import pytest
from conformance_steps import API, create
from conformance_targets import FAKE, LOCAL, Target

from llmops_nb.chat.client import chat, chat_stream
from llmops_nb.errors import QueryError


@pytest.mark.targets(
    FAKE,
    LOCAL,
    reason="route optimization serves custom and foundation models (billed compute for many minutes) and needs an "
    "OAuth service principal; the live run creates external-model endpoints only",
)
def test_route_optimized_endpoint_only_at_its_data_plane_with_oauth(target: Target, names) -> None:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    from llmops_nb.workspace.api.oauth import CLIENT_ID

    name = names("ro")
    ep = create(target, name, target.registered_entity(), route_optimized=True)
    info = ep["data_plane_info"]["query_info"]
    assert ep["route_optimized"] is True and ep["endpoint_url"] == info["endpoint_url"] and info["authorization_details"]
    pat = target.client()
    refused = target.http("POST", f"/serving-endpoints/{name}/invocations", {"messages": [{"role": "user", "content": "hi"}]})
    assert refused.status_code == 403, refused.text  # the workspace URL does not serve it
    with pytest.raises(QueryError, match="is route-optimized: its data-plane URL takes only an OAuth token"):
        chat(pat, name, "Say hello.", max_tokens=8)
    m2m = WorkspaceClient(
        config=Config(host=target.host, client_id=CLIENT_ID, client_secret=target.token(), auth_type="oauth-m2m")
    )
    assert chat(m2m, name, "Say hello.", max_tokens=8).content
    stream = chat_stream(m2m, name, "Say hello.", max_tokens=8)
    assert "".join(stream) == stream.result.content and stream.result.content
    assert target.http("GET", f"{API}/{name}").json()["endpoint_url"] == info["endpoint_url"]
