"""Second models built offline for the model-source tests: a requantized GGUF and a models-from-code file."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops_nb.models.gguf import bundled_gguf_path

#: A models-from-code chat model that answers "echo: <the last message>".
ECHO_MODEL = """
import mlflow
from mlflow.pyfunc import ChatModel
from mlflow.types.llm import ChatChoice, ChatCompletionResponse, ChatMessage


class Echo(ChatModel):
    def predict(self, context, messages, params):
        text = "echo: " + messages[-1].content
        return ChatCompletionResponse(
            choices=[ChatChoice(index=0, message=ChatMessage(role="assistant", content=text))], model="echo-code"
        )


mlflow.models.set_model(Echo())
"""


@pytest.fixture(scope="session")
def other_gguf(tmp_path_factory) -> Path:  # noqa: ANN001
    """A second GGUF: the bundled Q4_1 file requantized to Q4_0 by llama.cpp's quantize API."""
    import llama_cpp

    out = tmp_path_factory.mktemp("gguf") / "other-llm.Q4_0.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
    params.allow_requantize = True
    params.nthread = 2
    assert llama_cpp.llama_model_quantize(str(bundled_gguf_path()).encode(), str(out).encode(), params) == 0
    return out
