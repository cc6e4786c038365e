"""Tests for llmops_nb.config: validation messages, REST bodies, YAML round trips."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.config.io import default_config_path
from llmops_nb.config.project import EvaluationConfig, ProjectConfig, is_upper_bound, load_project_config
from llmops_nb.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PLAINTEXT = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"
REF = "{{secrets/llmops/openai_api_key}}"


def entity(version: Any = "1", **extra: Any) -> dict[str, Any]:
    return {"entity_name": "m", "entity_version": version, **extra}


def external(name: str = "gpt-4o-mini", provider: str = "openai", **extra: Any) -> dict[str, Any]:
    model: dict[str, Any] = {"name": name, "provider": provider, "task": "llm/v1/chat"}
    if provider == "openai":
        model["openai_config"] = {"openai_api_key": REF}
    model.update(extra)
    return {"external_model": model}


def endpoint(**extra: Any) -> dict[str, Any]:
    return {"name": "ep", "served_entities": [entity()], **extra}


def two(routes: list[tuple[str, int]]) -> dict[str, Any]:
    return endpoint(
        served_entities=[entity("1"), entity("2")],
        traffic_config={"routes": [{"served_entity_name": n, "traffic_percentage": p} for n, p in routes]},
    )


def openai_cfg(**cfg: Any) -> dict[str, Any]:
    return endpoint(served_entities=[external(openai_config=cfg)])


# (endpoint body, expected field path, text the message must show for the value)
BAD: list[tuple[str, dict[str, Any], str, str]] = [
    ("name with space", endpoint(name="my endpoint"), "name", "'my endpoint'"),
    ("name too long", endpoint(name="x" * 64), "name", "'" + "x" * 64 + "'"),
    ("name empty", endpoint(name=""), "name", "''"),
    ("name wrong type", endpoint(name=12), "name", "12"),
    ("name missing", {"served_entities": [entity()]}, "name", "(missing)"),
    ("unknown top field", endpoint(replicas=3), "replicas", "3"),
    ("no served entities", endpoint(served_entities=[]), "served_entities", "[]"),
    ("entities not a list", endpoint(served_entities="m"), "served_entities", "'m'"),
    ("unknown entity field", endpoint(served_entities=[entity(gpu=True)]), "served_entities[0].gpu", "True"),
    ("empty workload size", endpoint(served_entities=[entity(workload_size="")]), "served_entities[0].workload_size", "''"),
    (
        "workload size with provisioned concurrency",
        endpoint(served_entities=[entity(workload_size="Small", min_provisioned_concurrency=4)]),
        "served_entities[0].min_provisioned_concurrency",
        "4",
    ),
    ("bad workload type", endpoint(served_entities=[entity(workload_type="TPU")]), "served_entities[0].workload_type", "'TPU'"),
    ("bad version", endpoint(served_entities=[entity("v1")]), "served_entities[0].entity_version", "'v1'"),
    (
        "scale_to_zero not bool",
        endpoint(served_entities=[entity(scale_to_zero_enabled="maybe")]),
        "served_entities[0].scale_to_zero_enabled",
        "'maybe'",
    ),
    ("bad entity name", endpoint(served_entities=[entity(name="a.b")]), "served_entities[0].name", "'a.b'"),
    (
        "duplicate entity names",
        endpoint(
            served_entities=[entity("1", name="a"), entity("2", name="a")],
            traffic_config={"routes": [{"served_entity_name": "a", "traffic_percentage": 100}]},
        ),
        "served_entities[1].name",
        "'a'",
    ),
    ("traffic not 100", two([("m-1", 80), ("m-2", 30)]), "traffic_config.routes", "summing to 110"),
    ("route to missing entity", two([("m-1", 80), ("m-3", 20)]), "traffic_config.routes[1].served_entity_name", "'m-3'"),
    ("duplicate route", two([("m-1", 50), ("m-1", 50)]), "traffic_config.routes[1].served_entity_name", "'m-1'"),
    ("percentage over 100", two([("m-1", 120), ("m-2", -20)]), "traffic_config.routes[0].traffic_percentage", "120"),
    (
        "percentage not int",
        two([("m-1", "eighty"), ("m-2", 20)]),  # type: ignore[list-item]
        "traffic_config.routes[0].traffic_percentage",
        "'eighty'",
    ),
    ("several entities no routes", endpoint(served_entities=[entity("1"), entity("2")]), "traffic_config", "None"),
    (
        "zero calls",
        endpoint(ai_gateway={"rate_limits": [{"calls": 0, "renewal_period": "minute"}]}),
        "ai_gateway.rate_limits[0].calls",
        "0",
    ),
    (
        "negative tokens",
        endpoint(ai_gateway={"rate_limits": [{"tokens": -5, "renewal_period": "minute"}]}),
        "ai_gateway.rate_limits[0].tokens",
        "-5",
    ),
    (
        "no calls nor tokens",
        endpoint(ai_gateway={"rate_limits": [{"key": "user", "renewal_period": "minute"}]}),
        "ai_gateway.rate_limits[0].calls",
        "None",
    ),
    (
        "bad rate limit key",
        endpoint(ai_gateway={"rate_limits": [{"calls": 1, "key": "ip", "renewal_period": "minute"}]}),
        "ai_gateway.rate_limits[0].key",
        "'ip'",
    ),
    (
        "rate limit without renewal_period",
        endpoint(ai_gateway={"rate_limits": [{"calls": 1}]}),
        "ai_gateway.rate_limits[0].renewal_period",
        "(missing)",
    ),
    (
        "principal without key",
        endpoint(ai_gateway={"rate_limits": [{"calls": 1, "renewal_period": "minute", "principal": "a@b.c"}]}),
        "ai_gateway.rate_limits[0].principal",
        "'a@b.c'",
    ),
    (
        "bad renewal period",
        endpoint(ai_gateway={"rate_limits": [{"calls": 1, "renewal_period": "hour"}]}),
        "ai_gateway.rate_limits[0].renewal_period",
        "'hour'",
    ),
    (
        "usage tracking not bool",
        endpoint(ai_gateway={"usage_tracking_config": {"enabled": "often"}}),
        "ai_gateway.usage_tracking_config.enabled",
        "'often'",
    ),
    ("tags not a mapping", endpoint(tags=["a"]), "tags", "['a']"),
    (
        "unknown provider",
        endpoint(served_entities=[external(provider="mistral")]),
        "served_entities[0].external_model.provider",
        "'mistral'",
    ),
    (
        "unknown task",
        endpoint(served_entities=[external(task="llm/v1/images")]),
        "served_entities[0].external_model.task",
        "'llm/v1/images'",
    ),
    (
        "provider config mismatch",
        endpoint(served_entities=[external(anthropic_config={"anthropic_api_key": REF})]),
        "served_entities[0].external_model.provider",
        "'openai'",
    ),
    (
        "missing provider config",
        endpoint(served_entities=[external(provider="anthropic")]),
        "served_entities[0].external_model.provider",
        "'anthropic'",
    ),
    (
        "plaintext key",
        openai_cfg(openai_api_key_plaintext=PLAINTEXT),
        "served_entities[0].external_model.openai_config.openai_api_key_plaintext",
        "'***'",
    ),
    (
        "plaintext value in ref field",
        openai_cfg(openai_api_key=PLAINTEXT),
        "served_entities[0].external_model.openai_config.openai_api_key",
        "'***'",
    ),
    (
        "bad secret ref",
        openai_cfg(openai_api_key="{{secrets/llmops}}"),
        "served_entities[0].external_model.openai_config.openai_api_key",
        "'{{secrets/llmops}}'",
    ),
    ("missing api key", openai_cfg(), "served_entities[0].external_model.openai_config.openai_api_key", "None"),
    (
        "azure without deployment",
        openai_cfg(
            openai_api_key=REF,
            openai_api_type="azure",
            openai_api_base="https://x.openai.azure.com",
            openai_api_version="2024-06-01",
        ),
        "served_entities[0].external_model.openai_config.openai_deployment_name",
        "None",
    ),
    (
        "bad openai api type",
        openai_cfg(openai_api_key=REF, openai_api_type="vertex"),
        "served_entities[0].external_model.openai_config.openai_api_type",
        "'vertex'",
    ),
    (
        "anthropic plaintext",
        endpoint(
            served_entities=[
                external(provider="anthropic", name="claude", anthropic_config={"anthropic_api_key_plaintext": PLAINTEXT})
            ]
        ),
        "served_entities[0].external_model.anthropic_config.anthropic_api_key_plaintext",
        "'***'",
    ),
    (
        "custom provider plaintext bearer",
        endpoint(
            served_entities=[
                external(
                    provider="custom",
                    custom_provider_config={
                        "custom_provider_url": "http://x",
                        "bearer_token_auth": {"token_plaintext": PLAINTEXT},
                    },
                )
            ]
        ),
        "served_entities[0].external_model.custom_provider_config.bearer_token_auth.token_plaintext",
        "'***'",
    ),
    (
        "mixing external and custom",
        endpoint(
            served_entities=[entity(), external()],
            traffic_config={
                "routes": [
                    {"served_entity_name": "m-1", "traffic_percentage": 50},
                    {"served_entity_name": "gpt-4o-mini", "traffic_percentage": 50},
                ]
            },
        ),
        "served_entities[1]",
        "'gpt-4o-mini'",
    ),
    (
        "external tasks differ",
        endpoint(
            served_entities=[external("a"), external("b", task="llm/v1/completions")],
            traffic_config={
                "routes": [
                    {"served_entity_name": "a", "traffic_percentage": 50},
                    {"served_entity_name": "b", "traffic_percentage": 50},
                ]
            },
        ),
        "served_entities[1].external_model.task",
        "'llm/v1/completions'",
    ),
    (
        "both entity_name and external",
        endpoint(served_entities=[{**entity(), **external()}]),
        "served_entities[0].entity_name",
        "'m'",
    ),
    ("neither entity_name nor external", endpoint(served_entities=[{"name": "x"}]), "served_entities[0].entity_name", "None"),
    (
        "workload with external",
        endpoint(served_entities=[{**external(), "workload_size": "Small"}]),
        "served_entities[0].workload_size",
        "'Small'",
    ),
    (
        "plaintext env var",
        endpoint(served_entities=[entity(environment_vars={"HF_TOKEN": PLAINTEXT})]),
        "served_entities[0].environment_vars.HF_TOKEN",
        "'***'",
    ),
    (
        "inference table without catalog",
        endpoint(ai_gateway={"inference_table_config": {"enabled": True, "schema_name": "s"}}),
        "ai_gateway.inference_table_config.catalog_name",
        "None",
    ),
    ("unknown guardrail", endpoint(ai_gateway={"guardrails": {"middle": {}}}), "ai_gateway.guardrails.middle", "{}"),
    (
        "guardrail not a mapping",
        endpoint(ai_gateway={"guardrails": {"input": "strict"}}),
        "ai_gateway.guardrails.input",
        "'strict'",
    ),
    (
        "unknown guardrail parameter",
        endpoint(ai_gateway={"guardrails": {"input": {"toxicity": True}}}),
        "ai_gateway.guardrails.input.toxicity",
        "True",
    ),
    (
        "bad pii behavior",
        endpoint(ai_gateway={"guardrails": {"output": {"pii": {"behavior": "REDACT"}}}}),
        "ai_gateway.guardrails.output.pii.behavior",
        "'REDACT'",
    ),
    (
        "keywords not a list",
        endpoint(ai_gateway={"guardrails": {"input": {"invalid_keywords": "x"}}}),
        "ai_gateway.guardrails.input.invalid_keywords",
        "'x'",
    ),
    (
        "route to neither",
        two([("m-1", 100)]) | {"traffic_config": {"routes": [{"traffic_percentage": 100}]}},
        "traffic_config.routes[0].served_entity_name",
        "None",
    ),
    (
        "route names differ",
        endpoint(
            traffic_config={"routes": [{"served_entity_name": "m-1", "served_model_name": "m-2", "traffic_percentage": 100}]}
        ),
        "traffic_config.routes[0].served_model_name",
        "'m-2'",
    ),
    (
        "legacy rate limit without calls",
        endpoint(rate_limits=[{"renewal_period": "minute"}]),
        "rate_limits[0].calls",
        "(missing)",
    ),
    (
        "legacy rate limit key",
        endpoint(rate_limits=[{"calls": 1, "renewal_period": "minute", "key": "user_group"}]),
        "rate_limits[0].key",
        "'user_group'",
    ),
    (
        "served model without scale_to_zero",
        {"name": "ep", "served_models": [{"model_name": "m", "model_version": "1"}]},
        "served_models[0].scale_to_zero_enabled",
        "(missing)",
    ),
    (
        "email notifications not a list",
        endpoint(email_notifications={"on_update_failure": "a@b.c"}),
        "email_notifications.on_update_failure",
        "'a@b.c'",
    ),
    (
        "telemetry sampling over 1",
        endpoint(telemetry_config={"inference_table_config": {"sampling_fraction": 2}}),
        "telemetry_config.inference_table_config.sampling_fraction",
        "2",
    ),
    (
        "bedrock without any auth",
        endpoint(
            served_entities=[
                external(
                    "claude",
                    provider="amazon-bedrock",
                    amazon_bedrock_config={"aws_region": "us-east-1", "bedrock_provider": "anthropic"},
                )
            ]
        ),
        "served_entities[0].external_model.amazon_bedrock_config.aws_access_key_id",
        "None",
    ),
    (
        "bedrock half a key pair",
        endpoint(
            served_entities=[
                external(
                    "claude",
                    provider="amazon-bedrock",
                    amazon_bedrock_config={
                        "aws_region": "us-east-1",
                        "bedrock_provider": "anthropic",
                        "aws_access_key_id": "{{secrets/s/id}}",
                    },
                )
            ]
        ),
        "served_entities[0].external_model.amazon_bedrock_config.aws_secret_access_key",
        "None",
    ),
    (
        "bad bedrock provider",
        endpoint(
            served_entities=[
                external(
                    "x",
                    provider="amazon-bedrock",
                    amazon_bedrock_config={
                        "aws_region": "us-east-1",
                        "bedrock_provider": "meta",
                        "instance_profile_arn": "arn:aws:iam::1:instance-profile/p",
                    },
                )
            ]
        ),
        "served_entities[0].external_model.amazon_bedrock_config.bedrock_provider",
        "'meta'",
    ),
]


@pytest.mark.parametrize(("body", "field", "shown"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_malformed_endpoint_is_one_line_naming_field_and_value(body: dict, field: str, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        EndpointConfig.model_validate(body)
    message = str(info.value)
    assert "\n" not in message
    assert info.value.field == field, message
    assert message.startswith(f"{field}: ")
    assert shown in message
    assert PLAINTEXT not in message and PLAINTEXT not in repr(info.value.value)


def test_direct_construction_raises_config_error_too() -> None:
    with pytest.raises(ConfigError, match=r"^served_entities\[0\]\.workload_type: 'TINY'"):
        EndpointConfig(name="ep", served_entities=[entity(workload_type="TINY")])


def test_several_errors_report_the_first_and_count_the_rest() -> None:
    with pytest.raises(ConfigError) as info:
        EndpointConfig.model_validate({"name": "a b", "served_entities": [], "zzz": 1, "yyy": 2})
    assert str(info.value).startswith("name: 'a b'")
    assert "(+2 more)" in str(info.value)


def test_unknown_field_lists_allowed_fields() -> None:
    with pytest.raises(ConfigError, match="allowed fields: name, served_entities, served_models, traffic_config"):
        EndpointConfig.model_validate(endpoint(colour="red"))


SAMPLE = {
    "name": "smollm2-ab",
    "served_entities": [
        {"entity_name": "main.llmops.smollm2", "entity_version": 1, "scale_to_zero_enabled": False},
        {
            "name": "canary",
            "entity_name": "main.llmops.smollm2",
            "entity_version": "2",
            "workload_size": "Medium",
            "workload_type": "GPU_SMALL",
            "environment_vars": {"HF_TOKEN": "{{secrets/llmops/hf}}"},
        },
    ],
    "traffic_config": {
        "routes": [
            {"served_entity_name": "main-llmops-smollm2-1", "traffic_percentage": 80},
            {"served_entity_name": "canary", "traffic_percentage": 20},
        ]
    },
    "ai_gateway": {
        "rate_limits": [
            {"renewal_period": "minute", "calls": 600},
            {"renewal_period": "minute", "tokens": 10000, "key": "user", "principal": "a@b.c"},
        ],
        "usage_tracking_config": {"enabled": True},
        "inference_table_config": {"catalog_name": "main", "schema_name": "llmops", "table_name_prefix": "ab", "enabled": True},
        "guardrails": {"input": {"safety": True, "pii": {"behavior": "BLOCK"}}},
        "fallback_config": {"enabled": False},
    },
    "tags": {"project": "llmops-nb", "stage": "dev"},
    "description": "A/B test",
}

SAMPLE_CORE = {
    "served_entities": [
        {
            "name": "main-llmops-smollm2-1",
            "entity_name": "main.llmops.smollm2",
            "entity_version": "1",
            "scale_to_zero_enabled": False,
        },
        {
            "name": "canary",
            "entity_name": "main.llmops.smollm2",
            "entity_version": "2",
            "workload_size": "Medium",
            "workload_type": "GPU_SMALL",
            "environment_vars": {"HF_TOKEN": "{{secrets/llmops/hf}}"},
        },
    ],
    "traffic_config": SAMPLE["traffic_config"],
}

SAMPLE_GATEWAY = {
    "rate_limits": [
        {"renewal_period": "minute", "calls": 600},
        {"renewal_period": "minute", "tokens": 10000, "key": "user", "principal": "a@b.c"},
    ],
    "usage_tracking_config": {"enabled": True},
    "inference_table_config": {"catalog_name": "main", "schema_name": "llmops", "table_name_prefix": "ab", "enabled": True},
    "guardrails": {"input": {"safety": True, "pii": {"behavior": "BLOCK"}}},
    "fallback_config": {"enabled": False},
}


def test_to_databricks_body_is_exactly_the_rest_body() -> None:
    config = EndpointConfig.model_validate(SAMPLE)
    assert config.to_databricks_body() == {
        "name": "smollm2-ab",
        "config": {"name": "smollm2-ab", **SAMPLE_CORE},
        "ai_gateway": SAMPLE_GATEWAY,
        "tags": [{"key": "project", "value": "llmops-nb"}, {"key": "stage", "value": "dev"}],
        "description": "A/B test",
    }
    assert config.core_config_body() == SAMPLE_CORE
    assert config.ai_gateway_body() == SAMPLE_GATEWAY


def test_minimal_body_omits_none_values() -> None:
    body = EndpointConfig.model_validate(endpoint()).to_databricks_body()
    # nothing Databricks leaves out is injected (no workload_type: CPU, issue 14 point 5); only the
    # entity name, which Databricks derives the same way
    assert body == {
        "name": "ep",
        "config": {"name": "ep", "served_entities": [{"name": "m-1", "entity_name": "m", "entity_version": "1"}]},
    }


def test_external_model_body_has_no_workload_fields_and_a_default_name() -> None:
    config = EndpointConfig.model_validate(
        endpoint(
            served_entities=[external("claude-3.5:sonnet", provider="anthropic", anthropic_config={"anthropic_api_key": REF})]
        )
    )
    assert config.core_config_body()["served_entities"] == [
        {
            "name": "claude-3-5-sonnet",
            "external_model": {
                "name": "claude-3.5:sonnet",
                "provider": "anthropic",
                "task": "llm/v1/chat",
                "anthropic_config": {"anthropic_api_key": REF},
            },
        }
    ]
    assert config.routes() == [{"served_entity_name": "claude-3-5-sonnet", "traffic_percentage": 100}]


def test_body_parses_with_databricks_sdk_unchanged() -> None:
    from databricks.sdk.service.serving import AiGatewayConfig, EndpointCoreConfigInput

    for data in (
        SAMPLE,
        openai_cfg(
            openai_api_key=REF,
            openai_api_type="azure",
            openai_api_base="https://x.openai.azure.com",
            openai_api_version="2024-06-01",
            openai_deployment_name="gpt",
        ),
    ):
        body = EndpointConfig.model_validate(data).to_databricks_body()
        assert EndpointCoreConfigInput.from_dict(body["config"]).as_dict() == body["config"]
    assert AiGatewayConfig.from_dict(SAMPLE_GATEWAY).as_dict() == SAMPLE_GATEWAY


def test_from_databricks_body_round_trips() -> None:
    config = EndpointConfig.model_validate(SAMPLE)
    body = config.to_databricks_body()
    again = EndpointConfig.from_databricks_body(copy.deepcopy(body))
    assert again.to_databricks_body() == body
    assert again.config_hash() == config.config_hash()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "ep", "config": {"name": "other", "served_entities": [entity()]}}, "config.name"),
        ({"name": "ep", "config": {"served_entities": [{"entity_name": "m"}]}}, "config.served_entities[0].entity_version"),
        ({"name": "ep", "config": {"served_entities": [entity(workload_type="XL")]}}, "config.served_entities[0].workload_type"),
        ({"name": "ep", "config": {"served_entities": [entity()], "auto_capture": {}}}, "config.auto_capture"),
        ({"name": "ep", "config": {"served_entities": [entity()]}, "served_entities": [entity()]}, "served_entities"),
        ({"name": "ep", "config": [1]}, "config"),
        ({"name": "ep", "config": {"served_entities": [entity()]}, "tags": [{"k": "v"}]}, "tags[0].key"),
        ({"name": "ep", "config": {"served_entities": [entity()]}, "tags": ["v"]}, "tags[0]"),
        (["not", "a", "body"], "(body)"),
    ],
)
def test_from_databricks_body_rejects_bad_bodies(body: Any, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        EndpointConfig.from_databricks_body(body)
    assert info.value.field == field
    assert "\n" not in str(info.value)


def test_with_resolved_versions_fills_latest_and_recomputes_default_names() -> None:
    config = EndpointConfig.model_validate(endpoint(served_entities=[{"entity_name": "a.b.c"}]))
    assert config.has_unresolved_versions and config.served_entities[0].name is None
    asked: list[str] = []
    resolved = config.with_resolved_versions(lambda name: asked.append(name) or "4")
    assert asked == ["a.b.c"]
    assert resolved.served_entities[0].entity_version == "4"
    assert resolved.served_entities[0].name == "a-b-c-4"
    assert not resolved.has_unresolved_versions
    assert config.served_entities[0].entity_version is None  # the original is unchanged
    pinned = EndpointConfig.model_validate(endpoint())
    assert pinned.with_resolved_versions(lambda name: pytest.fail("not called")) == pinned


def test_config_hash_is_stable_and_changes_with_the_config() -> None:
    a = EndpointConfig.model_validate(endpoint())
    b = EndpointConfig.model_validate(endpoint())
    c = EndpointConfig.model_validate(endpoint(served_entities=[entity("2")]))
    assert a.config_hash() == b.config_hash() != c.config_hash()
    assert len(a.config_hash()) == 12


def test_versions_given_as_ints_become_strings() -> None:
    assert EndpointConfig.model_validate(endpoint(served_entities=[entity(3)])).served_entities[0].entity_version == "3"


def test_endpoint_yaml_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "in.yml"
    source.write_text(yaml.safe_dump(SAMPLE, sort_keys=False))
    config = EndpointConfig.from_yaml(source)
    config.to_yaml(tmp_path / "out.yml")
    written = yaml.safe_load((tmp_path / "out.yml").read_text())
    expected = copy.deepcopy(SAMPLE)
    expected["served_entities"][0]["entity_version"] = "1"
    assert written == expected  # defaults and computed names stay implicit
    assert EndpointConfig.from_yaml(tmp_path / "out.yml") == config


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yml")), ids=lambda p: p.name)
def test_every_example_config_loads_and_round_trips(path: Path, tmp_path: Path) -> None:
    project = load_project_config(path)
    project.to_yaml(tmp_path / path.name)
    assert load_project_config(tmp_path / path.name) == project
    if project.endpoint is not None and not project.endpoint.has_unresolved_versions:
        from databricks.sdk.service.serving import EndpointCoreConfigInput

        body = project.endpoint.to_databricks_body()
        assert EndpointCoreConfigInput.from_dict(body["config"]).as_dict() == body["config"]


def test_example_configs_say_what_they_promise() -> None:
    local = load_project_config(CONFIGS / "local.yml")
    assert local.backend == "local" and local.endpoint is not None
    assert local.endpoint.served_entities[0].entity_version is None
    assert local.endpoint.ai_gateway and local.endpoint.ai_gateway.rate_limits
    assert local.endpoint.ai_gateway.rate_limits[0].calls == 600
    ab = load_project_config(CONFIGS / "local-ab.yml").endpoint
    assert ab is not None and [r["traffic_percentage"] for r in ab.routes()] == [80, 20]
    foundation = load_project_config(CONFIGS / "databricks-foundation.yml")
    assert foundation.endpoint is None
    assert foundation.endpoint_name == "databricks-meta-llama-3-3-70b-instruct"
    assert default_config_path() == CONFIGS / "local.yml"


def project(**extra: Any) -> dict[str, Any]:
    return {"endpoint": endpoint(), **extra}


@pytest.mark.parametrize(
    ("data", "field", "shown"),
    [
        (project(backend="aws"), "backend", "'aws'"),
        (project(backend="databricks"), "model.name", "'smollm2-135m-instruct'"),
        (project(backend="databricks", model={"name": "a.b.c"}), "endpoint.served_entities[0].entity_name", "'m'"),
        (project(model={"alias": "v2"}), "model.alias", "'v2'"),
        (project(model={"temperature": 3}), "model.temperature", "3"),
        (project(model={"max_tokens": "many"}), "model.max_tokens", "'many'"),
        (project(evaluation={"concurrency": 0}), "evaluation.concurrency", "0"),
        (project(evaluation={"concurrency": 65}), "evaluation.concurrency", "65"),
        (project(evaluation={"margin": 1.5}), "evaluation.margin", "1.5"),
        (project(evaluation={"thresholds": {"contains_match": "high"}}), "evaluation.thresholds.contains_match", "'high'"),
        (project(evaluation={"promote_alias": "latest"}), "evaluation.promote_alias", "'latest'"),
        ({}, "endpoint", "(missing)"),
        (project(foundation_endpoint="databricks-llama"), "endpoint", "(both or neither)"),
        ({"foundation_endpoint": "bad name"}, "foundation_endpoint", "'bad name'"),
        (project(endpoint=endpoint(name="a/b")), "endpoint.name", "'a/b'"),
        (project(endpont={}), "endpont", "{}"),
    ],
)
def test_malformed_project_config(data: dict, field: str, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        ProjectConfig.model_validate(data)
    assert info.value.field == field, str(info.value)
    assert shown in str(info.value) and "\n" not in str(info.value)


def test_project_defaults() -> None:
    config = ProjectConfig.model_validate(project())
    assert (config.backend, config.model.name, config.model.alias) == ("local", "smollm2-135m-instruct", "challenger")
    assert (config.model.max_tokens, config.model.temperature) == (64, 0.0)
    assert (config.evaluation.concurrency, config.evaluation.margin, config.evaluation.promote_alias) == (8, 0.02, "champion")


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("backend: [local\n", "must be valid YAML (line"),
        ("- a\n- b\n", "must hold a mapping of fields, got list"),
        ("", "must hold a mapping of fields, got NoneType"),
    ],
)
def test_unparseable_files_are_one_line_naming_the_file(tmp_path: Path, text: str, expect: str) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_project_config(path)
    assert expect in str(info.value) and "bad.yml" in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_and_invalid_file_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yml.*readable"):
        load_project_config(tmp_path / "nope.yml")
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(project(backend="aws")))
    with pytest.raises(ConfigError, match=r"^backend: 'aws' .*bad\.yml"):
        load_project_config(path)


def test_plaintext_secret_never_in_error_from_file(tmp_path: Path) -> None:
    path = tmp_path / "leak.yml"
    path.write_text(yaml.safe_dump(project(endpoint=openai_cfg(openai_api_key_plaintext=PLAINTEXT))))
    with pytest.raises(ConfigError) as info:
        load_project_config(path)
    assert PLAINTEXT not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize(
    ("metric", "upper"),
    [
        ("latency_p95_ms", True),
        ("latency_seconds", True),
        ("error_rate", True),
        ("latency", True),
        ("contains_match", False),
        ("exact_match/mean", False),
    ],
)
def test_threshold_direction(metric: str, upper: bool) -> None:
    assert is_upper_bound(metric) is upper


def test_failed_thresholds() -> None:
    evaluation = EvaluationConfig(thresholds={"contains_match": 0.15, "latency_p95_ms": 30000, "error_rate": 0.1})
    assert evaluation.failed_thresholds({"contains_match": 0.2, "latency_p95_ms": 100, "error_rate": 0.0}) == {}
    assert evaluation.failed_thresholds({"contains_match": 0.1, "latency_p95_ms": 40000}) == {
        "contains_match": "0.1 < 0.15",
        "latency_p95_ms": "40000 > 30000",
        "error_rate": "missing",
    }


# ---------------------------------------------------------------- values Databricks accepts (issue 14, point 8)

BEDROCK = {"aws_region": "us-east-1", "bedrock_provider": "Anthropic"}


@pytest.mark.parametrize(
    "extra",
    [
        {"route_optimized": True},
        {"budget_policy_id": "bp-123"},
        {"email_notifications": {"on_update_failure": ["a@b.c"], "on_update_success": []}},
        {"rate_limits": [{"calls": 10, "renewal_period": "minute", "key": "user"}]},
        {"auto_capture_config": {"catalog_name": "main", "schema_name": "s", "table_name_prefix": "p", "enabled": True}},
        {
            "telemetry_config": {
                "enabled_telemetry_features": ["TELEMETRY_FEATURE_LOGS"],
                "inference_table_config": {"sampling_fraction": 0.5},
                "table_names": {"logs_table": "main.s.logs"},
            }
        },
        {
            "ai_gateway": {
                "guardrails": {
                    "input": {"invalid_keywords": ["x"], "pii": {"behavior": "MASK"}, "safety": True, "valid_topics": ["t"]},
                    "output": {"pii": {"behavior": "NONE"}},
                }
            }
        },
        {
            "ai_gateway": {
                "rate_limits": [{"renewal_period": "minute", "tokens": 5, "key": "service_principal", "principal": "0000-app-id"}]
            }
        },
        {"served_entities": [entity(workload_size="Medium", workload_type="CPU_MEDIUM")]},
        {"served_entities": [entity(workload_size="my-custom-size", workload_type="GPU_XLARGE_8")]},
        {
            "served_entities": [
                entity(
                    min_provisioned_concurrency=4,
                    max_provisioned_concurrency=8,
                    burst_scaling_enabled=False,
                    instance_profile_arn="arn:aws:iam::1:instance-profile/p",
                )
            ]
        },
        {"served_entities": [entity(min_provisioned_throughput=0, max_provisioned_throughput=970, provisioned_model_units=50)]},
        {
            "served_entities": [
                external(
                    "claude",
                    provider="amazon-bedrock",
                    amazon_bedrock_config={**BEDROCK, "instance_profile_arn": "arn:aws:iam::1:x"},
                )
            ]
        },
        {
            "served_entities": [
                external(
                    "claude", provider="amazon-bedrock", amazon_bedrock_config={**BEDROCK, "uc_service_credential_name": "cred"}
                )
            ]
        },
        {"served_entities": [{**external("gpt"), "environment_vars": {"X": "1"}}]},
        {"served_entities": [external("bison", provider="palm", palm_config={"palm_api_key": REF})]},
    ],
    ids=lambda extra: "-".join(extra)[:40],
)
def test_values_databricks_accepts_are_accepted_and_sent_as_given(extra: dict[str, Any]) -> None:
    config = EndpointConfig.model_validate(endpoint(**extra))
    body = config.to_databricks_body()
    for key, value in extra.items():
        if key in ("served_entities", "auto_capture_config"):
            sent = body["config"][key]
            if key == "served_entities":
                sent = [{k: v for k, v in e.items() if k != "name"} for e in sent]
                value = [{k: (str(v) if k == "entity_version" else v) for k, v in e.items()} for e in value]
            if key == "served_entities" and "external_model" in value[0]:
                bedrock = value[0]["external_model"].get("amazon_bedrock_config")
                if bedrock:  # the SDK's enum values are lower case; Databricks takes any case
                    bedrock["bedrock_provider"] = "anthropic"
            assert sent == value
        else:
            assert body[key] == value


def test_legacy_served_models_and_routes_by_served_model_name() -> None:
    config = EndpointConfig.from_databricks_body(
        {
            "name": "ep",
            "config": {
                "served_models": [
                    {"model_name": "a.b.m", "model_version": "3", "scale_to_zero_enabled": True, "workload_size": "Small"}
                ],
                "traffic_config": {"routes": [{"served_model_name": "a-b-m-3", "traffic_percentage": 100}]},
            },
        }
    )
    body = config.to_databricks_body()["config"]
    assert "served_entities" not in body
    assert body["served_models"] == [
        {"name": "a-b-m-3", "model_name": "a.b.m", "model_version": "3", "scale_to_zero_enabled": True, "workload_size": "Small"}
    ]
    assert body["traffic_config"] == {"routes": [{"served_model_name": "a-b-m-3", "traffic_percentage": 100}]}
    assert config.routes() == [{"served_entity_name": "a-b-m-3", "served_model_name": "a-b-m-3", "traffic_percentage": 100}]


def test_routes_by_served_model_name_for_served_entities() -> None:
    config = EndpointConfig.model_validate(
        endpoint(traffic_config={"routes": [{"served_model_name": "m-1", "traffic_percentage": 100}]})
    )
    assert config.routes()[0]["served_entity_name"] == "m-1"


def test_rate_limit_key_is_not_injected() -> None:
    body = EndpointConfig.model_validate(
        endpoint(ai_gateway={"rate_limits": [{"renewal_period": "minute", "calls": 5}]})
    ).ai_gateway_body()
    assert body == {"rate_limits": [{"renewal_period": "minute", "calls": 5}]}


def test_description_and_route_optimized_are_declared_immutable() -> None:
    assert {"name", "description", "route_optimized"} <= set(EndpointConfig.immutable_fields)
    assert EndpointConfig.model_validate(endpoint(description="d")).to_databricks_body()["description"] == "d"


@pytest.mark.parametrize(
    ("section", "line"),
    [
        (
            "candidates: [{name: a}, {name: a}]",
            "evaluation.candidates[1].name: 'a' is not allowed; candidate names must be unique",
        ),
        ("candidates: [{name: a}]\n  baseline: b", "evaluation.baseline: 'b' is not allowed; the name of a candidate: a"),
        (
            "candidates: [{name: a}]\n  prices: {gpt: {per_hour: 1}}",
            "evaluation.prices.gpt: 'gpt' is not allowed; the name of a candidate: a",
        ),
        ("prices: {new: {}}", "evaluation.prices.new: {} is not allowed; input_per_million and output_per_million, or per_hour"),
        ("candidates: [{name: a, served_entity: x, version: '1'}]", "evaluation.candidates[0].version: '1' is not allowed"),
        ("candidates: [{name: a, endpoint: 'no such'}]", "evaluation.candidates[0].endpoint: 'no such' is not allowed"),
    ],
)
def test_a_bad_candidate_or_price_is_one_line(tmp_path: Path, section: str, line: str) -> None:
    path = tmp_path / "p.yml"
    path.write_text(f"evaluation:\n  {section}\nfoundation_endpoint: fm\n")
    with pytest.raises(ConfigError) as err:
        load_project_config(path)
    assert str(err.value).startswith(line) and "\n" not in str(err.value)


def test_candidates_prices_and_baseline_are_read(tmp_path: Path) -> None:
    path = tmp_path / "p.yml"
    path.write_text(
        "evaluation:\n  candidates:\n    - name: new\n    - {name: v1, endpoint: smollm2-chat, served_entity: smollm2-1}\n"
        "    - {name: gpt, endpoint: gpt-4o-external}\n  baseline: v1\n"
        "  prices: {gpt: {input_per_million: 2.5, output_per_million: 10}}\nfoundation_endpoint: fm\n"
    )
    ev = load_project_config(path).evaluation
    assert ev.candidate_names == ["new", "v1", "gpt"] and ev.baseline == "v1"
    assert ev.candidates[1].served_entity == "smollm2-1" and ev.prices["gpt"].output_per_million == 10


@pytest.mark.parametrize(
    ("model", "said"),
    [
        ({"interface": "chatmodel"}, "model.interface: 'chatmodel' is not allowed; allowed: 'pyfunc' or 'chat_model'"),
        (
            {"interface": "chat_model", "source": "code", "path": "agent.py"},
            "model.interface: 'chat_model' is not allowed; chat_model is for the bundled and gguf sources, not 'code'",
        ),
    ],
)
def test_model_interface_is_pyfunc_or_chat_model_for_a_gguf_source(model: dict, said: str) -> None:
    """Issue 31 item 4: ``model.interface`` opts the GGUF chat model into MLflow's ChatModel (streamed on Databricks)."""
    from llmops_nb.config.project import ModelSpec

    assert ModelSpec(interface="chat_model").interface == "chat_model" and ModelSpec().interface == "pyfunc"
    with pytest.raises(ConfigError) as err:
        ProjectConfig.model_validate({"model": model})
    assert str(err.value).startswith(said) and "\n" not in str(err.value)
