"""Every notebook under nbval, on the fake Databricks workspace and on the local workspace with the real model.

The notebooks are committed without outputs, so the expected outputs of the cells marked
``# NBVAL_CHECK_OUTPUT`` live beside this file (``expected/<backend>.json``: notebook -> cell
id -> nbformat outputs, or a string saying why the cell is not compared on that backend).
Each backend's test writes copies of the notebooks with those outputs filled in and runs
``pytest --nbval-lax`` over them, in chain order, in a subprocess: nbval's kernel is a separate
process that sees environment variables, not this process's monkeypatches. Outputs are
sanitized with ``sanitize.cfg`` (ports, SQLite paths, run ids, times, latencies).

Check one notebook by hand: ``make nbval NB=notebooks/02_deploy.ipynb`` (fake workspace);
after an intended output change, ``LLMOPS_NBVAL_RECORD=1 pytest tests/notebooks -k fake``
rewrites the expected outputs (review the diff).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from llmops_nb.chain import bundle
from llmops_nb.chain import inspect as chain_inspect
from llmops_nb.chain import runner as chain_runner
from llmops_nb.chain import table as chain_table
from llmops_nb.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SANITIZE = HERE / "sanitize.cfg"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))  # 00 .. 04: chain order
BACKENDS = ("fake", "local")
CONFIGS = {"fake": ROOT / "tests" / "configs" / "fake-databricks.yml", "local": ROOT / "tests" / "configs" / "local-nbval.yml"}
CHECK, IGNORE = "NBVAL_CHECK_OUTPUT", "NBVAL_IGNORE_OUTPUT"
RECORD = os.environ.get("LLMOPS_NBVAL_RECORD") == "1"
#: ``make nbval NB=notebooks/02_deploy.ipynb``: only the chain up to that notebook (the earlier ones make its state).
UPTO = Path(os.environ.get("LLMOPS_NBVAL_UPTO", "")).stem


# --------------------------------------------------------------------------- helpers


def markers(cell: Any) -> set[str]:
    """The nbval comment markers in a cell (nbval reads a comment line that is exactly the marker)."""
    return {line.strip().lstrip("#").strip() for line in cell.source.splitlines() if line.strip().startswith("#")} & {
        CHECK,
        IGNORE,
    }


def expected(backend: str) -> dict[str, dict[str, Any]]:
    return json.loads((HERE / "expected" / f"{backend}.json").read_text())


def _joined(output: dict[str, Any]) -> dict[str, Any]:
    """Multi-line text stored as a list of lines becomes one string (what nbval compares)."""
    out = dict(output)
    if isinstance(out.get("text"), list):
        out["text"] = "".join(out["text"])
    if "data" in out:
        out["data"] = {k: "".join(v) if isinstance(v, list) else v for k, v in out["data"].items()}
    return out


def write_copies(dest: Path, backend: str, names: list[str] | None = None, edit: Any = None) -> list[Path]:
    """Copies of the notebooks in ``dest`` with the backend's expected outputs in the checked cells."""
    want = expected(backend)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for path in NOTEBOOKS:
        if names is not None and path.name not in names:
            continue
        nb = nbformat.read(path, as_version=4)
        for n, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
            outputs = want.get(path.name, {}).get(cell.get("id"))
            if isinstance(outputs, list):
                cell.outputs = [nbformat.from_dict(_joined(o)) for o in outputs]
                cell.execution_count = n + 1
        if edit is not None:
            edit(path.name, nb)
        nbformat.validate(nb)
        nbformat.write(nb, dest / path.name)
        written.append(dest / path.name)
    return written


def run_nbval(notebooks: list[Path], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``pytest --nbval-lax`` over ``notebooks`` (one kernel each, in order) in a subprocess."""
    folder = notebooks[0].parent
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "--nbval-lax",
        "--nbval-current-env",
        "--nbval-sanitize-with",
        str(SANITIZE),
        "--nbval-cell-timeout",
        "600",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(folder),
        "-o",
        "addopts=",
        "-q",
        "--color=no",
        *map(str, notebooks),
    ]
    return subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)


def clean_env(project: Path, config: Path) -> dict[str, str]:
    """This environment without workspace/MLflow/llmops settings, pointed at ``project`` and ``config``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_", "LLMOPS_"))}
    env.update(LLMOPS_PROJECT_DIR=str(project), LLMOPS_CONFIG=str(config), PYTHONUNBUFFERED="1")
    bin_dir = str(Path(sys.executable).parent)  # mlflow's scoring server execs `uvicorn` from here
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return env


def sanitize(value: Any) -> Any:
    """``value`` with the sanitize.cfg patterns applied to every string (as nbval does before comparing)."""
    patterns = re.findall(r"^regex: (.*)$\n^replace: (.*)$", SANITIZE.read_text(), flags=re.MULTILINE)
    if isinstance(value, str):
        for regex, replace in patterns:
            value = re.sub(regex, replace, value)
        return value
    if isinstance(value, dict):
        return {k: sanitize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [sanitize(v) for v in value]
    return value


def record(backend: str, copies: list[Path], env: dict[str, str]) -> None:
    """Execute the copies with papermill and store the checked cells' outputs as the expectation."""
    import papermill

    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        for path in copies:
            papermill.execute_notebook(str(path), str(path), cwd=str(path.parent), progress_bar=False)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    want = expected(backend)
    for path in copies:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code" and CHECK in markers(cell) and not isinstance(want.get(path.name, {}).get(cell.id), str):
                outputs = [sanitize({k: v for k, v in o.items() if k != "transient"}) for o in cell.outputs]
                for o in outputs:  # one line per list item: readable diffs of the JSON
                    if isinstance(o.get("text"), str):
                        o["text"] = o["text"].splitlines(keepends=True)
                    for key, value in o.get("data", {}).items():
                        if isinstance(value, str):
                            o["data"][key] = value.splitlines(keepends=True)
                want.setdefault(path.name, {})[cell.id] = outputs
    (HERE / "expected" / f"{backend}.json").write_text(
        json.dumps(dict(sorted(want.items())), indent=1, ensure_ascii=False) + "\n"
    )


def chain_up_to(stem: str) -> list[str] | None:
    """The notebooks up to and including ``stem`` (None: all); one-line error for an unknown one."""
    if not stem:
        return None
    names = [p.name for p in NOTEBOOKS]
    if f"{stem}.ipynb" not in names:
        raise ConfigError("NB", stem, f"expected one of {', '.join(names)}")
    return names[: names.index(f"{stem}.ipynb") + 1]


def check_backend(backend: str, tmp_path: Path, env: dict[str, str]) -> None:
    copies = write_copies(tmp_path / "nbval", backend, names=chain_up_to(UPTO))
    if RECORD:
        record(backend, copies, env)
        pytest.skip(f"recorded tests/notebooks/expected/{backend}.json")
    done = run_nbval(copies, env, timeout=1500)
    assert done.returncode == 0, f"nbval failed on the {backend} backend:\n{done.stdout[-8000:]}\n{done.stderr[-2000:]}"
    assert f"{sum(len([c for c in nbformat.read(p, 4).cells if c.cell_type == 'code']) for p in copies)} passed" in done.stdout


# --------------------------------------------------------------------------- the committed notebooks


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_notebook_is_committed_without_outputs_and_says_why_outputs_are_ignored(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [] and cell.execution_count is None, (path.name, cell.id)
        assert len(markers(cell)) <= 1, (path.name, cell.id, "both NBVAL_CHECK_OUTPUT and NBVAL_IGNORE_OUTPUT")
        if IGNORE in markers(cell):  # the line after the marker says why
            lines = cell.source.splitlines()
            reason = lines[[ln.strip() for ln in lines].index(f"# {IGNORE}") + 1]
            assert re.match(r"# \(.{8,}\)$", reason), (path.name, cell.id, reason)
    assert sum(CHECK in markers(c) for c in nb.cells) >= 1, f"{path.name} checks no output"


@pytest.mark.parametrize("backend", BACKENDS)
def test_expected_outputs_cover_exactly_the_checked_cells(backend: str) -> None:
    want = expected(backend)
    assert set(want) <= {p.name for p in NOTEBOOKS}
    for path in NOTEBOOKS:
        checked = {c.id for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code" and CHECK in markers(c)}
        assert set(want.get(path.name, {})) == checked, (backend, path.name)
        for cell_id, outputs in want.get(path.name, {}).items():
            if isinstance(outputs, str):  # not compared on this backend, and why
                assert len(outputs) > 20, (backend, path.name, cell_id)
            else:
                assert outputs, (backend, path.name, cell_id)
                for output in outputs:
                    nbformat.validate(
                        nbformat.v4.new_notebook(
                            cells=[nbformat.v4.new_code_cell(outputs=[nbformat.from_dict(_joined(output))], execution_count=1)]
                        )
                    )


def test_parameters_cells_take_what_the_runner_and_the_job_pass_with_their_types() -> None:
    for step in chain_table.STEPS:
        declared = chain_inspect.declared_parameters(ROOT / "notebooks" / chain_table.NOTEBOOKS[step])
        for key in (*chain_table.COMMON_PARAMETERS, *chain_table.STEP_INPUTS.get(step, ())):
            kind = chain_table.OUTPUT_TYPES.get(key, "str")
            assert declared[key]["inferred_type_name"] == kind, (step, key, declared[key], kind)
    assert bundle.problems(bundle.load(ROOT / bundle.BUNDLE_FILE), ROOT) == []


# --------------------------------------------------------------------------- nbval on both backends


@pytest.fixture
def fake_env(tmp_path: Path, fake_workspace) -> dict[str, str]:  # noqa: ANN001
    """The notebooks' environment: the fake as the Databricks workspace, MLflow on SQLite in a project of their own."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "configs", project / "configs")
    db = f"sqlite:///{project / 'mlflow.db'}"
    env = clean_env(project, CONFIGS["fake"])
    env.update(fake_workspace.env(), MLFLOW_TRACKING_URI=db, MLFLOW_REGISTRY_URI=db, LLMOPS_RETRY_TIMEOUT_SECONDS="60")
    return env


@pytest.fixture
def local_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A project of its own on the local backend; its workspace (and every scoring server) is stopped afterwards."""
    import psutil

    from llmops_nb.workspace import launcher

    project = tmp_path / "project"
    shutil.copytree(ROOT / "configs", project / "configs")
    yield clean_env(project, CONFIGS["local"])
    info = launcher.status(project / ".llmops")
    pids = (
        [info.pid, *(p.pid for p in psutil.Process(info.pid).children(recursive=True))]
        if info and psutil.pid_exists(info.pid)
        else []
    )
    launcher.stop(project / ".llmops")
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"processes left behind: {alive}"


@pytest.mark.model  # the register notebook logs the real GGUF
def test_nbval_on_the_fake_databricks_workspace(tmp_path: Path, fake_env: dict[str, str]) -> None:
    check_backend("fake", tmp_path, fake_env)


@pytest.mark.model
def test_nbval_on_the_local_workspace_with_the_real_model(tmp_path: Path, local_env: dict[str, str]) -> None:
    check_backend("local", tmp_path, local_env)


# --------------------------------------------------------------------------- deliberate breaks


def rename_parameter(name: str, nb: Any) -> None:
    """The break: 02_deploy's ``model_version`` parameter renamed to ``model_ver``."""
    if name == "02_deploy.ipynb":
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        assert "model_version: str" in cell.source
        cell.source = cell.source.replace("model_version: str", "model_ver: str")


def test_a_renamed_parameter_is_refused_by_the_runner_and_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    write_copies(tmp_path / "notebooks", "fake", edit=rename_parameter)
    monkeypatch.setenv("LLMOPS_PROJECT_DIR", str(tmp_path))
    assert chain_runner.notebooks_dir() == tmp_path / "notebooks"
    with pytest.raises(ConfigError) as err:
        chain_runner.plan(chain_table.STEPS, ROOT / "configs" / "local.yml", "local")
    assert str(err.value) == "deploy.model_version: None is not allowed; 02_deploy.ipynb must declare it to receive it"
    found = [str(p) for p in bundle.problems(bundle.load(ROOT / bundle.BUNDLE_FILE), tmp_path)]
    assert any(
        p.startswith("resources.jobs.llmops_chain.tasks[deploy].notebook_task.base_parameters.model_version:")
        and "not a parameter of 02_deploy.ipynb" in p
        for p in found
    ), found


def test_deliberate_breaks_fail_nbval(tmp_path: Path, fake_env: dict[str, str]) -> None:
    """A renamed parameter makes its notebook raise; a changed output differs from the expected one."""

    def wrong_output(name: str, nb: Any) -> None:
        rename_parameter(name, nb)
        if name == "00_configure_endpoint.ipynb":
            cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
            cell.source = cell.source.replace("../configs/my-endpoint.yml", "../configs/renamed.yml")

    copies = write_copies(tmp_path / "nbval", "fake", names=["00_configure_endpoint.ipynb", "02_deploy.ipynb"], edit=wrong_output)
    done = run_nbval(copies, fake_env, timeout=600)
    out = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)  # the kernel's tracebacks are coloured
    assert done.returncode == 1, out[-4000:]
    # the wrong output: the checked cell differs from tests/notebooks/expected/fake.json
    assert "FAILED 00_configure_endpoint.ipynb::Cell 2" in out and "Cell 2: Cell outputs differ" in out, out[-4000:]
    assert "- ../configs/renamed.yml" in out and "+ ../configs/my-endpoint.yml" in out, out[-4000:]
    # the renamed parameter: the notebook raises in its first cell after the parameters
    assert "FAILED 02_deploy.ipynb::Cell 1" in out, out[-4000:]
    assert "ConfigError: parameters: ['model_version'] is not allowed; run the parameters cell first" in out, out[-4000:]


# --------------------------------------------------------------------------- 01_register with each source


@pytest.mark.model
@pytest.mark.parametrize("source", ["gguf", "code", "transformers"])
def test_01_register_takes_the_model_source_as_parameters_on_the_fake(
    tmp_path: Path,
    fake_env: dict[str, str],
    source: str,
    request: pytest.FixtureRequest,
) -> None:
    """01_register with ``model_source``/``model_path`` registers that model (issue 28), as the job would run it."""
    from mlflow import MlflowClient

    from llmops_nb.chain.params import read_outputs
    from tests.models.conftest import ECHO_MODEL

    if source == "code":
        path = tmp_path / "echo_model.py"
        path.write_text(ECHO_MODEL)
    else:  # the session fixtures of tests/conftest.py: a requantized GGUF, a tiny random Llama folder
        path = request.getfixturevalue("other_gguf" if source == "gguf" else "tiny_hf_model")
    out = tmp_path / "01_register.ipynb"
    name = f"main.llmops.byom_{source}"
    command = [
        sys.executable,
        "-m",
        "papermill",
        str(ROOT / "notebooks" / "01_register.ipynb"),
        str(out),
        "--cwd",
        str(ROOT / "notebooks"),
    ]
    command += ["-p", "model_source", source, "-p", "model_path", str(path), "-p", "model_name", name, "--no-progress-bar"]
    done = subprocess.run(command, env=fake_env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    published = read_outputs(out)
    assert published["model_name"] == name and published["model_version"] == "1"
    uri = fake_env["MLFLOW_TRACKING_URI"]
    version = MlflowClient(uri, uri).get_model_version(name, "1")
    assert MlflowClient(uri, uri).get_run(version.run_id).data.tags["llmops_nb.source"] == source
