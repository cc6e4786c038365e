"""chat and chat_stream on a route-optimized endpoint: its data-plane URL with an OAuth token; a PAT client is told what to use."""

from __future__ import annotations

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.service.serving import EndpointCoreConfigInput, ServedEntityInput

from llmops_nb.chat.client import chat, chat_stream
from llmops_nb.errors import QueryError
from llmops_nb.workspace.api.oauth import CLIENT_ID


def _create(w, name: str, **kw) -> None:  # noqa: ANN001
    config = EndpointCoreConfigInput(name=name, served_entities=[ServedEntityInput(entity_name="m", entity_version="1")])
    w.serving_endpoints.create_and_wait(name=name, config=config, **kw)


def test_a_route_optimized_endpoint_is_asked_at_its_data_plane(fake_workspace) -> None:  # noqa: ANN001
    ws = fake_workspace
    _create(ws.client(), "ro-chat", route_optimized=True)
    m2m = WorkspaceClient(config=Config(host=ws.host, client_id=CLIENT_ID, client_secret=ws.token, auth_type="oauth-m2m"))
    ws.reset()
    assert chat(m2m, "ro-chat", "red green", max_tokens=16).content == "[m-1] echo: red green"
    with chat_stream(m2m, "ro-chat", "red green", max_tokens=16) as stream:
        assert "".join(stream) == "[m-1] echo: red green"
    asked = [r["path"] for r in ws.requests() if r["path"].endswith("/invocations")]
    assert asked == ["/data-plane/serving-endpoints/ro-chat/invocations"] * 2
    gets = [r for r in ws.requests() if r["path"] == "/api/2.0/serving-endpoints/ro-chat"]
    assert len(gets) == 1  # the route is read once per client


def test_a_pat_client_gets_one_line_on_a_route_optimized_endpoint(fake_workspace) -> None:  # noqa: ANN001
    w = fake_workspace.client()
    _create(w, "ro-pat", route_optimized=True)
    fake_workspace.reset()
    for call in (lambda: chat(w, "ro-pat", "hi"), lambda: chat_stream(w, "ro-pat", "hi")):
        with pytest.raises(QueryError) as err:
            call()
        message = str(err.value)
        assert message.startswith("endpoint ro-pat is route-optimized: its data-plane URL takes only an OAuth token")
        assert "DATABRICKS_CLIENT_ID" in message and "\n" not in message
    assert not [r for r in fake_workspace.requests() if r["path"].endswith("/invocations")]  # nothing sent
    _create(w, "plain")
    assert chat(w, "plain", "hi").content == "[m-1] echo: hi"  # other endpoints: the workspace URL, the PAT
