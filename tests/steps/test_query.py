"""steps.query's URL and curl line for a route-optimized endpoint: its data-plane URL, a data-plane token."""

from __future__ import annotations

import json
import os
import subprocess

from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.data_plane import DataPlaneTokenSource
from databricks.sdk.service.serving import EndpointCoreConfigInput, ServedEntityInput

from llmops_nb.backends import Backend
from llmops_nb.endpoints.ops import endpoint_url
from llmops_nb.steps.query import curl_command
from llmops_nb.workspace.api.oauth import CLIENT_ID


def test_a_route_optimized_endpoint_is_printed_at_its_data_plane_and_the_curl_works(fake_workspace, tmp_path) -> None:  # noqa: ANN001
    ws = fake_workspace
    w = ws.client()
    for name, optimized in (("q-ro", True), ("q-plain", False)):
        config = EndpointCoreConfigInput(name=name, served_entities=[ServedEntityInput(entity_name="m", entity_version="1")])
        w.serving_endpoints.create_and_wait(name=name, config=config, route_optimized=optimized)
    backend = Backend(kind="local", host=ws.host, token=ws.token, tracking_uri="", registry_uri="", home=ws.home)
    assert endpoint_url(w, "q-plain") == f"{ws.host}/serving-endpoints/q-plain/invocations"
    url = endpoint_url(w, "q-ro")
    assert (
        url
        == w.serving_endpoints.get("q-ro").data_plane_info.query_info.endpoint_url
        != f"{ws.host}/serving-endpoints/q-ro/invocations"
    )
    assert "$(cat " in curl_command(endpoint_url(w, "q-plain"), backend)  # the workspace token file, as before
    line = curl_command(url, backend, "red green", max_tokens=16)
    assert "Bearer $DATABRICKS_DATA_PLANE_TOKEN" in line and f"{ws.host}/oidc/v1/token" in line and ws.token not in line
    m2m = WorkspaceClient(config=Config(host=ws.host, client_id=CLIENT_ID, client_secret=ws.token, auth_type="oauth-m2m"))
    info = m2m.serving_endpoints.get("q-ro").data_plane_info.query_info
    token = DataPlaneTokenSource(ws.host, m2m.config.oauth_token).token(info.endpoint_url, info.authorization_details)
    done = subprocess.run(
        ["bash", "-c", line],
        env={**os.environ, "DATABRICKS_DATA_PLANE_TOKEN": token.access_token},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(done.stdout)["choices"][0]["message"]["content"] == "[m-1] echo: red green", done.stdout
