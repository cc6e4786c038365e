"""Where the project is: the folder that holds configs/, mlflow.db, .llmops/ and runs/.

Notebooks run with their own folder as the working directory (Jupyter, papermill), so
paths are anchored to the project folder, not to the current directory:
``$LLMOPS_PROJECT_DIR``, else the nearest folder upwards from the current directory that
holds ``configs/local.yml`` (or a ``.llmops`` folder), else the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_PROJECT_DIR = "LLMOPS_PROJECT_DIR"
_MARKERS = ("configs/local.yml", ".llmops")


def project_root(start: Path | None = None) -> Path:
    """The project folder (see the module docstring)."""
    if os.environ.get(ENV_PROJECT_DIR):
        return Path(os.environ[ENV_PROJECT_DIR]).expanduser().resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / marker).exists() for marker in _MARKERS):
            return folder
    return here
