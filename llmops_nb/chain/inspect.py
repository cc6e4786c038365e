"""A notebook's ``parameters`` cell, read once: ``papermill.inspect_notebook``, cached.

The runner plans every step, checks each step's parameters again with the outputs of the
steps before, and the bundle validator checks each task: without the cache every one of
those parsed the notebook again. The cache key is the file's path, modification time and
size, so an edited notebook (or another project's copy) is read afresh.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from llmops_nb.errors import ConfigError


@lru_cache(maxsize=64)
def _inspect(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]:
    from papermill import inspect_notebook

    return tuple((name, tuple(dict(info).items())) for name, info in inspect_notebook(path).items())


def declared_parameters(notebook: str | Path) -> dict[str, dict[str, Any]]:
    """The parameters cell of a notebook: name -> {inferred_type_name, default, help}."""
    path = Path(notebook)
    try:
        stat = path.stat()
    except OSError:
        stat = None
    if stat is None or not path.is_file():
        raise ConfigError("notebook", str(notebook), "expected an existing .ipynb file")
    found = _inspect(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    return {name: dict(info) for name, info in found}  # a copy: callers may change it


def cache_info() -> Any:
    """How often the cache answered (``functools.lru_cache`` statistics)."""
    return _inspect.cache_info()


def notebook_kernel(notebook: str | Path) -> str:
    """The kernel a notebook names in its metadata (as papermill picks it), else python3."""
    meta = json.loads(Path(notebook).read_text(encoding="utf-8")).get("metadata", {})
    return (meta.get("kernelspec") or {}).get("name") or "python3"
