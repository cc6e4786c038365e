"""The endpoint form, driven headless as a user would: set values, click buttons."""

from __future__ import annotations

import html
import subprocess
import sys
import typing
from pathlib import Path

import ipywidgets as w
import pytest
import traitlets

from llmops_nb.config.gateway import RateLimit
from llmops_nb.config.project import ProjectConfig, load_project_config, with_model
from llmops_nb.config.providers import ExternalModel, Provider
from llmops_nb.config.served_entities import WorkloadSize, WorkloadType
from llmops_nb.widgets import EndpointForm
from llmops_nb.widgets.form import EXTERNAL, FOUNDATION, parse_tags
from llmops_nb.widgets.model_pick import MODEL_FIELDS, PICK_NEW, PICK_REGISTERED
from tests.models.conftest import ECHO_MODEL

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


# --------------------------------------------------------------------------- the model: registered, or from a file

PICK = "model.pick"


def _registering(form: EndpointForm, **values: object) -> EndpointForm:
    """The form set to "register from a file or folder" with ``values`` (``model.<field>``: value)."""
    return form.set(**{PICK: PICK_NEW}).set(**{f"model.{k}": v for k, v in values.items()})


def html_of(form: EndpointForm, widget: str) -> str:
    """What the form shows beside ``widget`` (unescaped)."""
    return html.unescape(form._labels[widget].value)


def _one_error(form: EndpointForm, widget: str) -> str:
    assert form.config is None and form.deploy_button.disabled and form.save_button.disabled
    assert list(form.errors) == [widget], form.errors
    assert "\n" not in form.errors[widget] and form.errors[widget] in html_of(form, widget)
    return form.errors[widget]


def test_the_bundled_model_starts_as_a_registered_version_picked_from_the_registry(form, base):
    assert form.fields[PICK].value == PICK_REGISTERED and shown(form, PICK)
    assert not any(shown(form, f"model.{name}") for name in MODEL_FIELDS) and form.register_button.layout.display == "none"
    assert shown(form, f"{E0}.entity_name") and sorted(form.fields[f"{E0}.entity_name"].options) == sorted(MODELS)
    form.set(**{f"{E0}.entity_name": "other-model", f"{E0}.entity_version": "7"})
    assert form.config.model == base.model  # serving a registered version changes no model section
    assert form.config.endpoint.served_entities[0].entity_name == "other-model"
    assert form.config.endpoint.served_entities[0].entity_version == "7"


@pytest.mark.parametrize(
    ("source", "fields"),
    [
        ("bundled", {"name", "source"}),
        ("gguf", {"name", "source", "path", "hf_repo", "hf_file", "revision"}),
        ("transformers", {"name", "source", "path", "hf_repo", "revision"}),
        ("code", {"name", "source", "path", "requirements"}),
        ("uc", {"name", "source", "version"}),
    ],
)
def test_each_source_shows_its_own_fields(form, source, fields):
    _registering(form, source=source)
    assert {name for name in MODEL_FIELDS if shown(form, f"model.{name}")} == fields
    assert not shown(form, f"{E0}.entity_name") and not shown(form, f"{E0}.entity_version")  # the model section names it
    assert shown(form, f"{E0}.workload_size") and form.register_button.layout.display is None


def test_a_gguf_file_builds_the_model_section_as_the_file_would(form, base, tmp_path):
    gguf = tmp_path / "my-llm.Q4.gguf"
    gguf.write_bytes(b"GGUF")  # only looked up while typing: register checks the magic and loads it
    _registering(form, name="my-llm", source="gguf", path=str(gguf))
    assert form.errors == {} and not form.deploy_button.disabled
    model = form.config.model
    assert (model.name, model.source, model.path, model.alias) == ("my-llm", "gguf", str(gguf), base.model.alias)
    champion = form.config.endpoint.served_entities[0]
    assert champion.entity_name == "my-llm" and champion.entity_version is None  # register publishes the version
    saved = form.save(tmp_path / "project.yml")
    assert load_project_config(saved).model == model == with_model(base, name="my-llm", source="gguf", path=str(gguf)).model
    form.set(**{PICK: PICK_REGISTERED})
    assert form.config.model == base.model and form.errors == {}


def test_a_code_source_takes_comma_separated_requirements(form, tmp_path):
    code = tmp_path / "agent.py"
    code.write_text(ECHO_MODEL)
    _registering(form, name="echo", source="code", path=str(code), requirements="pyyaml>=6, requests")
    assert form.config.model.requirements == ["pyyaml>=6", "requests"]


def test_a_uc_source_serves_its_version(form):
    _registering(form, name="system.ai.llama_v3_2_1b_instruct", source="uc", version="3")
    champion = form.config.endpoint.served_entities[0]
    assert (champion.entity_name, champion.entity_version) == ("system.ai.llama_v3_2_1b_instruct", "3")
    assert "provisioned throughput" in form.model_note.value


BAD_MODELS = [
    # (model fields set, the widget showing the one line, part of it)
    ({"source": "gguf", "path": "no/such/model.gguf"}, "model.path", "an existing file or folder"),
    ({"source": "gguf"}, "model.path", "needs path"),
    ({"source": "gguf", "path": "configs", "hf_repo": "owner/repo"}, "model.hf_repo", "either path or hf_repo"),
    ({"source": "gguf", "hf_repo": "owner/repo"}, "model.hf_file", "needs both hf_repo and hf_file"),
    ({"source": "gguf", "hf_repo": "not a repo!", "hf_file": "x.gguf"}, "model.hf_repo", "must match pattern"),
    ({"source": "code"}, "model.path", "set_model"),
    ({"source": "uc", "version": "1"}, "model.name", "3-level name"),
    ({"source": "uc", "name": "system.ai.llama"}, "model.version", "needs the Unity Catalog model version"),
    ({"source": "uc", "name": "system.ai.llama", "version": "v1"}, "model.version", "must match pattern"),
    ({"name": ""}, "model.name", "the registered model's name"),
]


@pytest.mark.parametrize(("values", "widget", "says"), BAD_MODELS)
def test_a_bad_model_section_is_one_line_by_its_field_and_nothing_is_written(form, tmp_path, values, widget, says):
    _registering(form, **values)
    message = _one_error(form, widget)
    assert message.startswith(widget + ":") and says in message
    out = tmp_path / "project.yml"
    assert form.save(out) is None and not out.exists()
    assert form.register() is None and "field(s) to fix" in form.status.value
    form.set(**{PICK: PICK_REGISTERED})  # serving a registered version: the hidden fields do not count
    assert form.errors == {} and form.config is not None


def test_register_runs_the_register_step_and_the_champion_serves_the_new_version(base, tmp_path):
    from mlflow import MlflowClient

    from llmops_nb.backends import Backend

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    backend = Backend(kind="local", host=None, token=None, tracking_uri=uri, registry_uri=uri, home=tmp_path)
    form = EndpointForm(base, registered_models=dict(MODELS), backend=backend)
    bad = tmp_path / "broken.py"
    bad.write_text("import mlflow\nraise RuntimeError('no model here')\n")
    _registering(form, name="echo-llm", source="code", path=str(bad))
    assert form.register() is None and "model.path" in form.status.value
    assert not (tmp_path / "mlflow.db").exists() or MlflowClient(uri, uri).search_registered_models() == []  # nothing created
    code = tmp_path / "echo.py"
    code.write_text(ECHO_MODEL)
    form.set(**{"model.path": str(code)})
    out = form.register()
    assert out is not None and (out["model_name"], out["model_version"]) == ("echo-llm", "1")
    client = MlflowClient(uri, uri)
    run = client.get_run(client.get_model_version("echo-llm", "1").run_id)
    assert run.data.tags["llmops_nb.source"] == "code" and run.data.tags["llmops_nb.source_sha256"]
    assert form.fields[PICK].value == PICK_REGISTERED and form.registered_models["echo-llm"] == ["1"]
    champion = form.config.endpoint.served_entities[0]
    assert (champion.entity_name, champion.entity_version) == ("echo-llm", "1")
    assert form.config.model.source == "code" and "registered echo-llm version 1" in form.status.value


def test_deploying_a_model_still_to_register_is_refused_in_the_form(form, tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    form.client = object()  # never called: the refusal comes first
    _registering(form, name="my-llm", source="gguf", path=str(gguf))
    assert form.deploy() is None and "register the model first" in form.status.value
