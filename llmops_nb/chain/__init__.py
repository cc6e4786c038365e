"""The chain of step notebooks: declared once, checked once, run in named phases.

- :mod:`~llmops_nb.chain.table`: the one :class:`Step` table (notebook, inputs, outputs with
  their types, timeout, retries, warm imports) every other reader derives from;
- :mod:`~llmops_nb.chain.inspect`: a notebook's parameters cell, read once (cached);
- :mod:`~llmops_nb.chain.check`: the one parameter check of the runner and the bundle validator;
- :mod:`~llmops_nb.chain.runner`: the runner (prepare -> check -> execute each step -> collect).

``llmops_nb.pipeline`` re-exports the runner under its old names. The table is imported
eagerly (it is cheap, and ``params`` reads it); the runner's names load on first use.
"""

from __future__ import annotations

from typing import Any

from llmops_nb.chain.table import (
    CHAIN,
    COMMON_IMPORTS,
    COMMON_PARAMETERS,
    NOTEBOOKS,
    OUTPUT_TYPES,
    PRELOAD,
    STEP_INPUTS,
    STEP_OUTPUTS,
    STEPS,
    TIMEOUTS,
    Output,
    Step,
)

_RUNNER = ("RunResult", "StepFailed", "run", "plan", "parse_steps", "notebooks_dir", "iter_notebooks")


def __getattr__(name: str) -> Any:
    if name in _RUNNER:
        from llmops_nb.chain import runner

        return getattr(runner, name)
    if name in ("check_parameters", "parameter_problems"):
        from llmops_nb.chain import check

        return getattr(check, name)
    if name == "declared_parameters":
        from llmops_nb.chain.inspect import declared_parameters

        return declared_parameters
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CHAIN", "COMMON_IMPORTS", "COMMON_PARAMETERS", "NOTEBOOKS", "OUTPUT_TYPES", "PRELOAD", "STEPS", "STEP_INPUTS",
    "STEP_OUTPUTS", "TIMEOUTS", "Output", "Step", *_RUNNER, "check_parameters", "parameter_problems", "declared_parameters",
]
