"""MLflow pyfunc chat model around a GGUF file run with llama.cpp (a models-from-code file).

MLflow copies this file into every logged model and runs it at load time, with engine.py
beside it (``code_paths``), so it depends only on mlflow, llama-cpp-python and the
standard library: a registered version serves where llmops_nb is not installed. It takes
the OpenAI-style chat body (``messages``, ``max_tokens``, ``temperature``, ``stop``,
``seed``) and answers with ``{id, object, created, model, choices, usage}``. Concurrent
predict calls (the scoring server runs each request in a worker thread) are decoded
together by one continuous-batching engine. Generation defaults come from the logged
``model_config``.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
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
        """Answer one chat request with a ``chat.completion`` dict."""
        request = self._request(model_input, params)
        assert self._engine is not None, "MLflow calls load_context before predict"
        try:
            out = self._engine.generate(request)
        except ValueError as e:  # "Requested tokens (N) exceed context window of 2048"
            raise self._too_long(e) from None
        return _completion(out, self._config["model_name"])

    def predict_stream(self, context, model_input, params: dict[str, Any] | None = None):  # noqa: ANN001
        """Answer one chat request as ``chat.completion.chunk`` dicts, a text delta each as the
        engine decodes it (in the batch of every other request); the last chunk has
        ``finish_reason`` and ``usage``. Closing the generator (the client went away) takes the
        sequence out of the batch at the next step."""
        request = self._request(model_input, params)
        assert self._engine is not None, "MLflow calls load_context before predict_stream"
        try:
            stream = self._engine.submit_stream(request)
        except ValueError as e:
            raise self._too_long(e) from None
        return _chunks(stream, self._config["model_name"])

    def _too_long(self, e: ValueError) -> ChatRequestError:
        return ChatRequestError(
            f"prompt too long or invalid request: {e}; shorten the messages or lower "
            f"max_tokens (context window {self._config['n_ctx']} tokens)"
        )

    def _request(self, model_input: Any, params: dict[str, Any] | None) -> GenRequest:
        """The engine request of a chat body (validated; 400 for bad values)."""
        if self._engine is None:
            raise ChatRequestError("the model is not loaded (load_context was not called)")
        if not self._widened:
            self._widened = True
            _widen_server_threads(4 * int(self._config["n_parallel"]))
        body = {**parse_request(model_input), **(params or {})}
        max_tokens = int(body.get("max_tokens", self._config["max_tokens"]))
        temperature = float(body.get("temperature", self._config["temperature"]))
        if max_tokens < 1:
            raise ChatRequestError(f"max_tokens: {max_tokens} is not allowed; use 1 or more")
        if not 0.0 <= temperature <= 2.0:
            raise ChatRequestError(f"temperature: {temperature} is not allowed; use 0 to 2")
        stop = body.get("stop") or []
        messages = [{"role": m["role"], "content": m.get("content") or ""} for m in body["messages"]]
        prompt, template_stops = self._engine.chat_prompt(messages)
        request = GenRequest(
            prompt=prompt,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=([stop] if isinstance(stop, str) else list(stop)) + template_stops,
            seed=int(body.get("seed", self._config["seed"])),
        )
        return request


def _chunks(stream: Any, model_name: str):  # noqa: ANN202 - Iterator[dict]
    """The chat.completion.chunk dicts of an engine stream (see predict_stream)."""
    cid, created = f"chatcmpl-{uuid.uuid4()}", int(time.time())

    def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> dict:
        out = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage is not None:
            out["usage"] = usage
        return out

    try:
        yield chunk({"role": "assistant", "content": ""})
        for text in stream:
            yield chunk({"content": text})
        out = stream.result
        n = len(out.tokens)
        yield chunk(
            {},
            out.finish_reason,
            {"prompt_tokens": out.prompt_tokens, "completion_tokens": n, "total_tokens": out.prompt_tokens + n},
        )
    finally:
        stream.cancel()  # no effect once done; else the sequence leaves the batch


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


def _completion(out: Any, model_name: str) -> dict[str, Any]:
    """An engine result in the Databricks/OpenAI chat.completion shape."""
    completion = len(out.tokens)
    return {
        "id": f"chatcmpl-{uuid.uuid4()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": out.text},
                "finish_reason": out.finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": out.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": out.prompt_tokens + completion,
        },
    }


set_model(LlamaChatModel())
