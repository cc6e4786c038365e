"""The chain runner under its old name: a re-export of :mod:`llmops_nb.chain`.

The steps, their notebooks, inputs and outputs are the table in :mod:`llmops_nb.chain.table`;
the runner's phases are :mod:`llmops_nb.chain.runner`; the parameter check is
:mod:`llmops_nb.chain.check`; a notebook's parameters cell is read by
:mod:`llmops_nb.chain.inspect`. Existing imports (``from llmops_nb.pipeline import STEPS``,
``pipeline.run``) keep working.
"""

from __future__ import annotations

from llmops_nb.chain.check import TYPE_NAMES as _TYPE_NAMES
from llmops_nb.chain.check import check_parameters
from llmops_nb.chain.inspect import declared_parameters, notebook_kernel
from llmops_nb.chain.runner import (
    RunResult,
    StepFailed,
    iter_notebooks,
    new_run_dir,
    notebooks_dir,
    parse_steps,
    plan,
    run,
)
from llmops_nb.chain.table import COMMON_PARAMETERS as COMMON
from llmops_nb.chain.table import NOTEBOOKS, STEP_INPUTS, STEPS

__all__ = [
    "COMMON", "NOTEBOOKS", "STEPS", "STEP_INPUTS", "RunResult", "StepFailed", "check_parameters", "declared_parameters",
    "iter_notebooks", "new_run_dir", "notebook_kernel", "notebooks_dir", "parse_steps", "plan", "run", "_TYPE_NAMES",
]
