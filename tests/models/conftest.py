"""A models-from-code file for the model-source tests (the second GGUF is a fixture of tests/conftest.py)."""

from __future__ import annotations

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
