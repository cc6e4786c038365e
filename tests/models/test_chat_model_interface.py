"""``model.interface: chat_model`` (issue 31, item 4): the GGUF chat model logged as an
``mlflow.pyfunc.ChatModel`` on real MLflow, the interface Databricks streams, over the same engine."""

from __future__ import annotations

import json

import pytest

from llmops_nb.errors import ModelError

QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory):
    import mlflow

    from llmops_nb.models.pyfunc import gguf_pyfunc

    path = tmp_path_factory.mktemp("model") / "chat"
    mlflow.pyfunc.save_model(str(path), **gguf_pyfunc(generation={"max_tokens": 5}, interface="chat_model").kwargs)
    return mlflow.pyfunc.load_model(str(path))


def test_chat_body_takes_what_chat_params_lacks_from_custom_inputs() -> None:
    from mlflow.types.llm import ChatMessage, ChatParams

    from llmops_nb.models.chat_model_interface import chat_body

    custom = {"seed": 7, "logprobs": True, "response_format": {"type": "json_object"}}
    body = chat_body([ChatMessage(role="user", content="hi")], ChatParams(temperature=0.2, max_tokens=4, custom_inputs=custom))
    assert body == {"messages": [{"role": "user", "content": "hi"}], "temperature": 0.2, "max_tokens": 4, "n": 1, **custom}
    with pytest.raises(ModelError, match=r"^custom_inputs\.colour: not allowed; custom_inputs takes max_completion_tokens"):
        chat_body([ChatMessage(role="user", content="hi")], ChatParams(custom_inputs={"colour": "red"}))
    with pytest.raises(ModelError, match=r"^top_k: 5 is not allowed; this model does not honour it"):
        chat_body([ChatMessage(role="user", content="hi")], ChatParams(top_k=5))


@pytest.mark.model
def test_the_logged_model_is_a_chat_model_which_databricks_streams(chat) -> None:
    from mlflow.pyfunc import ChatModel
    from mlflow.types.llm import CHAT_MODEL_INPUT_SCHEMA

    from llmops_nb.protocol.streaming import streamed_on_databricks

    # Databricks' streaming condition: a ChatModel (task agent/v1/chat) with predict_stream
    assert isinstance(chat._model_impl.get_raw_model(), ChatModel)
    assert chat.metadata.metadata["task"] == "agent/v1/chat" and streamed_on_databricks(chat.metadata.metadata["task"])
    assert chat.metadata.flavors["python_function"]["streamable"] is True
    assert chat.metadata.get_input_schema() == CHAT_MODEL_INPUT_SCHEMA  # MLflow's fixed chat signature
    assert chat.metadata.metadata["llmops_nb.interface"] == "chat_model"


@pytest.mark.model
def test_predict_stream_yields_chunks_that_join_to_the_answer(chat) -> None:
    from llmops_nb.protocol.streaming import assemble

    body = {"messages": QUESTION, "max_tokens": 16, "temperature": 0.0}
    whole = chat.predict(body)
    chunks = list(chat.predict_stream(body))
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert sum(1 for c in chunks if c["choices"][0]["delta"].get("content")) > 3
    streamed = assemble(chunks)
    assert streamed["choices"][0]["message"]["content"] == whole["choices"][0]["message"]["content"]
    assert streamed["usage"] == whole["usage"] and whole["usage"]["completion_tokens"] <= 16


@pytest.mark.model
def test_custom_inputs_carry_what_chat_params_lacks_and_the_top_level_loses_it(chat) -> None:
    import jsonschema

    schema = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 12}}, "required": ["answer"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    custom = {"logprobs": True, "top_logprobs": 2, "seed": 3, "response_format": fmt}
    body = {"messages": QUESTION, "max_tokens": 40, "temperature": 0.0}
    choice = chat.predict({**body, "custom_inputs": custom})["choices"][0]
    assert choice["finish_reason"] == "stop"
    jsonschema.validate(json.loads(choice["message"]["content"]), schema)
    assert len(choice["logprobs"]["content"][0]["top_logprobs"]) == 2
    # at the top level MLflow's chat signature drops them without a word: why the workspace refuses them
    plain = chat.predict({**body, **custom})["choices"][0]
    assert "logprobs" not in plain and not plain["message"]["content"].lstrip().startswith("{")


@pytest.mark.model
def test_a_forced_tool_call_streams_as_one_delta(chat) -> None:
    from llmops_nb.protocol.streaming import assemble

    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}}, "required": ["city"]},
        },
    }
    body = {"messages": [{"role": "user", "content": "Weather in Paris?"}], "max_tokens": 32}
    chunks = list(chat.predict_stream({**body, "custom_inputs": {"tools": [weather], "tool_choice": "required"}}))
    (call,) = assemble(chunks)["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather" and "city" in json.loads(call["function"]["arguments"])
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls" and len(chunks) == 2
    flat = {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}  # fits MLflow's schema
    with pytest.raises(ModelError, match=r"^tools: not allowed at the top level of this ChatModel"):
        chat.predict({**body, "tools": [{"type": "function", "function": flat}]})
