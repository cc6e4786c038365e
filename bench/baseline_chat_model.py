"""The straightforward baseline: a pyfunc around ``Llama.create_chat_completion`` with
llama-cpp-python's defaults (n_threads = half the cores), one request at a time (a lock:
the Llama object is not thread-safe). Logged as a models-from-code file by bench/serving.py.
"""

from __future__ import annotations

import threading

from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class BaselineChat(PythonModel):
    _skip_type_hint_validation = True

    def load_context(self, context):  # noqa: ANN001
        from llama_cpp import Llama

        self.llm = Llama(model_path=context.artifacts["gguf"], n_ctx=2048, verbose=False)
        self.lock = threading.Lock()

    def predict(self, context, model_input, params=None):  # noqa: ANN001
        body = model_input if isinstance(model_input, dict) else model_input.iloc[0].to_dict()
        messages = [{"role": m["role"], "content": m["content"]} for m in body["messages"]]
        with self.lock:
            return self.llm.create_chat_completion(
                messages=messages, max_tokens=int(body["max_tokens"]), temperature=float(body["temperature"])
            )


set_model(BaselineChat())
