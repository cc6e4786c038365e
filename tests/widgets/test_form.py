"""The endpoint form, driven headless as a user would: set values, click buttons."""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

import ipywidgets as w
import pytest
import traitlets

from llmops_nb.config.gateway import RateLimit
from llmops_nb.config.project import ProjectConfig, load_project_config
from llmops_nb.config.providers import ExternalModel, Provider
from llmops_nb.config.served_entities import WorkloadSize, WorkloadType
from llmops_nb.widgets import EndpointForm
from llmops_nb.widgets.form import EXTERNAL, FOUNDATION, parse_tags

ROOT = Path(__file__).resolve().parents[2]
MODELS = {"smollm2-135m-instruct": ["2", "1"], "other-model": ["7"]}
E0, E1 = "endpoint.served_entities[0]", "endpoint.served_entities[1]"
GW = "endpoint.ai_gateway"


@pytest.fixture
def base() -> ProjectConfig:
    return load_project_config(ROOT / "configs" / "local.yml")


@pytest.fixture
def form(base) -> EndpointForm:
    return EndpointForm(base, registered_models=MODELS, foundation_models=["databricks-smollm2-135m-instruct"])


def shown(form: EndpointForm, path: str) -> bool:
    return form._rows[path].layout.display != "none"


def test_starts_from_the_base_config_and_is_valid(form, base):
    assert form.errors == {}
    assert not form.deploy_button.disabled
    assert form.config.endpoint.to_databricks_body() == base.endpoint.to_databricks_body()
    assert form.config.model == base.model and form.config.evaluation == base.evaluation


def test_widgets_follow_the_schema(form):
    f = form.fields
    assert list(f[f"{E0}.workload_size"].options) == list(typing.get_args(WorkloadSize))  # a Combobox: custom sizes too
    assert list(f[f"{E0}.workload_type"].options) == ["", *typing.get_args(WorkloadType)]  # "": Databricks' default
    assert list(f[f"{E0}.external_model.provider"].options) == list(typing.get_args(Provider))
    assert list(f[f"{E0}.external_model.task"].options) == list(typing.get_args(ExternalModel.model_fields["task"].annotation))
    assert list(f[f"{GW}.rate_limits[0].key"].options) == [
        "",
        *typing.get_args(typing.get_args(RateLimit.model_fields["key"].annotation)[0]),
    ]
    assert isinstance(f[f"{E0}.scale_to_zero_enabled"], w.Checkbox)
    assert isinstance(f[f"{E0}.entity_name"], w.Combobox) and "other-model" in f[f"{E0}.entity_name"].options
    assert list(f[f"{E0}.entity_version"].options) == ["2", "1"]
    f[f"{E0}.entity_name"].value = "other-model"
    assert list(f[f"{E0}.entity_version"].options) == ["7"]
    with pytest.raises(traitlets.TraitError):  # a dropdown refuses values outside the schema
        f[f"{E0}.workload_type"].value = "TPU"
    f[f"{E0}.workload_size"].value = "my-custom-size"  # Databricks takes custom sizes (SDK docstring)
    assert form.errors == {}


def test_invalid_default_base_is_not_needed():
    form = EndpointForm()
    assert form.config is not None and form.config.endpoint.name == "my-endpoint"


BAD_VALUES = [
    # (values set, the widget that shows the error, part of the message)
    ({"endpoint.name": ""}, "endpoint.name", "an endpoint name"),
    ({"endpoint.name": "my endpoint!"}, "endpoint.name", "letters, digits"),
    ({"endpoint.name": "x" * 64}, "endpoint.name", "1-63 characters"),
    ({f"{E0}.entity_name": ""}, f"{E0}.entity_name", "at least 1 character"),
    ({f"{E0}.entity_version": "latest"}, f"{E0}.entity_version", "a version number"),
    ({f"{E0}.name": "bad/name"}, f"{E0}.name", "letters, digits"),
    ({"split": True}, f"{E0}.name", "give a name when entity_version is omitted"),
    ({"split": True, f"{E0}.name": "a", f"{E1}.name": "a"}, f"{E1}.name", "must be unique"),
    ({"backend": "databricks"}, "form", "model.name: 'smollm2-135m-instruct' is not allowed; Unity Catalog"),
    ({"kind": EXTERNAL}, f"{E0}.external_model.name", "at least 1 character"),
    (
        {"kind": EXTERNAL, f"{E0}.external_model.name": "gpt-4o-mini"},
        f"{E0}.external_model.openai_config.openai_api_key",
        "required",
    ),
    (
        {
            "kind": EXTERNAL,
            f"{E0}.external_model.name": "gpt-4o-mini",
            f"{E0}.external_model.openai_config.openai_api_key": "sk-proj-abcdefghijklmnopqrstuvwxyz0123",
        },
        f"{E0}.external_model.openai_config.openai_api_key",
        "must be a secret reference",
    ),
    (
        {
            "kind": EXTERNAL,
            f"{E0}.external_model.name": "claude",
            f"{E0}.external_model.provider": "amazon-bedrock",
            f"{E0}.external_model.amazon_bedrock_config.aws_access_key_id": "{{secrets/aws/id}}",
            f"{E0}.external_model.amazon_bedrock_config.aws_secret_access_key": "{{secrets/aws/key}}",
        },
        f"{E0}.external_model.amazon_bedrock_config.aws_region",
        "required",
    ),
    (
        {
            "kind": EXTERNAL,
            "split": True,
            f"{E0}.external_model.name": "a",
            f"{E1}.external_model.name": "b",
            f"{E0}.external_model.openai_config.openai_api_key": "{{secrets/s/k}}",
            f"{E1}.external_model.openai_config.openai_api_key": "{{secrets/s/k}}",
            f"{E1}.external_model.task": "llm/v1/embeddings",
        },
        f"{E1}.external_model.task",
        "share one task",
    ),
    ({f"{GW}.rate_limits[0].calls": "many"}, f"{GW}.rate_limits[0].calls", "integer"),
    ({f"{GW}.rate_limits[0].calls": "0"}, f"{GW}.rate_limits[0].calls", "greater than or equal to 1"),
    (
        {f"{GW}.rate_limits[0].calls": "", f"{GW}.rate_limits[0].tokens": "-5"},
        f"{GW}.rate_limits[0].tokens",
        "greater than or equal to 1",
    ),
    ({f"{GW}.rate_limits[0].principal": "alice"}, f"{GW}.rate_limits[0].principal", "only with key user"),
    ({"endpoint.tags": "project=llmops\nno-equals-sign"}, "endpoint.tags", "one key=value per line"),
    ({"endpoint.tags": "a=1\na=2"}, "endpoint.tags", "each tag key once"),
    ({"kind": FOUNDATION, "foundation_endpoint": None}, "foundation_endpoint", "an endpoint name"),
]


@pytest.mark.parametrize("values, path, message", BAD_VALUES, ids=[f"{i:02d}-{p[2]}" for i, p in enumerate(BAD_VALUES)])
def test_bad_values_show_next_to_their_field_and_block_deploy(form, values, path, message):
    form.set(**values)
    assert path in form.errors, form.errors
    assert message in form.errors[path]
    label = form._labels[path] if path != "form" else form.form_error  # base-config errors: above the buttons
    assert message.replace("'", "&#x27;") in label.value  # rendered next to the widget
    assert "\n" not in form.errors[path]
    assert form.deploy_button.disabled and form.save_button.disabled
    assert form.validate_button.click() is None and form.config is None
    assert "to fix" in form.status.value


def test_secrets_never_shown(form):
    key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123"
    form.set(**{"kind": EXTERNAL, f"{E0}.external_model.openai_config.openai_api_key": key})
    assert all(key not in message for message in form.errors.values())


def test_fixing_the_value_clears_the_error(form):
    form.set(**{"endpoint.name": "no spaces please"})
    assert form.deploy_button.disabled
    form.set(**{"endpoint.name": "fixed-name"})
    assert form.errors == {} and not form.deploy_button.disabled
    assert form._labels["endpoint.name"].value == ""


def test_champion_challenger_split(form):
    form.set(
        **{
            "split": True,
            f"{E0}.entity_version": "1",
            f"{E1}.entity_version": "2",
            f"{E1}.entity_name": "smollm2-135m-instruct",
            "endpoint.traffic_config": 70,
        }
    )
    assert form.errors == {}
    ep = form.config.endpoint
    assert [e.name for e in ep.served_entities] == ["smollm2-135m-instruct-1", "smollm2-135m-instruct-2"]
    assert [(r.served_entity_name, r.traffic_percentage) for r in ep.traffic_config.routes] == [
        ("smollm2-135m-instruct-1", 70),
        ("smollm2-135m-instruct-2", 30),
    ]
    assert "70% / challenger 30%" in form.split_label.value
    form.set(split=False)
    assert len(form.config.endpoint.served_entities) == 1 and form.config.endpoint.traffic_config is None


def test_external_model_shows_the_providers_fields(form):
    form.set(
        **{
            "kind": EXTERNAL,
            f"{E0}.external_model.name": "claude-3-5-haiku",
            f"{E0}.external_model.provider": "anthropic",
            f"{E0}.external_model.anthropic_config.anthropic_api_key": "{{secrets/llm/anthropic}}",
        }
    )
    assert form.errors == {}
    ext = form.config.endpoint.served_entities[0].external_model
    assert ext.provider == "anthropic" and ext.anthropic_config.anthropic_api_key == "{{secrets/llm/anthropic}}"
    assert shown(form, f"{E0}.external_model.anthropic_config.anthropic_api_key")
    assert not shown(form, f"{E0}.external_model.openai_config.openai_api_key")
    assert not shown(form, f"{E0}.workload_size")  # registered models only


def test_workload_and_gateway_fields(form):
    form.set(
        **{
            f"{E0}.workload_size": "Large",
            f"{E0}.workload_type": "GPU_SMALL",
            f"{E0}.scale_to_zero_enabled": True,
            f"{GW}.rate_limits[0].calls": "",
            f"{GW}.rate_limits[0].tokens": "5000",
            f"{GW}.rate_limits[0].key": "user",
            f"{GW}.usage_tracking_config.enabled": False,
            "endpoint.tags": "team=ml\n\ncost-center = 42",
        }
    )
    assert form.errors == {}
    ep = form.config.endpoint
    e = ep.served_entities[0]
    assert (e.workload_size, e.workload_type, e.scale_to_zero_enabled) == ("Large", "GPU_SMALL", True)
    limit = ep.ai_gateway.rate_limits[0]
    assert (limit.calls, limit.tokens, limit.key) == (None, 5000, "user")
    assert ep.ai_gateway.usage_tracking_config.enabled is False
    assert ep.tags == {"team": "ml", "cost-center": "42"}


def test_save_yaml_is_what_load_project_config_reads(form, tmp_path):
    out = tmp_path / "sub" / "my-endpoint.yml"
    form.set(**{"endpoint.name": "from-the-form", "output_path": str(out), f"{E0}.entity_version": "2"})
    form.save_button.click()
    assert out.is_file() and "saved" in form.status.value
    assert load_project_config(out) == form.config
    assert load_project_config(out).endpoint.served_entities[0].entity_version == "2"


def test_save_refuses_an_invalid_config(form, tmp_path):
    out = tmp_path / "bad.yml"
    form.set(**{"endpoint.name": "", "output_path": str(out)})
    assert form.save() is None and not out.exists()


def test_foundation_model(form):
    form.set(kind=FOUNDATION)
    assert form.fields["foundation_endpoint"].value == "databricks-smollm2-135m-instruct"
    assert form.config.foundation_endpoint == "databricks-smollm2-135m-instruct" and form.config.endpoint is None
    assert shown(form, "foundation_endpoint") and not shown(form, "endpoint.name")


def test_parse_tags():
    assert parse_tags(" a = 1 \n\nb=") == {"a": "1", "b": ""}


def test_importing_the_package_does_not_import_ipywidgets():
    code = "import sys, llmops_nb, llmops_nb.config, llmops_nb.steps; print('ipywidgets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_tags_box_grows_with_its_lines(form):
    tags = form.fields["endpoint.tags"]
    lines = len(tags.value.splitlines())
    assert lines >= 1 and tags.rows == lines + 1  # every line shown, one spare
    tags.value += "\nowner=data-science\nteam=ml"
    assert tags.rows == lines + 3
    tags.value = ""
    assert tags.rows == 2
