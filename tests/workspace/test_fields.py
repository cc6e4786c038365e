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


def test_the_gguf_chat_model_is_said_to_stream_here_and_answer_whole_on_databricks(tmp_path: Path) -> None:
    """A plain PythonModel with predict_stream (our GGUF chat model, saved by real MLflow): the local
    workspace streams it, Databricks answers stream: true with one JSON completion (issue 31, item 4)."""
    from llmops_nb.models.pyfunc import gguf_pyfunc
    from llmops_nb.protocol.streaming import WHOLE_ON_DATABRICKS
    from llmops_nb.workspace.runners.fields import streaming_note

    gguf_pyfunc().save(tmp_path / "gguf")
    note = streaming_note(tmp_path / "gguf")
    assert note is not None and "\n" not in note
    assert note.startswith("stream: true: streamed here through its predict_stream; ") and WHOLE_ON_DATABRICKS in note
    assert "metadata.task='llm/v1/chat'" in note


@pytest.mark.parametrize(
    ("task", "streamable", "said"),
    [
        ("agent/v1/chat", True, None),  # ChatModel
        ("agent/v2/chat", True, None),  # ChatAgent
        ("agent/v1/responses", True, None),  # ResponsesAgent
        ("llm/v1/chat", False, "stream: true: streamed here as one delta; on Databricks"),  # transformers, an older version
        (None, True, "stream: true: streamed here through its predict_stream; on Databricks"),
    ],
)
def test_only_databricks_streaming_interfaces_go_unsaid(tmp_path: Path, task, streamable, said) -> None:
    from llmops_nb.workspace.runners.fields import streaming_note

    meta = {"task": task} if task else {}
    d = _mlmodel(tmp_path, flavors={"python_function": {"streamable": streamable}}, metadata=meta)
    note = streaming_note(d)
    assert (note is None) if said is None else (note is not None and note.startswith(said))
    assert streaming_note(None) is None and streaming_note(tmp_path / "nothing") is None


def test_a_chat_model_refuses_at_the_top_level_what_it_takes_in_custom_inputs(tmp_path) -> None:
    """Issue 31 item 4: an MLflow ChatModel's signature would drop seed (ChatParams has none), on
    Databricks too; the local workspace refuses it with the way that works, custom_inputs."""
    from llmops_nb.workspace.runners.fields import custom_input_fields

    meta = {"llmops_nb.chat_fields": ["max_tokens", "custom_inputs"], "llmops_nb.interface": "chat_model"}
    d = _mlmodel(tmp_path, flavors={"python_function": {}}, metadata={**meta, "llmops_nb.custom_inputs": ["seed"]})
    fields, kind = model_fields(d)
    assert kind == "llmops-nb ChatModel" and custom_input_fields(d) == {"seed"}
    check_fields({"messages": [], "max_tokens": 5, "custom_inputs": {"seed": 7}}, fields, "e", kind, custom_input_fields(d))
    with pytest.raises(
        ApiError, match=r"^seed: 7 is not allowed at the top level for served entity e \(llmops-nb ChatModel\)"
    ) as e:
        check_fields({"messages": [], "seed": 7}, fields, "e", kind, custom_input_fields(d))
    assert 'send it in custom_inputs: {"custom_inputs": {"seed": ...}}' in str(e.value)
    with pytest.raises(ApiError, match=r"^top_p: 0.5 is not allowed for served entity e \(llmops-nb ChatModel\), which does not"):
        check_fields({"messages": [], "top_p": 0.5}, fields, "e", kind, custom_input_fields(d))
    assert custom_input_fields(None) == frozenset()
