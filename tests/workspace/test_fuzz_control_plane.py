"""Fuzzing our own serving-endpoints control plane on the fake workspace (issue 29).

The OpenAPI spec is built from the config models (llmops_nb/testing/control_plane_spec.py:
EndpointConfig's pydantic JSON schema in the REST form), not written by hand. schemathesis draws
cases from three strategies: the narrowed spec (one registered entity, so creates and updates
succeed and later reads, tag and gateway changes find an endpoint), the full spec, and the full
spec's negative cases (wrong types, missing fields, bad bytes). Every answer: never a server
error. hypothesis' @given drives it (schemathesis' pytest plugin does not run under this pytest:
see test_fuzz_chat.py). A fixed seed and bounded examples; a longer run: bench/fuzz.py.
"""

from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402  (schemathesis brings hypothesis)
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from ws_helpers import serve_fake  # noqa: E402

from llmops_nb.config.endpoint import CORE_FIELDS, EndpointConfig  # noqa: E402
from llmops_nb.testing.control_plane_spec import API, control_plane_spec  # noqa: E402

NAMES = ("cp-a", "cp-b")
EXAMPLES = int(os.environ.get("FUZZ_CONTROL_EXAMPLES", "300"))
SEEN: dict[tuple[str, int], int] = {}
FULL = schemathesis.openapi.from_dict(control_plane_spec(NAMES))
NARROW = schemathesis.openapi.from_dict(control_plane_spec(NAMES, narrow=True))
CASES = st.one_of(NARROW.as_strategy(), FULL.as_strategy(), FULL.as_strategy(GenerationMode.NEGATIVE))


def test_the_spec_follows_the_config_models() -> None:
    """Every EndpointConfig field is in the create body, the core ones under config (a new field is too)."""
    create = control_plane_spec()["paths"][API]["post"]["requestBody"]["content"]["application/json"]["schema"]
    top = set(create["properties"])
    config = set(create["properties"]["config"]["properties"])
    for field in EndpointConfig.model_fields:
        assert field in (config if field in CORE_FIELDS else top), field
    assert "name" in config and not set(CORE_FIELDS) & top


@given(case=CASES)
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_the_control_plane_never_answers_a_server_error(ws, case) -> None:
    response = case.call_and_validate(
        base_url=ws.host, headers={"Authorization": f"Bearer {ws.token}"}, checks=[not_a_server_error]
    )
    key = (f"{case.method} {case.operation.path}", response.status_code)
    SEEN[key] = SEEN.get(key, 0) + 1
    assert response.status_code < 500, response.text[:300]


def test_the_fuzz_run_changed_endpoints_and_refused_bad_bodies() -> None:
    """The run above created endpoints and changed them (not only 404s and 400s), and refused some."""
    if not SEEN:
        pytest.skip("the fuzz test did not run")
    ok = {route for (route, status), n in SEEN.items() if status == 200 and n}
    assert f"POST {API}" in ok, SEEN
    assert len(ok & {f"PATCH {API}/{{name}}/tags", f"PUT {API}/{{name}}/ai-gateway", f"DELETE {API}/{{name}}"}) >= 2, SEEN
    assert sum(n for (route, status), n in SEEN.items() if status == 400) > 0, SEEN


@pytest.mark.parametrize(
    "body, field",
    [({"add_tags": 12126}, "add_tags"), ({"delete_keys": "team"}, "delete_keys"), ({"add_tags": {"key": "a"}}, "add_tags")],
)
def test_tags_that_are_not_lists_are_400_and_change_nothing(ws, body, field) -> None:
    """Found by the run above: a number for add_tags was a 500; a string for delete_keys deleted its letters' keys."""
    import requests

    name = f"cp-tags-{field}-{type(body[field]).__name__}"
    serve_fake(ws, name)
    url = f"{ws.host}{API}/{name}/tags"
    headers = {"Authorization": f"Bearer {ws.token}"}
    requests.patch(
        url, json={"add_tags": [{"key": "t", "value": "1"}, {"key": "team", "value": "x"}]}, headers=headers, timeout=10
    )
    response = requests.patch(url, json=body, headers=headers, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith(f"{field}: "), response.json()
    tags = requests.get(f"{ws.host}{API}/{name}", headers=headers, timeout=10).json()["tags"]
    assert {t["key"] for t in tags} == {"t", "team"}
