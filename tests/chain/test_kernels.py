"""Warm kernels: started and importing ahead, invisible to the notebook, never left running."""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill
import psutil
import pytest

from llmops_nb.chain.kernels import KernelWarmer, shutdown, warmup_code
from llmops_nb.chain.table import STEPS

PROBE = [
    "import sys\n",
    "print(sorted(n for n in ('mlflow', 'pandas', 'databricks.sdk') if n in sys.modules))\n",
    "print(sorted(k for k in globals() if 'llmops' in k))\n",
]


def _probe_notebook(tmp_path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("".join(PROBE))]
    path = tmp_path / "probe.ipynb"
    nbformat.write(nb, path)
    return path


def _kernel_processes() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "ipykernel" in " ".join(p.cmdline())]


def test_a_warm_kernel_has_imported_the_step_modules_and_left_no_trace(tmp_path: Path) -> None:
    source = _probe_notebook(tmp_path)
    warmer = KernelWarmer({"serve": "python3"}, cwd=tmp_path)
    km = warmer.take("serve")
    assert km is not None and km.has_kernel
    try:
        papermill.execute_notebook(str(source), str(tmp_path / "out.ipynb"), km=km, progress_bar=False)
    finally:
        shutdown(km)
        warmer.close()
    cell = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[-1]
    text = "".join(o.get("text", "") for o in cell["outputs"])
    # what serve uses, and not MLflow, which it does not use
    assert text.splitlines() == ["['databricks.sdk', 'pandas']", "[]"]
    assert cell["execution_count"] == 1  # the silent warm-up did not count as an execution
    assert not _kernel_processes()


def test_a_cold_kernel_has_not_imported_them(tmp_path: Path) -> None:
    """The probe's control: without the warm-up the same notebook sees none of them."""
    source = _probe_notebook(tmp_path)
    papermill.execute_notebook(str(source), str(tmp_path / "out.ipynb"), progress_bar=False)
    cell = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[-1]
    assert "".join(o.get("text", "") for o in cell["outputs"]).splitlines()[0] == "[]"


def test_close_shuts_down_kernels_nobody_took(tmp_path: Path) -> None:
    warmer = KernelWarmer({"deploy": "python3", "serve": "python3"}, cwd=tmp_path)
    km = warmer.take("deploy")  # waits for the first; the second may still be starting
    shutdown(km)
    warmer.close()
    assert not _kernel_processes()


def test_a_failed_warm_up_hands_out_none(tmp_path: Path) -> None:
    warmer = KernelWarmer({"register": "no-such-kernel"}, cwd=tmp_path)
    try:
        assert warmer.take("register") is None
        assert warmer.take("evaluate") is None  # never planned
    finally:
        warmer.close()
    assert not _kernel_processes()


@pytest.mark.parametrize("step", STEPS)
def test_every_preloaded_module_exists(step: str) -> None:
    """A renamed module would silently cost the head start: the list must stay importable."""
    import importlib.util

    from llmops_nb.chain.kernels import COMMON, PRELOAD

    for name in COMMON + PRELOAD[step]:
        assert importlib.util.find_spec(name) is not None, name
    compile(warmup_code(step), "<warmup>", "exec")
