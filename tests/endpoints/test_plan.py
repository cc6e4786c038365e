"""The deploy plan against GET views shaped as Databricks answers them (no server needed).

The views follow the Databricks CLI's acceptance outputs (github databricks/cli,
acceptance/bundle/resources/model_serving_endpoints/**): routes carry both
``served_entity_name`` and ``served_model_name``, entities carry ``state``/``creator``,
workspaces without GPU serving leave ``workload_type`` out, ``false`` values are omitted.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.endpoints.plan import ImmutableChange, config_matches, make_plan, plan_changes, tag_changes

ENTITY = {
    "entity_name": "main.default.m",
    "entity_version": "1",
    "workload_size": "Small",
    "scale_to_zero_enabled": True,
    "workload_type": "CPU",
}


def config(**changes: Any) -> EndpointConfig:
    body: dict[str, Any] = {
        "name": "chat",
        "served_entities": [dict(ENTITY)],
        "tags": {"team": "ml"},
        "ai_gateway": {"usage_tracking_config": {"enabled": True}},
    }
    body.update(changes)
    return EndpointConfig.model_validate({k: v for k, v in body.items() if v is not None})


def view(**changes: Any) -> dict[str, Any]:
    """A GET view of config() as a CPU-only workspace returns it."""
    out: dict[str, Any] = {
        "name": "chat",
        "id": "0a1b",
        "creator": "me@example.com",
        "creation_timestamp": 1700000000000,
        "last_updated_timestamp": 1700000000000,
        "permission_level": "CAN_MANAGE",
        "task": "llm/v1/chat",
        "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
        "config": {
            "served_entities": [
                {
                    "name": "main-default-m-1",
                    "entity_name": "main.default.m",
                    "entity_version": "1",
                    "workload_size": "Small",
                    "scale_to_zero_enabled": True,
                    "creator": "me@example.com",
                    "creation_timestamp": 1700000000000,
                    "state": {"deployment": "DEPLOYMENT_READY", "deployment_state_message": ""},
                }
            ],
            "traffic_config": {
                "routes": [
                    {"served_entity_name": "main-default-m-1", "served_model_name": "main-default-m-1", "traffic_percentage": 100}
                ]
            },
            "config_version": 3,
        },
        "tags": [{"key": "team", "value": "ml"}],
        "ai_gateway": {"usage_tracking_config": {"enabled": True}},
    }
    out.update(changes)
    return out


def test_the_same_config_against_a_server_filled_view_plans_nothing() -> None:
    assert plan_changes(config(), view()) == []
    echoed = view()
    echoed["config"]["served_entities"][0]["workload_type"] = "CPU"  # a GPU workspace echoes it
    assert plan_changes(config(), echoed) == []
    assert plan_changes(config(), None) == ["create"]


def test_server_filled_name_route_and_defaults_are_not_changes() -> None:
    # the config leaves the entity name, workload type and traffic to the server
    bare = {"entity_name": "main.default.m", "entity_version": 1, "workload_size": "Small", "scale_to_zero_enabled": True}
    assert plan_changes(config(served_entities=[bare]), view()) == []
    # usage tracking off is Go's zero value: a workspace returns nothing for it
    off = view(ai_gateway={"usage_tracking_config": {}})
    assert plan_changes(config(ai_gateway={"usage_tracking_config": {"enabled": False}}), off) == []
    assert plan_changes(config(ai_gateway=None), view(ai_gateway=None)) == []


def test_a_real_difference_in_a_default_is_a_change() -> None:
    gpu = dict(ENTITY, workload_type="GPU_SMALL")
    assert plan_changes(config(served_entities=[gpu]), view()) == ["config"]
    no_scale = view()
    del no_scale["config"]["served_entities"][0]["scale_to_zero_enabled"]  # false is omitted
    assert plan_changes(config(), no_scale) == ["config"]
    assert plan_changes(config(served_entities=[dict(ENTITY, scale_to_zero_enabled=False)]), no_scale) == []


def test_removals_are_changes() -> None:
    assert plan_changes(config(ai_gateway=None), view()) == ["ai_gateway"]
    guarded = view(
        ai_gateway={
            "usage_tracking_config": {"enabled": True},
            "guardrails": {"input": {"safety": True}},
            "fallback_config": {"enabled": True},
        }
    )
    assert plan_changes(config(), guarded) == ["ai_gateway"]
    limited = view(
        ai_gateway={
            "usage_tracking_config": {"enabled": True},
            "rate_limits": [{"calls": 5, "key": "endpoint", "renewal_period": "minute"}],
        }
    )
    assert plan_changes(config(), limited) == ["ai_gateway"]
    assert plan_changes(config(tags={}), view()) == ["tags"]
    assert tag_changes({}, view()["tags"]) == ({}, ["team"])


def test_writes_come_in_the_cli_order_tags_then_gateway_then_config() -> None:
    changed = config(
        served_entities=[dict(ENTITY, entity_version="2")],
        tags={"team": "ai"},
        ai_gateway={"usage_tracking_config": {"enabled": True}, "rate_limits": [{"calls": 9, "renewal_period": "minute"}]},
    )
    assert plan_changes(changed, view()) == ["tags", "ai_gateway", "config"]


def test_an_enabled_inference_table_moving_is_disabled_first() -> None:
    table = {"catalog_name": "main", "schema_name": "logs", "table_name_prefix": "chat", "enabled": True}
    current = view(ai_gateway={"inference_table_config": table})
    moved = config(ai_gateway={"inference_table_config": {**table, "schema_name": "other"}})
    assert plan_changes(moved, current) == ["ai_gateway_disable", "ai_gateway"]
    off = config(ai_gateway={"inference_table_config": {**table, "schema_name": "other", "enabled": False}})
    assert plan_changes(off, current) == ["ai_gateway"]
    disabled = view(ai_gateway={"inference_table_config": {**table, "enabled": False}})
    assert plan_changes(moved, disabled) == ["ai_gateway"]


def test_immutable_changes_are_listed_and_refused_in_one_line() -> None:
    plan = make_plan(config(description="new words"), view(description="old words"))
    assert plan.immutable == (("description", "old words", "new words"),)
    message = str(plan.refusal("chat"))
    assert "\n" not in message
    assert message.startswith("description: 'new words' is not allowed;")
    assert "'old words'" in message and "--recreate" in message
    assert isinstance(plan.refusal("chat"), ImmutableChange)
    assert make_plan(config(description="same"), view(description="same")).immutable == ()
    # resources.yml recreate_on_changes: route_optimized too (GET says false when unset)
    assert make_plan(config(), view(route_optimized=False)).immutable == ()
    assert make_plan(config(route_optimized=True), view(route_optimized=False)).immutable == (("route_optimized", None, True),)


def test_switching_between_registered_and_external_is_immutable() -> None:
    external = {
        "name": "gpt",
        "external_model": {
            "name": "gpt-4o-mini",
            "provider": "openai",
            "task": "llm/v1/chat",
            "openai_config": {"openai_api_key": "{{secrets/s/k}}"},
        },
    }
    plan = make_plan(config(served_entities=[external]), view())
    assert ("served_entities", "registered", "external") in plan.immutable


def test_config_matches_ignores_order_server_fields_and_version_types() -> None:
    two = {
        "served_entities": [dict(ENTITY, name="b", entity_version=2), dict(ENTITY, name="a")],
        "traffic_config": {
            "routes": [
                {"served_entity_name": "b", "traffic_percentage": 20},
                {"served_entity_name": "a", "traffic_percentage": 80},
            ]
        },
    }
    served = copy.deepcopy(view()["config"])
    served["served_entities"] = [
        dict(e, creator="x", state={}) for e in (dict(ENTITY, name="a"), dict(ENTITY, name="b", entity_version="2"))
    ]
    served["traffic_config"] = {
        "routes": [{"served_model_name": "a", "traffic_percentage": 80}, {"served_model_name": "b", "traffic_percentage": 20}]
    }
    assert config_matches(two, served)
    two["traffic_config"]["routes"][0]["traffic_percentage"] = 50
    assert not config_matches(two, served)
    assert not config_matches(two, None)


@pytest.mark.parametrize("current", [[{"key": "a", "value": "1"}, {"key": "b", "value": "x"}, {"key": "c"}]])
def test_tag_changes_adds_changed_and_deletes_missing(current: list[dict[str, str]]) -> None:
    add, delete = tag_changes({"a": "1", "b": "2"}, current)
    assert add == {"b": "2"} and delete == ["c"]
    assert tag_changes({"a": "1"}, [{"key": "a", "value": "1"}]) == ({}, [])


def test_notifications_and_telemetry_come_after_config_and_unmanaged_telemetry_is_left_alone() -> None:
    mails = {"on_update_failure": ["ops@example.com"]}
    telemetry = {"enabled_telemetry_features": ["TELEMETRY_FEATURE_LOGS"], "table_names": {"logs_table": "main.logs.chat"}}
    changed = config(served_entities=[dict(ENTITY, entity_version="2")], email_notifications=mails, telemetry_config=telemetry)
    assert plan_changes(changed, view()) == ["config", "email_notifications", "telemetry_config"]
    # table_names is input only (GET never returns it); telemetry set outside the config is not ours
    served = view(email_notifications=mails, telemetry_config={"enabled_telemetry_features": ["TELEMETRY_FEATURE_LOGS"]})
    assert plan_changes(config(email_notifications=mails, telemetry_config=telemetry), served) == []
    assert plan_changes(config(email_notifications=mails), served) == []
    assert plan_changes(config(), served) == ["email_notifications"]


def test_legacy_served_models_compare_as_served_entities() -> None:
    legacy = config(
        served_entities=None,
        served_models=[
            {"model_name": "main.default.m", "model_version": "1", "workload_size": "Small", "scale_to_zero_enabled": True}
        ],
    )
    assert plan_changes(legacy, view()) == []
