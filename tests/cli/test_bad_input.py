"""Issue 9, bad input: a table of malformed inputs across config YAML, CLI arguments, notebook
parameters and widget values. Each gives one line naming the field, the value and what is
allowed, and changes nothing: no local process is started and the fake workspace counts zero
write calls.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from llmops_nb.chain import params
from llmops_nb.chain import runner as chain_runner
from llmops_nb.cli.main import main
from llmops_nb.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((ROOT / "tests" / "configs" / "fake-databricks.yml").read_text())
ENTITY = BASE["endpoint"]["served_entities"][0]


def _with(path: str, value: object) -> dict:
    """The base config with ``value`` set at the dotted ``path`` (``[i]`` indexes lists)."""
    import copy
    import re

    doc = copy.deepcopy(BASE)
    keys = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", path)]
    node = doc
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    return doc


NAMED = {**ENTITY, "name": "a", "entity_version": "1"}
EXTERNAL = {
    "external_model": {
        "name": "gpt-4o-mini",
        "provider": "openai",
        "task": "llm/v1/chat",
        "openai_config": {"openai_api_key": "{{secrets/llmops/openai_api_key}}"},
    }
}

#: (case id, config document, text the one-line error must contain)
YAML_CASES = [
    ("name-with-space", _with("endpoint.name", "my endpoint"), "endpoint.name: 'my endpoint'"),
    ("name-too-long", _with("endpoint.name", "x" * 64), "endpoint.name: 'xxxx"),
    ("name-empty", _with("endpoint.name", ""), "endpoint.name: ''"),
    ("name-a-number", _with("endpoint.name", 12), "endpoint.name: 12"),
    ("unknown-top-field", {**BASE, "endpont": {}}, "endpont"),
    ("unknown-endpoint-field", _with("endpoint.replicas", 3), "endpoint.replicas"),
    ("unknown-entity-field", _with("endpoint.served_entities[0].gpu", True), "served_entities[0].gpu"),
    ("workload-type", _with("endpoint.served_entities[0].workload_type", "TPU"), "workload_type: 'TPU'"),
    ("workload-type", _with("endpoint.served_entities[0].workload_type", "TPU"), "workload_type: 'TPU'"),
    (
        "scale-to-zero-type",
        _with("endpoint.served_entities[0].scale_to_zero_enabled", "sometimes"),
        "scale_to_zero_enabled: 'sometimes'",
    ),
    ("version-not-a-number", _with("endpoint.served_entities[0].entity_version", "latest"), "entity_version: 'latest'"),
    ("no-entities", _with("endpoint.served_entities", []), "served_entities"),
    ("entities-not-a-list", _with("endpoint.served_entities", "model"), "served_entities: 'model'"),
    (
        "traffic-sum",
        _with(
            "endpoint",
            {
                **BASE["endpoint"],
                "served_entities": [NAMED],
                "traffic_config": {"routes": [{"served_entity_name": "a", "traffic_percentage": 90}]},
            },
        ),
        "traffic",
    ),
    (
        "route-to-missing-entity",
        _with(
            "endpoint",
            {
                **BASE["endpoint"],
                "served_entities": [NAMED],
                "traffic_config": {"routes": [{"served_entity_name": "ghost", "traffic_percentage": 100}]},
            },
        ),
        "'ghost'",
    ),
    (
        "route-percentage-negative",
        _with("endpoint.traffic_config", {"routes": [{"served_entity_name": "x", "traffic_percentage": -5}]}),
        "traffic_percentage: -5",
    ),
    (
        "plaintext-key",
        _with(
            "endpoint.served_entities",
            [
                {
                    "external_model": {
                        **EXTERNAL["external_model"],
                        "openai_config": {"openai_api_key_plaintext": "sk-live-abcdefghijklmnopqrstuv"},
                    }
                }
            ],
        ),
        "openai_api_key_plaintext",
    ),
    (
        "key-not-a-reference",
        _with(
            "endpoint.served_entities",
            [
                {
                    "external_model": {
                        **EXTERNAL["external_model"],
                        "openai_config": {"openai_api_key": "sk-live-abcdefghijklmnopqrstuv"},
                    }
                }
            ],
        ),
        "openai_api_key",
    ),
    (
        "bad-provider",
        _with("endpoint.served_entities", [{"external_model": {**EXTERNAL["external_model"], "provider": "skynet"}}]),
        "provider: 'skynet'",
    ),
    (
        "bad-task",
        _with("endpoint.served_entities", [{"external_model": {**EXTERNAL["external_model"], "task": "llm/v9/think"}}]),
        "task: 'llm/v9/think'",
    ),
    ("both-kinds", _with("endpoint.served_entities", [{**ENTITY, **EXTERNAL}]), "served_entities[0]"),
    ("mixed-external-and-custom", _with("endpoint.served_entities", [ENTITY, EXTERNAL]), "served_entities"),
    ("negative-rate-limit", _with("endpoint.ai_gateway", {"rate_limits": [{"calls": -1}]}), "calls: -1"),
    ("zero-rate-limit", _with("endpoint.ai_gateway", {"rate_limits": [{"calls": 0}]}), "calls: 0"),
    (
        "rate-limit-period",
        _with("endpoint.ai_gateway", {"rate_limits": [{"calls": 5, "renewal_period": "hour"}]}),
        "renewal_period: 'hour'",
    ),
    ("rate-limit-key", _with("endpoint.ai_gateway", {"rate_limits": [{"calls": 5, "key": "ip"}]}), "key: 'ip'"),
    ("usage-tracking-type", _with("endpoint.ai_gateway", {"usage_tracking_config": {"enabled": "maybe"}}), "enabled: 'maybe'"),
    ("tags-not-a-mapping", _with("endpoint.tags", ["a", "b"]), "tags"),
    ("backend", _with("backend", "aws"), "backend: 'aws'"),
    ("uc-name", _with("model.name", "smollm2"), "model.name: 'smollm2'"),
    ("alias-reserved", _with("model.alias", "v3"), "model.alias: 'v3'"),
    ("temperature", _with("model.temperature", 5), "model.temperature: 5"),
    ("max-tokens", _with("model.max_tokens", 0), "model.max_tokens: 0"),
    ("concurrency", _with("evaluation.concurrency", 0), "evaluation.concurrency: 0"),
    ("margin", _with("evaluation.margin", 2), "evaluation.margin: 2"),
    ("threshold-type", _with("evaluation.thresholds", {"contains_match": "high"}), "contains_match: 'high'"),
]

#: (case id, CLI arguments, text the one-line error must contain)
CLI_CASES = [
    ("model-version", ["deploy", "--model-version", "v2"], "--model-version: 'v2'"),
    ("max-tokens", ["query", "smollm2-chat", "hi", "--max-tokens", "-3"], "max_tokens: -3"),
    ("temperature", ["query", "smollm2-chat", "hi", "--temperature", "9"], "temperature: 9.0"),
    ("empty-prompt", ["query", "smollm2-chat", ""], "prompt: ''"),
    ("json-schema", ["query", "smollm2-chat", "hi", "--json-schema", "nowhere.json"], "--json-schema: 'nowhere.json'"),
    ("tool-stream", ["query", "smollm2-chat", "hi", "--tool", "nowhere.json", "--stream"], "--tool: 'nowhere.json'"),
    ("steps", ["run", "--steps", "register,train"], "steps: 'train'"),
    ("backend", ["deploy", "--backend", "azureml"], "'azureml' is not one of"),
    ("timeout", ["deploy", "--timeout", "0"], "0"),
    ("missing-config", ["deploy", "--config", "nowhere.yml"], "nowhere.yml"),
]

#: (case id, step, parameter overrides, text the one-line error must contain)
PARAM_CASES = [
    ("unknown", "evaluate", {"max_row": 3}, "evaluate.max_row: 3"),
    ("int-as-str", "evaluate", {"max_rows": "3"}, "evaluate.max_rows: '3'"),
    ("bool-as-str", "evaluate", {"resume": "yes"}, "evaluate.resume: 'yes'"),
    ("float-for-int", "deploy", {"timeout_seconds": 2.5}, "deploy.timeout_seconds: 2.5"),
    ("str-for-list", "serve", {"prompts": "hello"}, "serve.prompts: 'hello'"),
    ("secret-looking", "serve", {"openai_api_key": "sk-live-abcdefghijklmnopqrstuv"}, "serve.openai_api_key: '***'"),
]

#: (case id, parameter name, widget string, default, text the one-line error must contain)
WIDGET_CASES = [
    ("int", "max_rows", "ten", 0, "max_rows: 'ten'"),
    ("float", "temperature", "warm", 0.0, "temperature: 'warm'"),
    ("bool", "resume", "perhaps", False, "resume: 'perhaps'"),
    ("list", "prompts", "[unclosed", ["a"], "prompts: '[unclosed'"),
    ("dropdown", "backend", "aws", "", "backend: 'aws'"),
]


def _one_line(text: str, expected: str) -> None:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert expected in lines[0], lines[0]
    assert (
        "is not allowed" in lines[0]
        or "Invalid value" in lines[0]
        or "not one of" in lines[0]
        or "does not exist" in lines[0]
        or "No such file" in lines[0]
    ), lines[0]
    assert "sk-live" not in lines[0]


@pytest.fixture(scope="module")
def fake(tmp_path_factory):  # noqa: ANN001, ANN201
    from llmops_nb.testing import fake_workspace

    with fake_workspace(tmp_path_factory.mktemp("fake")) as ws:
        yield ws


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake) -> Path:  # noqa: ANN001
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "local.yml").write_text((ROOT / "configs" / "local.yml").read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LLMOPS_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    for key, value in fake.env().items():
        monkeypatch.setenv(key, value)
    fake.reset()
    return tmp_path


def _nothing_changed(project: Path, fake) -> None:  # noqa: ANN001
    assert fake.write_calls() == []  # zero write calls on the workspace
    assert not (project / ".llmops").exists()  # no local workspace started
    assert not (project / "mlflow.db").exists() and not (project / "runs").exists()


def test_the_table_has_at_least_40_inputs() -> None:
    assert len(YAML_CASES) + len(CLI_CASES) + len(PARAM_CASES) + len(WIDGET_CASES) >= 40


@pytest.mark.parametrize(("case", "doc", "expected"), YAML_CASES, ids=[c[0] for c in YAML_CASES])
def test_bad_config_yaml(case: str, doc: dict, expected: str, project: Path, fake) -> None:  # noqa: ANN001
    path = project / "configs" / f"{case}.yml"
    path.write_text(yaml.safe_dump(doc))
    for args in (["deploy", "--backend", "databricks", "--config", str(path)], ["run", "--config", str(path)]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, result.output
        _one_line(result.output, expected)
    _nothing_changed(project, fake)


@pytest.mark.parametrize(("case", "args", "expected"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_cli_arguments(case: str, args: list[str], expected: str, project: Path, fake) -> None:  # noqa: ANN001
    result = CliRunner().invoke(
        main, [*args, *(["--backend", "databricks"] if "--backend" not in args and args[0] != "run" else [])]
    )
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("error:")]) <= 1
    _nothing_changed(project, fake)


@pytest.mark.parametrize(("case", "step", "overrides", "expected"), PARAM_CASES, ids=[c[0] for c in PARAM_CASES])
def test_bad_notebook_parameters(case: str, step: str, overrides: dict, expected: str, project: Path, fake) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError) as err:
        chain_runner.run(
            ROOT / "tests" / "configs" / "fake-databricks.yml", overrides={step: overrides}, progress=False, log=lambda _: None
        )
    _one_line(str(err.value), expected)
    _nothing_changed(project, fake)


@pytest.mark.parametrize(("case", "name", "value", "default", "expected"), WIDGET_CASES, ids=[c[0] for c in WIDGET_CASES])
def test_bad_widget_values(
    case: str, name: str, value: str, default: object, expected: str, monkeypatch: pytest.MonkeyPatch, project: Path, fake
) -> None:  # noqa: ANN001
    from tests.chain.test_params import FakeDbutils

    monkeypatch.setattr(params, "_dbutils", lambda: FakeDbutils({name: value}))
    with pytest.raises(ConfigError) as err:
        params.notebook_params({name: default}, [name])
    _one_line(str(err.value), expected)
    _nothing_changed(project, fake)
