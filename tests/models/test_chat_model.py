"""The GGUF chat pyfunc, saved and loaded back with mlflow.pyfunc.load_model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llmops_nb.errors import ConfigError, ModelError

QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory):
    import mlflow

    from llmops_nb.models.pyfunc import pyfunc_kwargs

    path = tmp_path_factory.mktemp("model") / "chat"
    mlflow.pyfunc.save_model(str(path), **pyfunc_kwargs(generation={"max_tokens": 5}))
    return mlflow.pyfunc.load_model(str(path))


def test_import_is_light() -> None:
    code = "import sys, llmops_nb.models; assert not {'mlflow', 'llama_cpp'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_generation_key_is_one_line_error() -> None:
    from llmops_nb.models.pyfunc import model_config

    with pytest.raises(ConfigError, match="generation: 'max_new_tokens'") as err:
        model_config({"max_new_tokens": 5})
    assert "\n" not in str(err.value)


def test_dataframe_request_is_parsed() -> None:
    import numpy as np
    import pandas as pd

    from llmops_nb.models.chat_model import parse_request

    frame = pd.DataFrame([{"messages": np.array(QUESTION), "max_tokens": 4, "temperature": np.nan}])
    assert parse_request(frame) == {"messages": QUESTION, "max_tokens": 4}


@pytest.mark.model
def test_bundled_gguf_exists() -> None:
    from llmops_nb.models import bundled_gguf_path

    path = bundled_gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


@pytest.mark.model
def test_completion_has_choices_and_usage(chat) -> None:
    out = chat.predict({"messages": QUESTION, "max_tokens": 16, "temperature": 0.0})
    assert out["object"] == "chat.completion" and out["model"] == "smollm2-135m-instruct"
    choice = out["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"].strip()
    assert choice["finish_reason"] in ("stop", "length")
    usage = out["usage"]
    assert usage["prompt_tokens"] > 0 and 0 < usage["completion_tokens"] <= 16
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.mark.model
def test_max_tokens_default_comes_from_model_config(chat) -> None:
    out = chat.predict({"messages": [{"role": "user", "content": "Write a long story."}]})
    assert out["usage"]["completion_tokens"] == 5 and out["choices"][0]["finish_reason"] == "length"


@pytest.mark.model
def test_greedy_is_deterministic(chat) -> None:
    body = {"messages": QUESTION, "max_tokens": 24, "temperature": 0.0}
    first, second = chat.predict(body), chat.predict(body)
    assert first["choices"][0]["message"] == second["choices"][0]["message"]


@pytest.mark.model
def test_stop_string_cuts_the_answer(chat) -> None:
    body = {"messages": QUESTION, "max_tokens": 24, "temperature": 0.0}
    full = chat.predict(body)["choices"][0]["message"]["content"]
    words = full.split()
    stop = words[len(words) // 2]
    stopped = chat.predict({**body, "stop": [stop]})["choices"][0]
    assert stopped["message"]["content"] == full[: full.index(stop)]
    assert stopped["finish_reason"] == "stop"


@pytest.mark.model
def test_too_long_prompt_is_a_clear_error(chat) -> None:
    long = [{"role": "user", "content": "hello " * 3000}]
    with pytest.raises(ModelError, match="exceed context window of 2048") as err:
        chat.predict({"messages": long, "max_tokens": 8})
    assert "\n" not in str(err.value)
    # the model still answers afterwards
    assert chat.predict({"messages": QUESTION, "max_tokens": 4})["choices"]


@pytest.mark.model
def test_bad_max_tokens_is_one_line(chat) -> None:
    with pytest.raises(ModelError, match="max_tokens: 0 is not allowed"):
        chat.predict({"messages": QUESTION, "max_tokens": 0})


def test_missing_gguf_path_is_config_error(tmp_path: Path) -> None:
    from llmops_nb.models.pyfunc import pyfunc_kwargs

    with pytest.raises(ConfigError, match="gguf_path"):
        pyfunc_kwargs(tmp_path / "nope.gguf")


# ---- issue 29: n, logprobs, response_format and forced tool calls, plain and streamed -------
ANSWER_SCHEMA = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 16}}, "required": ["answer"]}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "the weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 24}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


def _assembled(chat, body: dict) -> dict:
    from llmops_nb.protocol.streaming import assemble

    return assemble(chat.predict_stream(body))


@pytest.mark.model
@pytest.mark.parametrize("streamed", [False, True])
def test_n_gives_n_choices(chat, streamed) -> None:
    body = {"messages": QUESTION, "max_tokens": 6, "n": 2, "temperature": 1.0}
    out = _assembled(chat, body) if streamed else chat.predict(body)
    assert [c["index"] for c in out["choices"]] == [0, 1]
    assert all(c["message"]["content"] and c["finish_reason"] in ("stop", "length") for c in out["choices"])
    assert out["usage"]["completion_tokens"] <= 12


@pytest.mark.model
def test_n_above_the_batch_is_refused(chat) -> None:
    with pytest.raises(ModelError, match="n: 9 is not allowed"):
        chat.predict({"messages": QUESTION, "n": 9})


@pytest.mark.model
def test_json_schema_answers_parse_and_validate_on_20_prompts(chat) -> None:
    import json

    import jsonschema

    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA}}
    topics = "rivers bread chess rain tigers glass music clocks snow bees maps salt ships moons paper wolves tea iron owls kites"
    for i, topic in enumerate(topics.split()):
        body = {"messages": [{"role": "user", "content": f"Say one word about {topic}."}], "max_tokens": 40}
        body["response_format"] = fmt
        out = _assembled(chat, body) if i % 4 == 0 else chat.predict(body)
        choice = out["choices"][0]
        assert choice["finish_reason"] == "stop", choice
        jsonschema.validate(json.loads(choice["message"]["content"]), ANSWER_SCHEMA)


@pytest.mark.model
def test_json_object_mode_gives_an_object(chat) -> None:
    import json

    body = {"messages": QUESTION, "max_tokens": 40, "response_format": {"type": "json_object"}, "temperature": 0.0}
    choice = chat.predict(body)["choices"][0]
    if choice["finish_reason"] == "stop":
        assert isinstance(json.loads(choice["message"]["content"]), dict)
    assert choice["message"]["content"].lstrip().startswith("{")


@pytest.mark.model
@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("tool_choice", [{"type": "function", "function": {"name": "get_weather"}}, "required"])
def test_a_forced_tool_call_has_arguments_that_parse(chat, streamed, tool_choice) -> None:
    import json

    import jsonschema

    tools = [WEATHER] if isinstance(tool_choice, dict) else [WEATHER, CLOCK]
    body = {"messages": [{"role": "user", "content": "Weather in Paris for 3 days?"}], "max_tokens": 48}
    body.update(tools=tools, tool_choice=tool_choice)
    out = _assembled(chat, body) if streamed else chat.predict(body)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    name = call["function"]["name"]
    params = {t["function"]["name"]: t["function"]["parameters"] for t in tools}[name]
    jsonschema.validate(json.loads(call["function"]["arguments"]), params)


@pytest.mark.model
def test_tool_choice_auto_is_refused(chat) -> None:
    with pytest.raises(ModelError, match="tool_choice: 'auto' is not allowed"):
        chat.predict({"messages": QUESTION, "tools": [WEATHER], "tool_choice": "auto"})


@pytest.mark.model
@pytest.mark.parametrize("streamed", [False, True])
def test_logprobs_come_per_token(chat, streamed) -> None:
    import math

    body = {"messages": QUESTION, "max_tokens": 6, "temperature": 0.0, "logprobs": True, "top_logprobs": 3}
    out = _assembled(chat, body) if streamed else chat.predict(body)
    choice = out["choices"][0]
    entries = choice["logprobs"]["content"]
    assert len(entries) == out["usage"]["completion_tokens"]
    assert b"".join(bytes(e["bytes"]) for e in entries).decode() == choice["message"]["content"]
    for e in entries:
        assert e["logprob"] <= 0 and len(e["top_logprobs"]) == 3
        # greedy: the chosen token is the likeliest
        assert math.isclose(e["top_logprobs"][0]["logprob"], e["logprob"]) and e["top_logprobs"][0]["token"] == e["token"]
    plain = chat.predict({**body, "logprobs": False})["choices"][0]
    assert plain["logprobs"] is None and plain["message"]["content"] == choice["message"]["content"]


# ---- why the logged model is a plain PythonModel by default (issue 31, item 4) ---------------------
PROBE_CHAT_MODEL = """
import json, os
import mlflow
from mlflow.pyfunc import ChatModel
from mlflow.types.llm import ChatChoice, ChatCompletionResponse, ChatMessage


class Probe(ChatModel):
    def predict(self, context, messages, params):
        with open(os.environ["PROBE_OUT"], "a") as f:
            f.write(json.dumps(params.to_dict()) + "\\n")
        return ChatCompletionResponse(choices=[ChatChoice(index=0, message=ChatMessage(role="assistant", content="x"))])


mlflow.models.set_model(Probe())
"""


def test_mlflows_chat_model_interface_cannot_carry_the_fields_this_model_honours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Databricks streams a ChatModel, not a plain PythonModel (protocol/streaming.py STREAMED_TASKS),
    but a ChatModel gets the chat body as MLflow's ChatParams only: its signature is fixed
    (CHAT_MODEL_INPUT_SCHEMA, no other may be given), the scoring path drops the inputs it lacks
    (mlflow/models/utils.py: "will be ignored"), ChatParams.from_dict drops the rest, and its tool
    schema has no room for a general JSON schema. Only ``custom_inputs`` carries them, which no
    OpenAI-style caller sends: the model is a PythonModel by default, and stream: true on Databricks
    is answered whole (the reader takes it; preflight and the local workspace say so);
    ``model.interface: chat_model`` opts into the ChatModel, reading them from custom_inputs
    (tests/models/test_chat_model_interface.py)."""
    import json

    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.types.llm import ChatParams

    from llmops_nb.models.chat_model import CHAT_FIELDS

    lost = set(CHAT_FIELDS) - ChatParams.keys()
    assert lost == {
        "max_completion_tokens",
        "seed",
        "logprobs",
        "top_logprobs",
        "response_format",
        "tool_choice",
        "parallel_tool_calls",
    }
    code = tmp_path / "probe.py"
    code.write_text(PROBE_CHAT_MODEL)
    out = tmp_path / "seen.jsonl"
    monkeypatch.setenv("PROBE_OUT", str(out))
    with pytest.raises(MlflowException, match="standard signature"):
        mlflow.pyfunc.save_model(str(tmp_path / "signed"), python_model=str(code), signature=object())
    mlflow.pyfunc.save_model(
        str(tmp_path / "m"), python_model=str(code), input_example={"messages": QUESTION, "temperature": 0.1}
    )
    model = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    assert model.metadata.metadata["task"] == "agent/v1/chat"
    asked = {"seed": 7, "logprobs": True, "response_format": {"type": "json_object"}, "tool_choice": "required"}
    out.write_text("")
    model.predict({"messages": QUESTION, "temperature": 0.5, **asked})
    model.predict({"messages": QUESTION, "temperature": 0.5, "custom_inputs": asked})
    top_level, nested = (json.loads(line) for line in out.read_text().splitlines())
    assert top_level["temperature"] == 0.5 and not set(asked) & set(top_level)  # dropped, with a 200
    assert nested["custom_inputs"] == asked
    nested_schema = {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "object"}}, "b": {"anyOf": [{}]}}}
    tools = [{"type": "function", "function": {"name": "f", "parameters": nested_schema}}]
    with pytest.raises(MlflowException, match="Failed to enforce schema"):
        model.predict({"messages": QUESTION, "tools": tools})
