"""Layers point one way, and importing the package (or starting the CLI) stays cheap."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("mlflow", "databricks.sdk", "pandas", "llama_cpp", "fastapi", "uvicorn", "papermill", "matplotlib", "ipywidgets")


def test_import_linter_contracts_hold() -> None:
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    done = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "0 broken" in done.stdout


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nimport json\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_package_loads_nothing_heavy() -> None:
    assert _loaded_after("import llmops_nb, llmops_nb.config, llmops_nb.steps, llmops_nb.pipeline, llmops_nb.evaluate") == []


def test_the_cli_help_loads_nothing_heavy() -> None:
    code = "from llmops_nb import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass"
    assert _loaded_after(code) == []
