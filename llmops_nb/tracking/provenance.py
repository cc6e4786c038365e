"""What it takes to repeat a run: package versions, Python, platform and the git commit."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

from llmops_nb.util.paths import project_root

_PACKAGES = ("llmops-nb", "mlflow", "databricks-sdk", "papermill", "llama-cpp-python", "pydantic")


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment_record() -> dict[str, Any]:
    """Package versions, Python, platform and git commit: what it takes to repeat a run."""
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for package in _PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": _git_commit(project_root()),
    }
