"""What each kind of served entity honours (runners/fields.py), read from the served model's
MLmodel as the scoring-server runner does, and the external providers' rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from llmops_nb.workspace.apierror import ApiError
from llmops_nb.workspace.runners.base import RunnerContext
from llmops_nb.workspace.runners.external import ExternalModelRunner
from llmops_nb.workspace.runners.faults import FaultInjector
from llmops_nb.workspace.runners.fields import BASIC, TRANSFORMERS, WORKSPACE, check_fields, is_set, model_fields


def _mlmodel(tmp_path: Path, **meta) -> Path:
    (tmp_path / "MLmodel").write_text(yaml.safe_dump(meta), encoding="utf-8")
    return tmp_path


def test_a_model_logged_by_llmops_nb_names_its_fields(tmp_path) -> None:
    d = _mlmodel(tmp_path, flavors={"python_function": {"artifacts": {"gguf": {}}}}, metadata={"llmops_nb.chat_fields": ["n"]})
    fields, kind = model_fields(d)
    assert fields == WORKSPACE | {"n"} and kind == "llmops-nb chat model"


def test_an_older_gguf_model_honours_the_basic_fields_only(tmp_path) -> None:
    d = _mlmodel(tmp_path, flavors={"python_function": {"artifacts": {"gguf": {}}}})
    assert model_fields(d)[0] == BASIC


def test_a_transformers_model(tmp_path) -> None:
    d = _mlmodel(tmp_path, flavors={"python_function": {}, "transformers": {}})
    fields, kind = model_fields(d)
    assert fields == TRANSFORMERS and "n" not in fields and kind == "transformers model"


def test_a_custom_model_honours_its_signature(tmp_path) -> None:
    inputs = json.dumps([{"name": "messages", "type": "string"}, {"name": "temperature", "type": "double"}])
    d = _mlmodel(tmp_path, flavors={"python_function": {}}, signature={"inputs": inputs})
    fields, _ = model_fields(d)
    assert "temperature" in fields and "max_tokens" not in fields
    with pytest.raises(ApiError, match=r"^max_tokens: 5 is not allowed for served entity e \(custom model \(its signature\)\)"):
        check_fields({"messages": [], "max_tokens": 5}, fields, "e", "custom model (its signature)")


def test_neutral_values_ask_nothing() -> None:
    assert not is_set("n", 1) and is_set("n", 2)
    assert not is_set("logprobs", False) and is_set("logprobs", True)
    assert not is_set("presence_penalty", 0.0) and is_set("presence_penalty", 0.1)
    assert not is_set("tools", []) and is_set("tools", [{"type": "function"}])


def _external(tmp_path: Path, provider: str) -> ExternalModelRunner:
    ctx = RunnerContext(home=tmp_path, tracking_uri=None, faults=FaultInjector(), fake=True)
    return ExternalModelRunner("ep", {"name": "ext", "external_model": {"provider": provider, "name": "x"}}, ctx)


def test_an_openai_entity_forwards_every_field(tmp_path) -> None:
    _external(tmp_path, "openai").check_request({"messages": [], "logprobs": True, "tools": [{"type": "function"}]})


@pytest.mark.parametrize(
    "body,field",
    [
        ({"messages": [], "n": 2}, "n: 2"),
        ({"messages": [], "response_format": {"type": "json_object"}}, "response_format:"),
        ({"messages": [{"role": "tool", "content": "r"}]}, "messages[0].role: 'tool'"),
    ],
)
def test_an_anthropic_entity_refuses_what_it_cannot_send(tmp_path, body, field) -> None:
    with pytest.raises(ApiError) as err:
        _external(tmp_path, "anthropic").check_request(body)
    assert err.value.status == 400 and str(err.value.body()["message"]).startswith(field)
    assert "ext" in err.value.body()["message"]
