"""The deploy plan: which write calls a desired config needs against the current endpoint."""

from __future__ import annotations

from llmops_nb.endpoints import _subset, config_matches, tag_changes

CURRENT_CONFIG = {
    "served_entities": [
        {
            "name": "m-2",
            "entity_name": "m",
            "entity_version": "2",
            "workload_size": "Small",
            "scale_to_zero_enabled": False,
            "state": {"deployment": "DEPLOYMENT_READY"},
            "creator": "someone",
        },
        {"name": "m-1", "entity_name": "m", "entity_version": "1", "workload_size": "Small", "scale_to_zero_enabled": False},
    ],
    "traffic_config": {"routes": [{"served_entity_name": "m-1", "traffic_percentage": 80}, {"served_entity_name": "m-2", "traffic_percentage": 20}]},
    "config_version": 3,
}


def desired(**changes):  # noqa: ANN003, ANN201
    core = {
        "served_entities": [
            {"name": "m-1", "entity_name": "m", "entity_version": "1", "workload_size": "Small", "scale_to_zero_enabled": False},
            {"name": "m-2", "entity_name": "m", "entity_version": 2, "workload_size": "Small", "scale_to_zero_enabled": False},
        ],
        "traffic_config": {"routes": [{"served_entity_name": "m-2", "traffic_percentage": 20}, {"served_entity_name": "m-1", "traffic_percentage": 80}]},
    }
    core.update(changes)
    return core


def test_same_config_in_another_order_with_server_fields_matches() -> None:
    assert config_matches(desired(), CURRENT_CONFIG)


def test_changed_traffic_or_entity_does_not_match() -> None:
    routes = {"routes": [{"served_entity_name": "m-1", "traffic_percentage": 50}, {"served_entity_name": "m-2", "traffic_percentage": 50}]}
    assert not config_matches(desired(traffic_config=routes), CURRENT_CONFIG)
    entities = desired()["served_entities"]
    entities[0] = {**entities[0], "workload_size": "Medium"}
    assert not config_matches(desired(served_entities=entities), CURRENT_CONFIG)
    assert not config_matches(desired(served_entities=entities[:1], traffic_config=None), CURRENT_CONFIG)
    assert not config_matches(desired(), None)


def test_subset_compares_numbers_and_strings_loosely_but_not_booleans() -> None:
    assert _subset({"a": 1}, {"a": 1.0, "b": 2})
    assert _subset({"v": 3}, {"v": "3"})
    assert not _subset({"a": True}, {"a": False})
    assert not _subset({"a": [1, 2]}, {"a": [1]})


def test_tag_changes_adds_changed_and_deletes_missing() -> None:
    add, delete = tag_changes({"a": "1", "b": "2"}, [{"key": "a", "value": "1"}, {"key": "b", "value": "x"}, {"key": "c", "value": "3"}])
    assert add == {"b": "2"} and delete == ["c"]
    assert tag_changes({"a": "1"}, [{"key": "a", "value": "1"}]) == ({}, [])
