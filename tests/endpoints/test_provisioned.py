"""Provisioned throughput for a ``uc`` model source: the fake's optimization-info API, read with the
real databricks-sdk over HTTP, and the rules deploy and preflight apply to it.

The fake is seeded through its own Unity Catalog API (``FakeWorkspace.uc_model``); which models it
calls optimizable is its table ``PT_FAMILIES`` (a family word in the model's name).
"""

from __future__ import annotations

from typing import Any

import pytest

from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.endpoints import provisioned
from llmops_nb.endpoints.provisioned import OptimizationInfo
from llmops_nb.errors import ConfigError

LLAMA = "system.ai.llama_v3_2_1b_instruct"
SMOL = "main.llmops.smollm2_135m_instruct"  # no family the fake optimizes
CHUNK = 950  # the fake's chunk size for llama models (workspace/api/unity_catalog.py PT_FAMILIES)


def _info(chunk: int | None = CHUNK, optimizable: bool = True) -> OptimizationInfo:
    return OptimizationInfo(LLAMA, "1", optimizable, "llama" if optimizable else None, chunk, 28 if optimizable else None)


def _cfg(*entities: dict[str, Any], **more: Any) -> EndpointConfig:
    return EndpointConfig.model_validate({"name": "pt", "served_entities": list(entities), **more})


# --------------------------------------------------------------------------- the fake's API


def test_the_fake_answers_the_optimization_info_fields_databricks_documents(fake_workspace: Any) -> None:
    fake_workspace.uc_model(LLAMA, versions=2)
    fake_workspace.uc_model(SMOL)
    w = fake_workspace.client()
    raw = w.api_client.do("GET", f"/api/2.0/serving-endpoints/get-model-optimization-info/{LLAMA}/2")
    assert raw == {"optimizable": True, "model_type": "llama", "throughput_chunk_size": CHUNK, "dbus": 28}
    assert provisioned.optimization_info(w, LLAMA, "2") == OptimizationInfo(LLAMA, "2", True, "llama", CHUNK, 28)
    assert w.api_client.do("GET", f"/api/2.0/serving-endpoints/get-model-optimization-info/{SMOL}/1") == {"optimizable": False}
    assert provisioned.optimization_info(w, SMOL, "1").chunk_size is None


@pytest.mark.parametrize(("name", "version"), [(LLAMA, "3"), ("system.ai.llama_unknown", "1")])
def test_a_version_unity_catalog_lacks_is_one_line_naming_model_version(fake_workspace: Any, name: str, version: str) -> None:
    fake_workspace.uc_model(LLAMA, versions=2)
    with pytest.raises(ConfigError) as e:
        provisioned.optimization_info(fake_workspace.client(), name, version)
    assert e.value.field == "model.version" and e.value.value == version
    assert "\n" not in str(e.value) and "does not exist" in str(e.value)


# --------------------------------------------------------------------------- the rules


def test_no_values_given_is_min_0_and_max_one_chunk() -> None:
    assert provisioned.throughput(_info(), None, None, at="e") == (0, CHUNK)
    assert provisioned.throughput(_info(), 2 * CHUNK, None, at="e") == (2 * CHUNK, 2 * CHUNK)
    assert provisioned.throughput(_info(), CHUNK, 3 * CHUNK, at="e") == (CHUNK, 3 * CHUNK)


@pytest.mark.parametrize(
    ("low", "high", "field"),
    [
        (100, None, "min_provisioned_throughput"),
        (None, 1000, "max_provisioned_throughput"),
        (-CHUNK, CHUNK, "min_provisioned_throughput"),
        (2 * CHUNK, CHUNK, "max_provisioned_throughput"),
        (0, 0, "max_provisioned_throughput"),
    ],
)
def test_values_off_the_chunk_grid_or_below_min_are_refused(low: int | None, high: int | None, field: str) -> None:
    with pytest.raises(ConfigError) as e:
        provisioned.throughput(_info(), low, high, at="endpoint.served_entities[0]")
    assert e.value.field == f"endpoint.served_entities[0].{field}"
    assert "\n" not in str(e.value) and str(CHUNK) in e.value.allowed


def test_a_model_that_is_not_optimizable_is_refused_naming_model_name() -> None:
    with pytest.raises(ConfigError) as e:
        provisioned.throughput(_info(None, optimizable=False), None, None, at="e")
    assert e.value.field == "model.name" and e.value.value == LLAMA and "not optimizable" in str(e.value)


def test_with_throughput_fills_only_the_models_entities_and_keeps_given_values(fake_workspace: Any) -> None:
    fake_workspace.uc_model(LLAMA, versions=2)
    cfg = _cfg(
        {"entity_name": LLAMA, "entity_version": "1"},
        {
            "entity_name": LLAMA,
            "entity_version": "2",
            "min_provisioned_throughput": CHUNK,
            "max_provisioned_throughput": 2 * CHUNK,
        },
        {"entity_name": SMOL, "entity_version": "1", "workload_size": "Small"},
        traffic_config={
            "routes": [
                {"served_entity_name": "system-ai-llama_v3_2_1b_instruct-1", "traffic_percentage": 50},
                {"served_entity_name": "system-ai-llama_v3_2_1b_instruct-2", "traffic_percentage": 40},
                {"served_entity_name": "main-llmops-smollm2_135m_instruct-1", "traffic_percentage": 10},
            ]
        },
    )
    out = provisioned.with_throughput(cfg, LLAMA, fake_workspace.client())
    first, second, other = out.served_entities
    assert (first.min_provisioned_throughput, first.max_provisioned_throughput) == (0, CHUNK)
    assert (second.min_provisioned_throughput, second.max_provisioned_throughput) == (CHUNK, 2 * CHUNK)
    assert other.min_provisioned_throughput is None and other.workload_size == "Small"
    asked = [r["path"] for r in fake_workspace.requests() if "optimization-info" in r["path"]]
    assert asked == [f"/api/2.0/serving-endpoints/get-model-optimization-info/{LLAMA}/{v}" for v in ("1", "2")]


def test_an_entity_without_a_version_serves_the_given_one(fake_workspace: Any) -> None:
    fake_workspace.uc_model(LLAMA, versions=2)
    planned = provisioned.plan(_cfg({"entity_name": LLAMA}), LLAMA, fake_workspace.client(), version="2")
    assert [(t.entity, t.minimum, t.maximum, t.info.version) for t in planned] == [
        ("system-ai-llama_v3_2_1b_instruct-2", 0, CHUNK, "2")
    ]
    assert planned[0].describe().endswith(f"serves 0-{CHUNK} tokens/s (0-1 chunks of {CHUNK})")
    with pytest.raises(ConfigError) as e:
        provisioned.plan(_cfg({"entity_name": LLAMA}), LLAMA, fake_workspace.client())
    assert e.value.field == "endpoint.served_entities[0].entity_version"
