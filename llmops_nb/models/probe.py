"""Checks a model source in a process of its own: ``python -m llmops_nb.models.probe gguf|code PATH``.

Prints one JSON line last: what the model says about itself, or ``{"error": ...}``. A GGUF that
crashes llama.cpp (SIGSEGV, SIGILL) kills this process, not the caller's kernel.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def probe_gguf(path: str) -> dict[str, Any]:
    """Load the GGUF with llama.cpp, read its metadata and decode one token."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_batch=64, verbose=False)
    meta = dict(llm.metadata)
    arch = meta.get("general.architecture")
    template = meta.get("tokenizer.chat_template")
    if not template:
        return {"error": "no tokenizer.chat_template in the GGUF metadata: the model has no chat template"}
    out = llm.create_completion("Hello", max_tokens=1, temperature=0.0)
    assert isinstance(out, dict)  # stream=False: one response, not an iterator of chunks
    context = meta.get(f"{arch}.context_length")
    return {
        "architecture": arch,
        # Llama itself has no n_ctx_train() (an AttributeError before): its model has
        "context_length": int(context) if context else llm._model.n_ctx_train(),  # noqa: SLF001
        "chat_template": template,
        "decoded": out["usage"]["completion_tokens"],
    }


def probe_code(path: str) -> dict[str, Any]:
    """Run the file as MLflow's models-from-code loader does; name the model it sets."""
    import mlflow
    from mlflow.models.utils import _load_model_code_path

    model = _load_model_code_path(path, None)
    interfaces = [
        ("ResponsesAgent", "mlflow.pyfunc", "ResponsesAgent"),
        ("ChatAgent", "mlflow.pyfunc", "ChatAgent"),
        ("ChatModel", "mlflow.pyfunc", "ChatModel"),
        ("PythonModel", "mlflow.pyfunc", "PythonModel"),
    ]
    interface = "callable" if callable(model) else type(model).__name__
    for name, module, attr in interfaces:
        cls = getattr(sys.modules.get(module) or mlflow.pyfunc, attr, None)
        if isinstance(cls, type) and isinstance(model, cls):
            interface = name
            break
    return {"class": type(model).__name__, "interface": interface}


def main(argv: list[str]) -> int:
    kind, path = argv
    try:
        out = probe_gguf(path) if kind == "gguf" else probe_code(path)
    except Exception as e:  # the message is what the caller reports
        out = {"error": f"{type(e).__name__}: {e}".replace("\n", " ")}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
