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


#: The local workspace's folder ($LLMOPS_HOME) and everything under it belong to the user alone
#: (as Jupyter's runtime folder): logs, endpoint state, usage, local secrets and the token.
PRIVATE_DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """``path`` created if missing (parents too) and made private to the user (mode 0700)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    os.chmod(path, PRIVATE_DIR_MODE)
    return path


def make_private(root: Path) -> None:
    """Take group and other permissions off ``root`` and everything under it (0700 folders).

    Fixes a folder made under a permissive umask before the workspace kept it private.
    Symbolic links are not followed.
    """
    root = private_dir(root)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, PRIVATE_DIR_MODE)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                mode = os.stat(path).st_mode & 0o777
                if mode & 0o077:
                    os.chmod(path, mode & 0o700)


def private_file(path: Path) -> Path:
    """``path`` created empty if missing, in a private folder, with mode 0600 (contents kept)."""
    path = Path(path)
    private_dir(path.parent)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    os.chmod(path, 0o600)
    return path
