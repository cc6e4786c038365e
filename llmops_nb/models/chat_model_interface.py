"""The GGUF chat model as an ``mlflow.pyfunc.ChatModel`` (``model.interface: chat_model``), a
models-from-code file.

Databricks Model Serving streams ``stream: true`` only for ChatModel, ChatAgent and
ResponsesAgent models (protocol/streaming.py ``STREAMED_TASKS``); the default interface is a
plain PythonModel, answered whole there. This file wraps the same :class:`LlamaChatModel` (the
same engine, request checks and answers: chat_model.py, logged beside it with ``code_paths``) in
MLflow's ChatModel interface, which MLflow gives its fixed chat signature
(``CHAT_MODEL_INPUT_SCHEMA``) and the request as ``ChatParams``. What ChatParams has no field for
travels in ``custom_inputs`` (a map of any JSON in that signature, kept whole by schema
enforcement: tests/models/test_chat_model_interface.py): :data:`CUSTOM_INPUTS`. The rest is
refused with a ChatRequestError (HTTP 400) naming the field, never dropped:

- ``tools`` at the top level: MLflow's tool schema keeps only ``type``, ``description``, ``enum``
  and ``items`` of each parameter (and refuses other JSON schema); send ``custom_inputs.tools``;
- ``top_k``, ``frequency_penalty``, ``presence_penalty``: ChatParams carries them, this model
  does not honour them;
- an unknown ``custom_inputs`` key.

Two things differ from the PythonModel interface, said in preflight and the README: a request
without ``temperature`` samples at 1.0 (ChatParams' default, MLflow 3.17 ``types/llm.py``), so
``model.temperature`` is no default here; and a streamed forced tool call comes as one delta with
the whole call (MLflow's ``ToolCall`` needs the function's name and arguments in every delta).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

from mlflow.models import set_model
from mlflow.pyfunc import ChatModel
from mlflow.types.llm import ChatCompletionChunk, ChatCompletionResponse

try:
    from llmops_nb.models.chat_model import ChatRequestError, LlamaChatModel
except ImportError:  # served without llmops_nb: the copy logged with code_paths
    from chat_model import ChatRequestError, LlamaChatModel  # type: ignore[no-redef]

#: the chat-request fields taken at the top level: ChatParams' fields this model honours
TOP_LEVEL = ("max_tokens", "temperature", "top_p", "stop", "n")
#: the fields ChatParams has no room for, carried in ``custom_inputs`` (chat_model.py CHAT_FIELDS
#: minus :data:`TOP_LEVEL`)
CUSTOM_INPUTS = (
    "max_completion_tokens", "seed", "logprobs", "top_logprobs", "response_format", "tools", "tool_choice",
    "parallel_tool_calls",
)  # fmt: skip
#: ChatParams fields this model does not honour (refused when set)
UNHONOURED = ("top_k", "frequency_penalty", "presence_penalty")


def chat_body(messages: list[Any], params: Any) -> dict[str, Any]:
    """The OpenAI-style chat body of a ChatModel call: the messages, :data:`TOP_LEVEL` from
    ``params`` (MLflow's ChatParams) and :data:`CUSTOM_INPUTS` from its ``custom_inputs``;
    ChatRequestError for what this model would otherwise drop."""
    given = params.to_dict()  # None fields left out
    custom = given.get("custom_inputs") or {}
    if not isinstance(custom, dict):
        raise ChatRequestError(f"custom_inputs: {type(custom).__name__} is not allowed; an object")
    for key in UNHONOURED:
        if given.get(key) not in (None, 0, 0.0):
            raise ChatRequestError(f"{key}: {given[key]!r} is not allowed; this model does not honour it")
    if given.get("tools"):
        raise ChatRequestError(
            "tools: not allowed at the top level of this ChatModel (MLflow's tool schema keeps only type, description, "
            "enum and items of each parameter); send them as custom_inputs.tools, with custom_inputs.tool_choice"
        )
    for key in sorted(set(custom) - set(CUSTOM_INPUTS)):
        raise ChatRequestError(f"custom_inputs.{key}: not allowed; custom_inputs takes {', '.join(CUSTOM_INPUTS)}")
    body: dict[str, Any] = {"messages": [m.to_dict() for m in messages]}
    body.update({k: given[k] for k in TOP_LEVEL if k in given})
    body.update(custom)
    return body


def _forces_a_tool(body: dict[str, Any]) -> bool:
    return bool(body.get("tools")) and body.get("tool_choice") not in (None, "none", "auto")


def _whole_call_chunks(answer: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A tool-call completion as chunks: per choice its whole call in one delta, then its
    finish_reason (the last one with usage)."""
    head = {k: answer[k] for k in ("id", "created", "model")}
    choices = answer["choices"]
    for k, choice in enumerate(choices):
        message = choice["message"]
        delta = {"role": "assistant", "content": message.get("content"), "tool_calls": message.get("tool_calls")}
        yield {**head, "choices": [{"index": choice["index"], "delta": delta, "finish_reason": None}]}
        last = {"usage": answer["usage"]} if k == len(choices) - 1 else {}
        yield {**head, "choices": [{"index": choice["index"], "delta": {}, "finish_reason": choice["finish_reason"]}], **last}


class LlamaChatModelInterface(ChatModel):
    """:class:`LlamaChatModel` behind MLflow's ChatModel interface (predict and predict_stream)."""

    def __init__(self) -> None:
        self.model = LlamaChatModel()

    @property
    def _engine(self) -> Any:  # the batch engine's counters (workspace/runners/scoring_app.py engine_stats)
        return self.model._engine  # noqa: SLF001

    def load_context(self, context: Any) -> None:
        self.model.load_context(context)

    def predict(self, context: Any, messages: list[Any], params: Any) -> ChatCompletionResponse:  # type: ignore[override]
        """One ``chat.completion``, as :meth:`LlamaChatModel.predict` answers the same body."""
        answer = self.model.predict(context, chat_body(messages, params))
        return ChatCompletionResponse.from_dict(answer)

    def predict_stream(  # type: ignore[override]
        self, context: Any, messages: list[Any], params: Any
    ) -> Generator[ChatCompletionChunk, None, None]:
        """``chat.completion.chunk``s as :meth:`LlamaChatModel.predict_stream` decodes them; a forced
        tool call as one delta with the whole call."""
        body = chat_body(messages, params)
        chunks = _whole_call_chunks(self.model.predict(context, body)) if _forces_a_tool(body) else None
        stream = chunks if chunks is not None else self.model.predict_stream(context, body)
        try:
            for chunk in stream:
                yield ChatCompletionChunk.from_dict(chunk)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # the client went away: the sequences leave the batch


set_model(LlamaChatModelInterface())
