"""Fuzzing the chat route of the fake workspace with OpenAI's own chat-completions schema (issue 29).

schemathesis generates request bodies from the operation in openai_spec/chat_completions.json
(OpenAI's openapi.yaml reduced by openai_spec/reduce.py; MIT licence, openai_spec/LICENSE) and
checks every answer: never a server error, and a 200 or a 400 matches its documented schema (the
answer OpenAI's clients expect, with the nullable fields present; Databricks' error body). A fixed
seed and a bounded number of examples keep it deterministic and short; the same operation runs
against the local workspace serving the real GGUF model (marked model, generations capped at 8
tokens: 40 examples, ~30 s); a longer run:
``FUZZ_EXAMPLES=2000 FUZZ_LOCAL_EXAMPLES=500 pytest tests/workspace/test_fuzz_chat.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402  (schemathesis brings hypothesis)
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402
from ws_helpers import core, entity, serve_fake  # noqa: E402

SPEC = Path(__file__).with_name("openai_spec") / "chat_completions.json"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
LOCAL_EXAMPLES = int(os.environ.get("FUZZ_LOCAL_EXAMPLES", "40"))
SEEN: dict[int, int] = {}
LOCAL_SEEN: dict[int, int] = {}


@pytest.fixture(scope="module")
def fuzz_ws(ws):
    return serve_fake(ws, "fuzz")


OPERATION = schemathesis.openapi.from_path(SPEC)["/serving-endpoints/chat/completions"]["POST"]


# the strategy with hypothesis' own @given: schemathesis' pytest plugin does not run under this pytest
@given(case=OPERATION.as_strategy())
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_chat_route_never_fails_and_answers_match_the_schema(fuzz_ws, case) -> None:
    response = case.call_and_validate(
        base_url=fuzz_ws.host,
        headers={"Authorization": f"Bearer {fuzz_ws.token}"},
        checks=[not_a_server_error, response_schema_conformance],
    )
    SEEN[response.status_code] = SEEN.get(response.status_code, 0) + 1
    assert response.status_code in (200, 400), response.text[:300]


def test_the_fuzz_run_answered_some_and_refused_some() -> None:
    """The run above reached both outcomes (a spec that only produced 400s would check little)."""
    if not SEEN:
        pytest.skip("the fuzz test did not run")
    assert SEEN.get(200, 0) > 0 and SEEN.get(400, 0) > 0, SEEN


def _small(case):
    """A drawn case with a short generation (the real model answers every example)."""
    body = case.body if isinstance(case.body, dict) else None
    if body is not None:
        for key in ("max_tokens", "max_completion_tokens"):
            if isinstance(body.get(key), int) and not isinstance(body.get(key), bool):
                body[key] = max(1, min(body[key], 8))
        if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
            body["max_tokens"] = 8
    return case


@pytest.fixture(scope="module")
def local_ws(tmp_path_factory):
    pytest.importorskip("llama_cpp")
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    from llmops_nb.models.registry import register_model
    from llmops_nb.workspace import launcher

    tmp = tmp_path_factory.mktemp("fuzz-local")
    uri = f"sqlite:///{tmp}/mlflow.db"
    model = register_model("smollm2-135m-instruct", tracking_uri=uri, registry_uri=uri)
    home = tmp / "ws"
    info = launcher.ensure_running(home, uri)
    try:
        w = WorkspaceClient(config=Config(host=info.host, token=info.token, auth_type="pat", retry_timeout_seconds=300))
        w.serving_endpoints.create_and_wait(name="fuzz", config=core("fuzz", entity(model.name, model.version)))
        yield info
    finally:
        launcher.stop(home)


@pytest.mark.model
@given(case=OPERATION.as_strategy().map(_small))
@settings(max_examples=LOCAL_EXAMPLES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_the_local_workspace_with_the_real_model_never_fails_and_answers_match_the_schema(local_ws, case) -> None:
    response = case.call_and_validate(
        base_url=local_ws.host,
        headers={"Authorization": f"Bearer {local_ws.token}"},
        checks=[not_a_server_error, response_schema_conformance],
        timeout=120,
    )
    LOCAL_SEEN[response.status_code] = LOCAL_SEEN.get(response.status_code, 0) + 1
    assert response.status_code in (200, 400), response.text[:300]
