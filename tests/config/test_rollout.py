"""The ``rollout:`` section (issue 33): canary settings, and bad input as one line naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llmops_nb.config.project import ProjectConfig, load_project_config
from llmops_nb.config.rollout import RolloutConfig
from llmops_nb.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _project(rollout: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {**yaml.safe_load((ROOT / "configs" / "local.yml").read_text()), "rollout": rollout, **top}


def test_the_default_is_replace_and_the_issue_example_parses(tmp_path: Path) -> None:
    assert ProjectConfig.model_validate(_project({})).rollout.strategy == "replace"
    example = {"strategy": "canary", "steps": [10, 50, 100], "min_requests": 40, "max_wait_s": 600, "max_error_rate": 0.05}
    path = tmp_path / "p.yml"
    path.write_text(yaml.safe_dump(_project(example)))
    rollout = load_project_config(path).rollout
    assert rollout.canary and rollout.steps == [10, 50, 100] and rollout.min_requests == 40
    assert (rollout.max_wait_s, rollout.max_error_rate, rollout.max_latency_p95_ratio) == (600, 0.05, 2.0)


@pytest.mark.parametrize(
    ("rollout", "message"),
    [
        ({"strategy": "canary", "steps": [10, 5, 100]}, "rollout.steps: [10, 5, 100] is not allowed; each step must be larger"),
        ({"strategy": "canary", "steps": [10, 50]}, "rollout.steps: [10, 50] is not allowed; percentages in 1..100"),
        ({"strategy": "canary", "steps": [0, 100]}, "rollout.steps: [0, 100] is not allowed; percentages in 1..100"),
        ({"max_latency_p95_ratio": 0}, "rollout.max_latency_p95_ratio: 0.0 is not allowed; a ratio > 0"),
        ({"max_latency_p95_ratio": -1.5}, "rollout.max_latency_p95_ratio: -1.5 is not allowed; a ratio > 0"),
        ({"strategy": "blue-green"}, "rollout.strategy: 'blue-green' is not allowed"),
        ({"quality": {"requests": 5}}, "rollout.quality.judge_endpoint: None is not allowed; the chat endpoint that compares"),
        ({"quality": {"requests": 0, "judge_endpoint": "j"}}, "rollout.quality.requests: 0 is not allowed; must be greater"),
        ({"quality": {"requests": 1001, "judge_endpoint": "j"}}, "rollout.quality.requests: 1001 is not allowed; must be less"),
        (
            {"quality": {"judge_endpoint": "j"}},
            "endpoint.ai_gateway.inference_table_config.enabled: None is not allowed; rollout.quality reads the step's live",
        ),
        ({"inference_table_lag_s": 0}, "rollout.inference_table_lag_s: 0 is not allowed;"),
    ],
)
def test_bad_rollout_settings_are_one_line(tmp_path: Path, rollout: dict[str, Any], message: str) -> None:
    path = tmp_path / "p.yml"
    path.write_text(yaml.safe_dump(_project(rollout)))
    with pytest.raises(ConfigError) as caught:
        load_project_config(path)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_canary_on_a_foundation_or_external_endpoint_is_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"^rollout.strategy: 'canary' is not allowed; .*not a foundation endpoint; use replace$"
    ):
        ProjectConfig.model_validate({"foundation_endpoint": "databricks-meta-llama", "rollout": {"strategy": "canary"}})
    external = {
        "name": "ext-chat",
        "served_entities": [
            {
                "name": "gpt",
                "external_model": {
                    "name": "gpt-4o",
                    "provider": "openai",
                    "task": "llm/v1/chat",
                    "openai_config": {"openai_api_key": "{{secrets/scope/key}}"},
                },
            }
        ],
    }
    with pytest.raises(ConfigError, match=r"not an endpoint of external models; use replace$"):
        ProjectConfig.model_validate({"endpoint": external, "rollout": {"strategy": "canary"}})
    assert ProjectConfig.model_validate({"endpoint": external}).rollout.strategy == "replace"


def test_rollout_config_alone() -> None:
    assert RolloutConfig(strategy="canary", steps=[100]).steps == [100]


def test_on_databricks_the_documented_lag_is_the_default_and_max_wait_s_must_cover_it() -> None:
    from llmops_nb.config.rollout import DOCUMENTED_INFERENCE_TABLE_LAG_S, check_on_databricks

    project = ProjectConfig.model_validate(
        _project({"strategy": "canary", "warehouse_id": "wh-1", "max_wait_s": 3600})
        | {"endpoint": {**_project({})["endpoint"], "ai_gateway": {"inference_table_config": {
            "catalog_name": "main", "schema_name": "llmops", "enabled": True}}}}
    )  # fmt: skip
    assert project.rollout.inference_table_lag_s == DOCUMENTED_INFERENCE_TABLE_LAG_S == 3600
    check_on_databricks(project.rollout, project.endpoint)  # enough
    project.rollout.max_wait_s = 600  # the default max_wait_s is shorter than the documented lag
    with pytest.raises(ConfigError, match=r"^rollout.max_wait_s: 600 is not allowed; at least rollout.inference_table_lag_s"):
        check_on_databricks(project.rollout, project.endpoint)
    check_on_databricks(RolloutConfig(), None)  # replace needs nothing


def test_the_strategy_parameter_replaces_the_configs_and_is_checked_as_the_file_is() -> None:
    from llmops_nb.config.project import with_rollout

    project = ProjectConfig.model_validate(_project({"min_requests": 7}))
    assert with_rollout(project) is project
    canary = with_rollout(project, strategy="canary")
    assert canary.rollout.canary and canary.rollout.min_requests == 7 and canary.endpoint == project.endpoint
    assert project.rollout.strategy == "replace"
    with pytest.raises(ConfigError, match=r"^strategy: 'blue-green' is not allowed; "):
        with_rollout(project, strategy="blue-green")
    foundation = ProjectConfig.model_validate({"foundation_endpoint": "databricks-meta-llama"})
    with pytest.raises(ConfigError, match=r"^strategy: 'canary' is not allowed; canary steps need .*not a foundation endpoint"):
        with_rollout(foundation, strategy="canary")


def test_a_quality_judge_must_be_another_endpoint() -> None:
    project = _project({"strategy": "canary", "quality": {"requests": 10, "judge_endpoint": "judge"}})
    table = {"catalog_name": "main", "schema_name": "logs", "enabled": True}
    project["endpoint"]["ai_gateway"] = {**(project["endpoint"].get("ai_gateway") or {}), "inference_table_config": table}
    quality = ProjectConfig.model_validate(project).rollout.quality
    assert quality is not None and (quality.requests, quality.judge_endpoint) == (10, "judge")
    project["rollout"]["quality"]["judge_endpoint"] = project["endpoint"]["name"]
    with pytest.raises(
        ConfigError, match=r"^rollout.quality.judge_endpoint: 'smollm2-chat' is not allowed; another chat endpoint"
    ):
        ProjectConfig.model_validate(project)
