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
    code = (
        "import llmops_nb, llmops_nb.config.project, llmops_nb.steps.register, llmops_nb.steps.deploy, "
        "llmops_nb.steps.query, llmops_nb.steps.evaluate, llmops_nb.chain.runner, llmops_nb.evaluation.orchestrate"
    )
    assert _loaded_after(code) == []


def test_the_cli_help_loads_nothing_heavy() -> None:
    code = "from llmops_nb.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert _loaded_after(code) == []


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


#: what lives in the package beside the layers: the local server (its own contracts), the test
#: fixtures (they may use anything) and the bundled data
OUTSIDE_LAYERS = {"workspace", "testing", "data"}


def test_every_unit_of_the_package_is_in_one_layer() -> None:
    """``ls llmops_nb`` is the layer list: each package or module is exactly one layer row."""
    contract = next(c for c in _pyproject()["tool"]["importlinter"]["contracts"] if c["name"] == "Layers point one way")
    in_layers = [name.strip().removeprefix("llmops_nb.") for row in contract["layers"] for name in row.split("|")]
    units = {
        p.stem
        for p in (ROOT / "llmops_nb").iterdir()
        if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__init__")
    }
    assert len(in_layers) == len(set(in_layers))
    assert set(in_layers) == units - OUTSIDE_LAYERS


def test_the_readme_layout_names_every_package() -> None:
    """The README's layout section lists each top-level unit of the package, and nothing that is gone."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    units = {
        p.name
        for p in (ROOT / "llmops_nb").iterdir()
        if (p.is_dir() and p.name != "__pycache__") or (p.suffix == ".py" and p.stem != "__init__")
    }
    listed = {
        line.split()[0].rstrip("/") for line in section.splitlines() if line.startswith("  ") and not line.startswith("   ")
    }
    assert {u.removesuffix(".py") for u in units} == {u.removesuffix(".py") for u in listed}


def test_no_module_is_a_re_export_shim() -> None:
    """No module only imports names for others (the old paths are gone), and ``__init__`` files stay
    short: a docstring and at most a few exported nouns."""
    import ast

    shims, long_inits = [], []
    for path in (ROOT / "llmops_nb").rglob("*.py"):
        tree = ast.parse(path.read_text())
        body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        body = [n for n in body if not (isinstance(n, ast.ImportFrom) and n.module == "__future__")]
        defines = [
            n
            for n in body
            if not isinstance(n, (ast.Import, ast.ImportFrom))
            and not (isinstance(n, ast.Assign) and [getattr(t, "id", "") for t in n.targets] == ["__all__"])
        ]
        if path.name == "__init__.py":
            if len(body) > 6 and path.parent.name != "testing":  # testing/ is the fake workspace's public API
                long_inits.append(str(path.relative_to(ROOT)))
        elif body and not defines:
            shims.append(str(path.relative_to(ROOT)))
    assert shims == [] and long_inits == [], (shims, long_inits)
