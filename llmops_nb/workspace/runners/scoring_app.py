"""MLflow's scoring-server app with a streaming route beside it, in the same process.

MLflow's scoring server does not stream pyfunc models (mlflow/mlflow#12439; MLflow 3.17's
``scoring_server.init`` has only ``/invocations``, ``/ping``, ``/health``, ``/version``). This
module builds MLflow's app exactly as ``mlflow.pyfunc.scoring_server.app`` does (the same
model object) and answers ``POST /llmops/invocations/stream`` itself with the model's
``predict_stream`` as server-sent events: one model and one batch per served entity, streamed
or not. Every other path goes to MLflow's app unchanged. A model without ``predict_stream``
(a version logged before it existed) streams its whole answer as one delta. For a ChatModel
(``model.interface: chat_model``) the loaded model's ``predict_stream`` is MLflow's ChatModel
wrapper's (mlflow/pyfunc/loaders/chat_model.py): the body becomes ChatMessages and ChatParams and
``ChatModel.predict_stream`` answers, as Databricks Model Serving calls it for ``stream: true``.

Run by :mod:`.scoring_main` (``uvicorn llmops_nb.workspace.runners.scoring_app:app``).
"""

from __future__ import annotations

import contextvars
import json
import os
from collections.abc import AsyncIterator, Iterator

from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from llmops_nb.protocol.streaming import DONE, HEADERS, MEDIA_TYPE, chunks_of, single_answer, sse
from llmops_nb.protocol.streaming import SCORING_STREAM_ROUTE as ROUTE


def _body_and_params(model, raw: bytes) -> tuple[dict, dict | None]:
    """Split a chat body into data and params as MLflow's /invocations does for LLM input."""
    body = json.loads(raw or b"{}")
    if not isinstance(body, dict):
        raise MlflowException.invalid_parameter_value("request body: must be a JSON object")
    body.pop("stream", None)
    schema = model.metadata.get_params_schema() if hasattr(model.metadata, "get_params_schema") else None
    return scoring_server._split_data_and_params_for_llm_input(body, schema)


class _Chunks:
    """The model's chunk iterator, always stepped in one ``contextvars.Context``: MLflow's
    predict_stream sets its prediction context var in the generator and resets it at the end,
    which fails if the steps ran in the copies of the context each worker-thread call gets."""

    def __init__(self, model, raw: bytes) -> None:  # noqa: ANN001
        self.context = contextvars.copy_context()
        self.first: dict | None = None
        self.it: Iterator[dict] = self.context.run(self._open, model, raw)

    def _open(self, model, raw: bytes) -> Iterator[dict]:  # noqa: ANN001
        data, params = _body_and_params(model, raw)
        if getattr(model, "_predict_stream_fn", None) is None:  # an older version, or MLflow's transformers flavor
            return chunks_of(single_answer(model.predict(data, params=params)))
        gen = model.predict_stream(data, params=params)
        self.first = next(gen)  # schema enforcement and the engine's checks run here
        return gen

    def next(self) -> dict | None:
        if self.first is not None:
            first, self.first = self.first, None
            return first
        return self.context.run(next, self.it, None)

    def close(self) -> None:
        close = getattr(self.it, "close", None)
        if close:
            self.context.run(close)


def stream_app(model):  # noqa: ANN001, ANN201 - an ASGI app
    """The ASGI app of the streaming route over ``model`` (a loaded PyFuncModel)."""

    async def app(scope, receive, send) -> None:  # noqa: ANN001
        request = Request(scope, receive)
        if request.method != "POST":
            await Response("method not allowed", 405)(scope, receive, send)
            return
        raw = await request.body()
        try:
            chunks = await run_in_threadpool(_Chunks, model, raw)
        except MlflowException as e:
            await Response(e.serialize_as_json(), e.get_http_status_code(), media_type="application/json")(scope, receive, send)
            return
        except Exception as e:  # noqa: BLE001 - the model failed: a 500 with its reason
            body = json.dumps({"error_code": "INTERNAL_ERROR", "message": str(e)[:500]})
            await Response(body, 500, media_type="application/json")(scope, receive, send)
            return

        async def events() -> AsyncIterator[bytes]:
            try:
                while (c := await run_in_threadpool(chunks.next)) is not None:
                    yield sse(c)
                yield DONE
            finally:  # the end, or the client went away: the sequence leaves the batch now
                chunks.close()

        await StreamingResponse(events(), media_type=MEDIA_TYPE, headers=HEADERS)(scope, receive, send)

    return app


def engine_stats(model) -> dict:  # noqa: ANN001
    """The batch engine's counters (sequences in the batch, cancelled streams, decode steps)."""
    try:
        impl = model._model_impl  # noqa: SLF001
        # a ChatModel's wrapper has no python_model (mlflow/pyfunc/loaders/chat_model.py get_raw_model)
        raw = impl.get_raw_model() if hasattr(impl, "get_raw_model") else model.unwrap_python_model()
        engine = raw._engine  # noqa: SLF001
    except Exception:  # noqa: BLE001 - not our chat model
        engine = None
    if engine is None:
        return {}
    return {"active": engine.active, "cancelled": engine.cancelled, "steps": engine.steps, "max_running": engine.max_running}


def with_streaming(mlflow_app, model):  # noqa: ANN001, ANN201
    """``mlflow_app``, with :data:`ROUTE` answered by :func:`stream_app` (outside MLflow's
    middleware, whose request timeout would cut long streams) and the engine's counters at
    ``GET /llmops/engine`` (for tests and benches)."""
    streaming = stream_app(model)

    async def app(scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] == "http" and scope["path"] == ROUTE:
            await streaming(scope, receive, send)
        elif scope["type"] == "http" and scope["path"] == "/llmops/engine":
            await Response(json.dumps(engine_stats(model)), media_type="application/json")(scope, receive, send)
        else:
            await mlflow_app(scope, receive, send)

    return app


def _build():  # noqa: ANN202
    model = scoring_server.load_model_with_mlflow_config(os.environ[scoring_server._SERVER_MODEL_PATH])
    return with_streaming(scoring_server.init(model), model)


app = _build() if scoring_server._SERVER_MODEL_PATH in os.environ else None
