"""MLflow pyfunc chat model around a GGUF file run with llama.cpp (a models-from-code file).

MLflow copies this file into every logged model and runs it at load time, with engine.py
beside it (``code_paths``), so it depends only on mlflow, llama-cpp-python and the
standard library: a registered version serves where llmops_nb is not installed. It takes
the OpenAI-style chat body (the fields of :data:`CHAT_FIELDS`: ``n`` choices decoded together,
``logprobs``/``top_logprobs`` per token, ``response_format`` json_object/json_schema and tools
forced by ``tool_choice`` as llama.cpp grammars from the JSON schema, llama-cpp-python's
``json_schema_to_gbnf``) and answers with ``{id, object, created, model, choices, usage}``. Concurrent
predict calls (the scoring server runs each request in a worker thread) are decoded
together by one continuous-batching engine. Generation defaults come from the logged
``model_config``.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

try:
    from llmops_nb.errors import ModelError as _ErrorBase
except ImportError:  # served without llmops_nb installed
    _ErrorBase = RuntimeError  # type: ignore[assignment,misc]
try:
    from llmops_nb.models.engine import BatchEngine, GenRequest, default_threads
except ImportError:  # served without llmops_nb: the copy logged with code_paths
    from engine import BatchEngine, GenRequest, default_threads  # type: ignore[no-redef]

# model_config keys and their defaults; registry.py records the effective values as params.
DEFAULT_CONFIG: dict[str, Any] = {
    "model_name": "smollm2-135m-instruct",
    "max_tokens": 256,
    "temperature": 0.7,
    "n_ctx": 2048,
    "seed": 42,
    "n_parallel": 8,
    "n_threads": 0,  # llama.cpp threads; 0: the container's CPU quota, else the CPUs (cpu_quota.py)
}
#: the chat-request fields this model honours besides messages and stream; its MLmodel metadata
#: records them (pyfunc.py) and the workspace refuses the others (workspace/runners/fields.py)
CHAT_FIELDS = [
    "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "seed", "n",
    "logprobs", "top_logprobs", "response_format", "tools", "tool_choice", "parallel_tool_calls",
]  # fmt: skip


class ChatRequestError(_ErrorBase, MlflowException):
    """A chat request the model cannot answer; the scoring server returns HTTP 400."""

    def __init__(self, message: str) -> None:
        MlflowException.__init__(self, message, error_code=INVALID_PARAMETER_VALUE)


def llama_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """Arguments for ``llama_cpp.Llama`` besides the model path (shared with bench/)."""
    threads = int(config.get("n_threads") or 0) or default_threads()
    return {
        "n_ctx": int(config["n_ctx"]),
        "n_threads": threads,
        "n_threads_batch": threads,
        "seed": int(config["seed"]),
        "flash_attn": True,  # as llama.cpp's own default (auto) on CPU; measured faster here
        "verbose": False,
    }


def _plain(value: Any) -> Any:
    """numpy arrays/scalars and NaN (from MLflow's DataFrame round trip) to plain Python."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def parse_request(model_input: Any) -> dict[str, Any]:
    """The chat body as a plain dict, from a dict or MLflow's one-row DataFrame."""
    if isinstance(model_input, dict):
        body = model_input
    elif hasattr(model_input, "to_dict"):  # pandas.DataFrame after schema enforcement
        if len(model_input) != 1:
            raise ChatRequestError(f"expected one chat request, got {len(model_input)} rows")
        body = {k: v[0] for k, v in model_input.to_dict(orient="list").items()}
    else:
        raise ChatRequestError(f"expected a chat request dict, got {type(model_input).__name__}")
    body = {k: v for k, v in ((k, _plain(v)) for k, v in body.items()) if v is not None}
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ChatRequestError("messages: a non-empty list of {role, content} is required")
    return body


class LlamaChatModel(PythonModel):
    """OpenAI-style chat completions from a GGUF model run in-process by llama.cpp."""

    # The explicit chat signature validates inputs; skip MLflow's type-hint wrapper of predict
    # (the attribute MLflow's own ChatModel uses) and its "add type hints" warning.
    _skip_type_hint_validation = True

    def __init__(self) -> None:
        self._engine: BatchEngine | None = None
        self._config: dict[str, Any] = dict(DEFAULT_CONFIG)
        self._widened = False

    def load_context(self, context: Any) -> None:
        self._config = {**DEFAULT_CONFIG, **(context.model_config or {})}
        kwargs = llama_kwargs(self._config)
        self._engine = BatchEngine(
            context.artifacts["gguf"],
            n_ctx=kwargs["n_ctx"],
            n_seq_max=int(self._config["n_parallel"]),
            n_threads=kwargs["n_threads"],
            flash_attn=kwargs["flash_attn"],
        )
        self._widened = _widen_server_threads(4 * int(self._config["n_parallel"]))

    def predict(self, context, model_input, params: dict[str, Any] | None = None):  # noqa: ANN001
        """Answer one chat request with a ``chat.completion`` dict (``n`` choices, decoded together)."""
        plan = self._request(model_input, params)
        assert self._engine is not None, "MLflow calls load_context before predict"
        try:
            futures = [self._engine.submit(r) for r in plan.requests]
        except ValueError as e:  # "Requested tokens (N) exceed context window of 2048"
            raise self._too_long(e) from None
        return _completion([f.result() for f in futures], plan, self._config["model_name"])

    def predict_stream(self, context, model_input, params: dict[str, Any] | None = None):  # noqa: ANN001
        """Answer one chat request as ``chat.completion.chunk`` dicts, a text delta each as the
        engine decodes it (in the batch of every other request); each choice ends with its
        ``finish_reason``, the last chunk has ``usage``. Closing the generator (the client went
        away) takes the sequences out of the batch at the next step."""
        plan = self._request(model_input, params)
        assert self._engine is not None, "MLflow calls load_context before predict_stream"
        streams = []
        try:
            for r in plan.requests:
                streams.append(self._engine.submit_stream(r))
        except ValueError as e:
            for stream in streams:
                stream.cancel()
            raise self._too_long(e) from None
        return _chunks(streams, plan, self._config["model_name"])

    def _too_long(self, e: ValueError) -> ChatRequestError:
        if "grammar" in str(e):
            return ChatRequestError(f"response_format or tools: {e}")
        return ChatRequestError(
            f"prompt too long or invalid request: {e}; shorten the messages or lower "
            f"max_tokens (context window {self._config['n_ctx']} tokens)"
        )

    def _request(self, model_input: Any, params: dict[str, Any] | None) -> Plan:
        """The engine requests of a chat body (validated; 400 for values it cannot honour)."""
        if self._engine is None:
            raise ChatRequestError("the model is not loaded (load_context was not called)")
        if not self._widened:
            self._widened = True
            _widen_server_threads(4 * int(self._config["n_parallel"]))
        body = {**parse_request(model_input), **(params or {})}
        max_tokens = int(body.get("max_tokens", body.get("max_completion_tokens", self._config["max_tokens"])))
        temperature = float(body.get("temperature", self._config["temperature"]))
        if max_tokens < 1:
            raise ChatRequestError(f"max_tokens: {max_tokens} is not allowed; use 1 or more")
        if not 0.0 <= temperature <= 2.0:
            raise ChatRequestError(f"temperature: {temperature} is not allowed; use 0 to 2")
        n = int(body.get("n") or 1)
        if not 1 <= n <= int(self._config["n_parallel"]):
            raise ChatRequestError(f"n: {n} is not allowed; 1 to {self._config['n_parallel']} (the sequences decoded at once)")
        plan = _plan(body)
        stop = body.get("stop") or []
        messages = [{"role": m["role"], "content": _content(m)} for m in body["messages"]]
        if plan.instruction:
            messages = [{"role": "system", "content": plan.instruction}, *messages]
        prompt, template_stops = self._engine.chat_prompt(messages)
        seed = int(body.get("seed", self._config["seed"]))
        top_p = float(body["top_p"]) if body.get("top_p") is not None else GenRequest.top_p
        plan.requests = [
            GenRequest(
                prompt=prompt,
                max_tokens=max_tokens,
                temperature=temperature,
                stop=([stop] if isinstance(stop, str) else list(stop)) + template_stops,
                seed=seed + i,  # choices of one request differ when sampling
                grammar=plan.grammar,
                logprobs=plan.top_logprobs,
                top_p=top_p,
            )
            for i in range(n)
        ]
        return plan


@dataclass
class Plan:
    """How a chat body is answered: the engine requests, and the shape of the answer."""

    grammar: str | None = None
    instruction: str | None = None  # a system line the prompt starts with (the tools)
    tool: str | None = None  # the forced function; "" when the answer names one of several
    top_logprobs: int | None = None
    requests: list[GenRequest] = field(default_factory=list)


def _plan(body: dict[str, Any]) -> Plan:
    """The grammar, tool call and logprobs a body asks for (ChatRequestError for what this model
    cannot do: a tool call it may or may not make, ``tool_choice`` auto)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    plan = Plan()
    if body.get("logprobs"):
        plan.top_logprobs = int(body.get("top_logprobs") or 0)
    fmt = body.get("response_format") or {}
    kind = fmt.get("type", "text") if isinstance(fmt, dict) else fmt
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice")
    if tools and choice in (None, "auto"):
        raise ChatRequestError(
            f"tool_choice: {choice!r} is not allowed; this model calls a tool only when tool_choice is 'required' "
            "or names a function, and answers in text with 'none'"
        )
    schema: Any = None
    if tools and choice != "none":
        if kind != "text":
            raise ChatRequestError("response_format: only 'text' is allowed with a forced tool call (tool_choice)")
        functions = {t["function"]["name"]: t["function"] for t in tools}
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            if name not in functions:
                raise ChatRequestError(f"tool_choice: {name!r} is not allowed; one of {sorted(functions)}")
            functions = {name: functions[name]}
        elif choice != "required":
            raise ChatRequestError(f"tool_choice: {choice!r} is not allowed; none, auto, required or a function")
        if len(functions) == 1:
            (plan.tool, f), *_ = functions.items()
            schema = f.get("parameters") or {"type": "object"}
            plan.instruction = f"Call the function {plan.tool}{_about(f)}. Answer with its arguments as JSON."
        else:
            plan.tool = ""
            schema = {
                "oneOf": [
                    {
                        "type": "object",
                        "properties": {"name": {"const": k}, "arguments": f.get("parameters") or {"type": "object"}},
                        "required": ["name", "arguments"],
                    }
                    for k, f in functions.items()
                ]
            }
            listed = "; ".join(f"{k}{_about(f)}" for k, f in functions.items())
            plan.instruction = f'Call one of these functions: {listed}. Answer with JSON: {{"name": ..., "arguments": {{...}}}}.'
    elif kind == "json_object":
        schema = {"type": "object"}
    elif kind == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
    elif kind != "text":
        raise ChatRequestError(f"response_format: {fmt!r} is not allowed; type text, json_object or json_schema")
    if schema is not None:
        try:
            plan.grammar = json_schema_to_gbnf(json.dumps(schema))
        except Exception as e:  # noqa: BLE001 - the converter raises bare exceptions on what it lacks
            raise ChatRequestError(f"response_format or tools: this JSON schema cannot be enforced: {e}") from None
    return plan


def _about(function: dict[str, Any]) -> str:
    description = function.get("description")
    params = function.get("parameters")
    return (f" ({description})" if description else "") + (f" with parameters {json.dumps(params)}" if params else "")


def _content(message: dict[str, Any]) -> str:
    """A message's text for the chat template: its content (parts joined), or the tool calls
    of an assistant message, as JSON."""
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    if content is None and message.get("tool_calls"):
        return json.dumps([c.get("function") for c in message["tool_calls"] if isinstance(c, dict)])
    return "" if content is None else str(content)


def _logprobs(entries: list[Any]) -> list[dict[str, Any]]:
    """Engine TokenLogprobs as OpenAI's ``logprobs.content`` entries."""

    def one(piece: bytes, logprob: float) -> dict[str, Any]:
        return {"token": piece.decode("utf-8", errors="replace"), "logprob": logprob, "bytes": list(piece)}

    return [{**one(e.piece, e.logprob), "top_logprobs": [one(p, lp) for _t, p, lp in e.top]} for e in entries]


def _tool_call(text: str, plan: Plan) -> dict[str, Any]:
    """The ``tool_calls`` entry of a grammar-forced answer (the arguments as a JSON string)."""
    name, arguments = plan.tool, text
    if plan.tool == "":  # {"name": ..., "arguments": {...}}
        try:
            data = json.loads(text)
            name, arguments = data["name"], json.dumps(data["arguments"])
        except (ValueError, KeyError, TypeError):
            name = ""  # cut at max_tokens (finish_reason "length")
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function", "function": {"name": name, "arguments": arguments}}


def _finish(out: Any, plan: Plan) -> str:
    return "tool_calls" if plan.tool is not None and out.finish_reason == "stop" else out.finish_reason


def _usage(outs: list[Any]) -> dict[str, int]:
    prompt, completion = outs[0].prompt_tokens, sum(len(o.tokens) for o in outs)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _chunks(streams: list[Any], plan: Plan, model_name: str):  # noqa: ANN202 - Iterator[dict]
    """The chat.completion.chunk dicts of the engine streams of one request, a choice after
    the other (they decode together in the batch): see predict_stream."""
    cid, created = f"chatcmpl-{uuid.uuid4()}", int(time.time())

    def chunk(index: int, delta: dict, finish: str | None = None, **extra: Any) -> dict:
        choice: dict[str, Any] = {"index": index, "delta": delta, "finish_reason": finish}
        if plan.top_logprobs is not None:
            choice["logprobs"] = extra.pop("logprobs", None)
        out = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model_name, "choices": [choice]}
        return {**out, **extra}

    try:
        outs = []
        for index, stream in enumerate(streams):
            named = plan.tool is not None and plan.tool != ""
            if plan.tool is None:
                yield chunk(index, {"role": "assistant", "content": ""})
            elif named:
                call = _tool_call("", plan)
                call["function"]["arguments"] = ""
                yield chunk(index, {"role": "assistant", "content": None, "tool_calls": [{"index": 0, **call}]})
            k, covered, streamed = 0, 0, 0  # logprob entries sent, their bytes, bytes of text streamed
            for piece in stream:
                streamed += len(piece.encode("utf-8"))
                extra: dict[str, Any] = {}
                if plan.top_logprobs is not None:
                    entries, k, covered = _take_logprobs(stream.logprobs, k, covered, streamed)
                    extra["logprobs"] = {"content": _logprobs(entries), "refusal": None}
                if plan.tool is None:
                    yield chunk(index, {"content": piece}, **extra)
                elif named:
                    yield chunk(index, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, **extra)
            out = stream.result
            outs.append(out)
            if plan.tool == "":  # the name is known at the end: the whole call at once
                yield chunk(
                    index, {"role": "assistant", "content": None, "tool_calls": [{"index": 0, **_tool_call(out.text, plan)}]}
                )
            last = index == len(streams) - 1
            yield chunk(index, {}, _finish(out, plan), **({"usage": _usage(outs)} if last else {}))
    finally:
        for stream in streams:
            stream.cancel()  # no effect once done; else the sequence leaves the batch


def _take_logprobs(entries: list[Any], k: int, covered: int, upto: int) -> tuple[list[Any], int, int]:
    """The entries from ``k`` on (appended live by the engine) whose bytes end within the first
    ``upto`` bytes of the streamed text; the next ``k`` and the bytes covered so far."""
    out = []
    while k < len(entries) and covered + len(entries[k].piece) <= upto:
        covered += len(entries[k].piece)
        out.append(entries[k])
        k += 1
    return out, k, covered


def _widen_server_threads(n: int) -> bool:
    """Let at least ``n`` requests wait in predict at once; True once done.

    MLflow's scoring server runs predict with ``asyncio.to_thread``, whose default pool has
    min(32, cores + 4) threads (6 on 2 cores): fewer concurrent requests than the engine can
    batch. The serving loop's default executor is widened: from load_context when uvicorn
    loads the model inside its loop (``--workers`` > 1), else at the first predict, which
    finds the running loop among live objects (once).
    """
    import gc

    try:
        loops = [asyncio.get_running_loop()]
    except RuntimeError:
        if threading.current_thread() is threading.main_thread():
            return False  # loading outside a loop: try again from the first predict
        loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and o.is_running()]
    for loop in loops:
        current = getattr(loop, "_default_executor", None)
        if current is None or getattr(current, "_max_workers", 0) < n:
            pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="predict")
            loop.call_soon_threadsafe(loop.set_default_executor, pool)
    return True


def _completion(outs: list[Any], plan: Plan, model_name: str) -> dict[str, Any]:
    """Engine results in the Databricks/OpenAI chat.completion shape (OpenAI's nullable
    ``logprobs`` and ``refusal`` present)."""
    choices = []
    for index, out in enumerate(outs):
        message: dict[str, Any] = {"role": "assistant", "content": out.text, "refusal": None}
        if plan.tool is not None:
            message.update(content=None, tool_calls=[_tool_call(out.text, plan)])
        logprobs = None
        if plan.top_logprobs is not None:
            logprobs = {"content": _logprobs(out.logprobs or []), "refusal": None}
        choices.append({"index": index, "message": message, "logprobs": logprobs, "finish_reason": _finish(out, plan)})
    return {
        "id": f"chatcmpl-{uuid.uuid4()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": choices,
        "usage": _usage(outs),
    }


set_model(LlamaChatModel())
