"""The LLM as an MLflow pyfunc chat model: a GGUF file run with llama.cpp.

Light on purpose: importing this package loads neither mlflow nor llama_cpp. The pyfunc
itself lives in ``chat_model.py`` (a models-from-code file); ``pyfunc.py`` builds the
arguments to log or save it.
"""

from __future__ import annotations

from llmops_nb.models.gguf import DEFAULT_MODEL_NAME, bundled_gguf_path

__all__ = ["DEFAULT_MODEL_NAME", "bundled_gguf_path"]
