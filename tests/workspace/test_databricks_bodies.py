"""Point 10 of issue 14: the workspace accepts what Databricks accepts, rejects what it rejects.

Real HTTP, the real databricks-sdk; statuses and error codes as the Databricks CLI's test
server answers them (libs/testserver/serving_endpoints.go).
"""

from __future__ import annotations

import pytest
import requests
from databricks.sdk.errors import BadRequest, NotFound, ResourceAlreadyExists
from databricks.sdk.service.serving import (
    AiGatewayInferenceTableConfig,
    EmailNotifications,
    EndpointCoreConfigInput,
    EndpointTag,
    ServedModelInput,
)
from ws_helpers import core, entity, post, ready, wait_until

API = "/api/2.0/serving-endpoints"
OPENAI = {
    "name": "gpt-4o-mini",
    "provider": "openai",
    "task": "llm/v1/chat",
    "openai_config": {"openai_api_key": "{{secrets/scope/key}}"},
}


def _get(ws, name: str) -> dict:
    r = requests.get(f"{ws.host}{API}/{name}", headers={"Authorization": f"Bearer {ws.token}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------- accepted and echoed


def test_route_optimized_email_notifications_and_budget_policy_are_accepted(w, ws):
    notify = EmailNotifications(on_update_failure=["ops@example.com"])
    w.serving_endpoints.create_and_wait(
        name="acc-top",
        config=core("acc-top", entity("m")),
        route_optimized=True,
        budget_policy_id="policy-1",
        email_notifications=notify,
        description="a model",
    )
    ep = w.serving_endpoints.get("acc-top")
    assert ep.route_optimized is True
    assert ep.email_notifications == notify
    assert ep.description == "a model"
    # GET does not populate budget_policy_id on Databricks (CLI resources.yml)
    assert "budget_policy_id" not in _get(ws, "acc-top")
    changed = w.serving_endpoints.update_notifications(
        "acc-top", email_notifications=EmailNotifications(on_update_success=["a@b.c"])
    )
    assert changed.email_notifications.on_update_success == ["a@b.c"]
    assert w.serving_endpoints.get("acc-top").email_notifications.on_update_failure is None


def test_get_always_shows_description_and_route_optimized(w, ws):
    w.serving_endpoints.create(name="acc-plain", config=core("acc-plain", entity("m")))
    body = _get(ws, "acc-plain")
    assert body["description"] == "" and body["route_optimized"] is False


def test_legacy_served_models_are_served_as_entities(w, ws):
    w.serving_endpoints.create_and_wait(
        name="acc-legacy",
        config=EndpointCoreConfigInput(
            name="acc-legacy",
            served_models=[
                ServedModelInput(model_name="m", model_version="3", scale_to_zero_enabled=False, workload_size="Small")
            ],
        ),
    )
    ep = wait_until(w, "acc-legacy", ready)
    assert ep.config.served_entities[0].entity_name == "m"
    assert ep.config.served_entities[0].entity_version == "3"
    assert ep.config.served_entities[0].name == "m-3"
    assert ep.config.served_models[0].model_name == "m"
    assert ep.config.served_models[0].model_version == "3"
    route = ep.config.traffic_config.routes[0]
    assert (route.served_entity_name, route.served_model_name) == ("m-3", "m-3")
    answer = post(ws, "/serving-endpoints/acc-legacy/invocations", {"messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200 and answer.headers["served-model-name"] == "m-3"


def test_legacy_served_models_errors_name_the_legacy_fields(ws):
    r = post(
        ws,
        API,
        {
            "name": "acc-legacy-bad",
            "config": {"served_models": [{"model_name": "m", "model_version": "1", "scale_to_zero_enabled": "maybe"}]},
        },
    )
    assert r.status_code == 400 and "served_models[0].scale_to_zero_enabled" in r.json()["message"]
    both = post(
        ws,
        API,
        {
            "name": "acc-legacy-bad",
            "config": {
                "served_models": [{"model_name": "m", "model_version": "1"}],
                "served_entities": [{"entity_name": "m", "entity_version": "1"}],
            },
        },
    )
    assert both.status_code == 400 and "config.served_models" in both.json()["message"]


def test_routes_by_served_model_name_are_accepted(ws):
    r = post(
        ws,
        API,
        {
            "name": "acc-route-model",
            "config": {
                "served_entities": [
                    {"entity_name": "m", "entity_version": "1", "name": "a"},
                    {"entity_name": "m", "entity_version": "2", "name": "b"},
                ],
                "traffic_config": {
                    "routes": [
                        {"served_model_name": "a", "traffic_percentage": 50},
                        {"served_model_name": "b", "traffic_percentage": 50},
                    ]
                },
            },
        },
    )
    assert r.status_code == 200, r.text
    assert {x["served_entity_name"] for x in r.json()["pending_config"]["traffic_config"]["routes"]} == {"a", "b"}


def test_auto_capture_config_is_stored_and_echoed(w, ws):
    capture = {"catalog_name": "main", "schema_name": "logs", "table_name_prefix": "chat", "enabled": True}
    r = post(
        ws,
        API,
        {
            "name": "acc-capture",
            "config": {"served_entities": [{"entity_name": "m", "entity_version": "1"}], "auto_capture_config": capture},
        },
    )
    assert r.status_code == 200, r.text
    ep = wait_until(w, "acc-capture", ready)
    assert ep.config.auto_capture_config.catalog_name == "main"
    assert ep.config.auto_capture_config.table_name_prefix == "chat"
    bad = post(
        ws,
        API,
        {
            "name": "acc-capture-bad",
            "config": {
                "served_entities": [{"entity_name": "m", "entity_version": "1"}],
                "auto_capture_config": {"enabled": "maybe"},
            },
        },
    )
    assert bad.status_code == 400
    assert "config.auto_capture_config.enabled: 'maybe'" in bad.json()["message"]


def test_bad_extra_fields_are_one_line_naming_the_field(ws):
    for field, value in (("route_optimized", "maybe"), ("email_notifications", ["x"]), ("budget_policy_id", 5)):
        r = post(
            ws,
            API,
            {"name": "acc-bad-extra", field: value, "config": {"served_entities": [{"entity_name": "m", "entity_version": "1"}]}},
        )
        assert r.status_code == 400, (field, r.text)
        message = r.json()["message"]
        assert message.startswith(field) and "\n" not in message
    assert (
        requests.get(f"{ws.host}{API}/acc-bad-extra", timeout=10, headers={"Authorization": f"Bearer {ws.token}"}).status_code
        == 404
    )


# ---------------------------------------------------------------- rejected


def test_duplicate_create_is_409_resource_already_exists(w, ws):
    w.serving_endpoints.create(name="rej-dup", config=core("rej-dup", entity("m")))
    with pytest.raises(ResourceAlreadyExists):
        w.serving_endpoints.create(name="rej-dup", config=core("rej-dup", entity("m")))
    r = post(ws, API, {"name": "rej-dup", "config": {"served_entities": [{"entity_name": "m", "entity_version": "1"}]}})
    assert r.status_code == 409
    assert r.json() == {"error_code": "RESOURCE_ALREADY_EXISTS", "message": "Serving endpoint with name rej-dup already exists"}


def test_writes_to_an_unknown_endpoint_are_404(w):
    with pytest.raises(NotFound) as tags:
        w.serving_endpoints.patch("rej-nobody", add_tags=[EndpointTag(key="k", value="v")])
    assert tags.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(NotFound):
        w.serving_endpoints.put_ai_gateway("rej-nobody")
    with pytest.raises(NotFound):
        w.serving_endpoints.update_config("rej-nobody", served_entities=[entity("m")])
    with pytest.raises(NotFound):
        w.serving_endpoints.update_notifications("rej-nobody")


def test_inference_table_location_changes_only_while_disabled(w, ws):
    w.serving_endpoints.create_and_wait(name="rej-table", config=core("rej-table", entity("m")))
    here = AiGatewayInferenceTableConfig(catalog_name="main", schema_name="logs", table_name_prefix="chat", enabled=True)
    w.serving_endpoints.put_ai_gateway("rej-table", inference_table_config=here)
    moved = AiGatewayInferenceTableConfig(catalog_name="other", schema_name="logs", table_name_prefix="chat", enabled=True)
    with pytest.raises(BadRequest) as err:
        w.serving_endpoints.put_ai_gateway("rej-table", inference_table_config=moved)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "ai_gateway.inference_table_config.catalog_name: 'other'" in str(err.value)
    assert w.serving_endpoints.get("rej-table").ai_gateway.inference_table_config == here
    # disable first, then set the new location: both accepted
    off = AiGatewayInferenceTableConfig(catalog_name="main", schema_name="logs", table_name_prefix="chat", enabled=False)
    w.serving_endpoints.put_ai_gateway("rej-table", inference_table_config=off)
    w.serving_endpoints.put_ai_gateway("rej-table", inference_table_config=moved)
    assert w.serving_endpoints.get("rej-table").ai_gateway.inference_table_config == moved


def test_legacy_inference_table_location_cannot_move_while_enabled(w, ws):
    capture = {"catalog_name": "main", "schema_name": "logs", "enabled": True}
    body = {"served_entities": [{"entity_name": "m", "entity_version": "1"}], "auto_capture_config": capture}
    assert post(ws, API, {"name": "rej-capture", "config": body}).status_code == 200
    wait_until(w, "rej-capture", ready)
    headers = {"Authorization": f"Bearer {ws.token}"}
    r = requests.put(
        f"{ws.host}{API}/rej-capture/config",
        headers=headers,
        timeout=10,
        json={**body, "auto_capture_config": {**capture, "schema_name": "elsewhere"}},
    )
    assert r.status_code == 400
    assert r.json()["message"].startswith("config.auto_capture_config.schema_name: 'elsewhere'")
    assert _get(ws, "rej-capture")["state"]["config_update"] == "NOT_UPDATING"


def test_an_endpoint_cannot_switch_between_registered_and_external_models(w, ws):
    w.serving_endpoints.create_and_wait(name="rej-kind", config=core("rej-kind", entity("m")))
    headers = {"Authorization": f"Bearer {ws.token}"}
    r = requests.put(
        f"{ws.host}{API}/rej-kind/config", headers=headers, timeout=10, json={"served_entities": [{"external_model": OPENAI}]}
    )
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "cannot switch between registered and external models" in r.json()["message"]
    ep = w.serving_endpoints.get("rej-kind")
    assert ep.config.served_entities[0].entity_name == "m" and ep.pending_config is None


def test_a_plaintext_key_is_kept_as_a_secret_and_never_shown(w, ws, fake_provider, monkeypatch):
    """Databricks stores *_plaintext keys as secrets and GET returns the reference field."""
    key = "sk-" + "plaintextvalue0000000000"  # split: not a real key
    ext = {**OPENAI, "openai_config": {"openai_api_key_plaintext": key, "openai_api_base": fake_provider.base_url}}
    r = post(ws, API, {"name": "acc-plain-key", "config": {"served_entities": [{"external_model": ext}]}})
    assert r.status_code == 200, r.text
    assert key not in r.text
    ref = r.json()["pending_config"]["served_entities"][0]["external_model"]["openai_config"]
    assert ref["openai_api_key"].startswith("{{secrets/llmops-endpoint/acc-plain-key.")
    assert "openai_api_key_plaintext" not in ref
    wait_until(w, "acc-plain-key", ready)
    assert key not in requests.get(f"{ws.host}{API}", timeout=10, headers={"Authorization": f"Bearer {ws.token}"}).text
    answer = post(ws, "/serving-endpoints/acc-plain-key/invocations", {"messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200, answer.text
    assert fake_provider.authorizations()[-1] == f"Bearer {key}"
    # on disk: only in the owner-only secrets file; not in the request record
    state = ws.home / "state"
    assert key not in (state / "endpoints.json").read_text()
    assert (state / "endpoint-secrets.json").stat().st_mode & 0o077 == 0
    assert key not in str(ws.requests())
