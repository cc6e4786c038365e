"""Chain the step notebooks with papermill: one run folder per run, in named phases.

papermill's ``execute.py`` is the model: :func:`run` is :func:`prepare` (steps, config, the
parameters of every step checked against its notebook before anything runs), then
:func:`execute_step` for each step (its parameters checked again with the outputs of the
steps before, the notebook run in a warm kernel if one is ready), then :func:`collect` (the
step's published outputs read from the executed notebook); :func:`write_summary` records the
run even when a step fails. A failing step stops the chain; its executed notebook (with the
error) stays in the run folder and the error names the step, the cell and the exception.
What each step takes and publishes is the table in :mod:`llmops_nb.chain.table`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmops_nb.chain.check import check_inputs, check_parameters
from llmops_nb.chain.inspect import declared_parameters, notebook_kernel
from llmops_nb.chain.kernels import KernelWarmer, kernel_manager
from llmops_nb.chain.kernels import shutdown as kernel_shutdown
from llmops_nb.chain.params import read_outputs
from llmops_nb.chain.table import BY_NAME, COMMON_PARAMETERS, NOTEBOOKS, STEPS
from llmops_nb.errors import ConfigError, LlmopsError
from llmops_nb.tracking.provenance import environment_record
from llmops_nb.util.paths import project_root


class StepFailed(LlmopsError):
    """A step's notebook raised; the executed notebook is kept in the run folder."""


@dataclass
class RunResult:
    """What a chain run left behind."""

    run_dir: Path
    steps: list[str]
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def published(self) -> dict[str, Any]:
        """Every output of every step, merged in order."""
        merged: dict[str, Any] = {}
        for step in self.steps:
            merged.update(self.outputs.get(step, {}))
        return merged


@dataclass
class Prepared:
    """What :func:`prepare` settles before any step runs."""

    steps: list[str]
    config_path: Path
    backend: str
    params: dict[str, dict[str, Any]]
    #: Steps of the whole chain that do not apply to this config, and why (see :func:`skipped_steps`).
    skipped: dict[str, str] = field(default_factory=dict)


def notebooks_dir() -> Path:
    """The folder that holds the step notebooks: ``<project>/notebooks``, else the package's checkout."""
    local = project_root() / "notebooks"
    if (local / NOTEBOOKS[STEPS[0]]).exists():
        return local
    return Path(__file__).resolve().parents[2] / "notebooks"


def notebook_path(step: str) -> Path:
    """The notebook file a step runs."""
    return notebooks_dir() / NOTEBOOKS[step]


def iter_notebooks() -> Iterable[Path]:
    """Every step notebook, in chain order."""
    return (notebook_path(s) for s in STEPS)


def parse_steps(steps: str | Sequence[str] | None) -> list[str]:
    """``"deploy,serve"`` or a list -> steps in chain order; one-line error for unknown ones."""
    if steps is None or steps == "" or steps == "all":
        return list(STEPS)
    names = [s.strip() for s in (steps.split(",") if isinstance(steps, str) else steps) if s.strip()]
    for name in names:
        if name not in STEPS:
            raise ConfigError("steps", name, f"expected a comma-separated subset of {', '.join(STEPS)}")
    return [s for s in STEPS if s in names]


def new_run_dir(out: Path | None = None) -> Path:
    """A new run folder under ``out`` (default ``<project>/runs``)."""
    base = out or project_root() / "runs"
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = base / stamp
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = base / f"{stamp}-{n}"
    run_dir.mkdir(parents=True)
    return run_dir


#: The parameter a step notebook declares to get the run folder (04_evaluate: decision.json there).
RUN_FOLDER_PARAMETER = "output_dir"


def plan(
    steps: Sequence[str], config_path: Path, backend: str, overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """The parameters each step gets before outputs are known; checked against each notebook."""
    params: dict[str, dict[str, Any]] = {}
    for step in steps:
        notebook = notebook_path(step)
        declared = declared_parameters(notebook)
        base = dict(zip(COMMON_PARAMETERS, (str(config_path), backend)))
        step_params = {k: v for k, v in base.items() if k in declared}
        step_params.update((overrides or {}).get(step, {}))
        check_parameters(step, notebook, step_params)
        check_inputs(step, notebook)
        params[step] = step_params
    return params


# --------------------------------------------------------------------------- the phases


def prepare(
    config_path: str | Path | None,
    steps: str | Sequence[str] | None,
    backend: str,
    overrides: Mapping[str, Mapping[str, Any]] | None,
) -> Prepared:
    """Steps in chain order, the config loaded, every step's parameters checked: nothing runs yet."""
    from llmops_nb.config.io import default_config_path
    from llmops_nb.config.project import load_project_config

    chosen = parse_steps(steps)
    cfg_path = Path(config_path or default_config_path()).resolve()
    project = load_project_config(cfg_path)  # bad config fails here, before any step
    kind = backend or project.backend
    skipped = skipped_steps(project) if steps in (None, "", "all") else {}
    chosen = [s for s in chosen if s not in skipped]
    if "register" in chosen and project.model.source == "uc" and kind != "databricks":
        raise ConfigError(
            "model.source",
            "uc",
            "a Unity Catalog model serves on Databricks only; run with --backend databricks, or pick a "
            "bundled, gguf, transformers or code source",
        )
    if "evaluate" in chosen:  # the whole evaluation section, before the first step changes anything
        check_evaluation_section(project, kind, deploying="deploy" in chosen, overrides=(overrides or {}).get("evaluate", {}))
    return Prepared(chosen, cfg_path, kind, {}, skipped)


def check_evaluation_section(project: Any, kind: str, *, deploying: bool, overrides: Mapping[str, Any]) -> list[str]:
    """:func:`llmops_nb.evaluation.checks.check_evaluation` with the run's overrides
    (``dataset``, ``thresholds``, ``dataset_source``): the dataset, threshold names, candidates on the endpoint the chain
    deploys. Candidates on other endpoints need the workspace: ``llmops-nb run`` and preflight
    ask it (the chain knows no workspace), and the evaluate step before any row is sent."""
    from llmops_nb.config.project import with_evaluation
    from llmops_nb.evaluation.checks import check_evaluation

    del kind  # the same checks on every backend
    project = with_evaluation(project, dataset=overrides.get("dataset") or "", thresholds=overrides.get("thresholds") or "")
    return check_evaluation(project, deploying=deploying, replay=overrides.get("dataset_source") == "inference_table")


def skipped_steps(project: Any) -> dict[str, str]:
    """The steps of the whole chain that do not apply to ``project``, each with the reason.

    A foundation endpoint is queried as it is: nothing to register or deploy. An endpoint whose
    served entities are all external models registers nothing.
    """
    if project.endpoint is None:
        why = f"foundation_endpoint {project.foundation_endpoint!r} is served as it is"
        return {"register": f"{why}: nothing to register", "deploy": f"{why}: nothing to deploy"}
    entities = project.endpoint.served_entities
    if entities and all(e.external_model is not None for e in entities):
        return {"register": f"endpoint {project.endpoint.name!r} serves only external models: nothing to register"}
    return {}


def step_parameters(step: str, planned: Mapping[str, Any], published: Mapping[str, Any]) -> dict[str, Any]:
    """A step's planned parameters plus the outputs of earlier steps it takes, checked again."""
    params = dict(planned)
    params.update({k: v for k, v in published.items() if k in BY_NAME[step].inputs})
    check_parameters(step, notebook_path(step), params)
    return params


def execute_step(
    step: str, params: Mapping[str, Any], run_dir: Path, *, kernel_name: str | None, progress: bool, km: Any | None = None
) -> Path:
    """Run one step's notebook into the run folder; :class:`StepFailed` names the cell that raised."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    target = run_dir / NOTEBOOKS[step]
    own = km is None  # a cold kernel: ours too, over IPC (kernels.kernel_manager), shut down here
    if own:
        km = kernel_manager(kernel_name or notebook_kernel(notebook_path(step)))
    try:
        papermill.execute_notebook(
            str(notebook_path(step)),
            str(target),
            parameters=dict(params),
            kernel_name=kernel_name,
            cwd=str(notebooks_dir()),
            progress_bar=progress,
            km=km,
        )
    except PapermillExecutionError as exc:
        raise StepFailed(
            f"step {step} failed in cell {exc.exec_count} ({exc.ename}: {str(exc.evalue).splitlines()[0] if exc.evalue else ''}); "
            f"executed notebook: {target}"
        ) from None
    finally:
        if own:
            kernel_shutdown(km)
    return target


def collect(step: str, executed: Path, result: RunResult) -> dict[str, Any]:
    """The outputs ``step`` published, read from its executed notebook into ``result``."""
    result.outputs[step] = read_outputs(executed)
    return result.outputs[step]


def write_summary(result: RunResult, record: dict[str, Any]) -> None:
    """``summary.json`` in the run folder: parameters, environment, outputs, timings, completed steps."""
    record.update(
        finished=datetime.now(UTC).isoformat(),
        outputs=result.outputs,
        seconds=result.seconds,
        completed=[s for s in result.steps if s in result.outputs],
    )
    (result.run_dir / "summary.json").write_text(json.dumps(record, indent=2, default=str))


def run(
    config_path: str | Path | None = None,
    *,
    steps: str | Sequence[str] | None = None,
    out: str | Path | None = None,
    backend: str = "",
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    kernel_name: str | None = None,
    progress: bool = True,
    log: Any = print,
    warm_kernels: bool = True,
) -> RunResult:
    """Run the chain (or ``steps`` of it) and return what it published.

    ``overrides`` maps a step to extra parameters for its notebook (checked like the others).
    ``warm_kernels`` starts each step's kernel (and its imports) while the step before runs
    (see :mod:`llmops_nb.chain.kernels`); every notebook still runs in a fresh kernel of its own.
    """
    prepared = prepare(config_path, steps, backend, overrides)
    chosen = prepared.steps
    for step, why in prepared.skipped.items():
        log(f"skipping {step}: {why}")
    with contextlib.ExitStack() as cleanup:
        warmer = None
        if warm_kernels:  # the first kernel starts while papermill imports and the parameters are checked
            warmer = cleanup.enter_context(
                KernelWarmer({s: kernel_name or notebook_kernel(notebook_path(s)) for s in chosen}, cwd=notebooks_dir())
            )
        prepared.params = plan(chosen, prepared.config_path, backend, overrides)
        run_dir = new_run_dir(Path(out).resolve() if out else None)
        (run_dir / "config.yml").write_text(prepared.config_path.read_text())
        for step in chosen:  # a step that declares output_dir writes its files (decision.json ...) into the run folder
            if RUN_FOLDER_PARAMETER in declared_parameters(notebook_path(step)):
                prepared.params[step].setdefault(RUN_FOLDER_PARAMETER, str(run_dir))
        result = RunResult(run_dir=run_dir, steps=chosen)
        record = {
            "started": datetime.now(UTC).isoformat(),
            "config_path": str(prepared.config_path),
            "backend": prepared.backend,
            "steps": chosen,
            "skipped": prepared.skipped,
            "parameters": prepared.params,
            "environment": environment_record(),
        }
        published: dict[str, Any] = {}
        try:
            for i, step in enumerate(chosen, start=1):
                params = step_parameters(step, prepared.params[step], published)
                log(f"[{i}/{len(chosen)}] {step}: {notebook_path(step).name} -> {run_dir / NOTEBOOKS[step]}")
                started = time.perf_counter()
                km = warmer.take(step) if warmer else None
                try:
                    executed = execute_step(step, params, run_dir, kernel_name=kernel_name, progress=progress, km=km)
                finally:
                    if warmer is not None and km is not None:
                        warmer.release(km)  # exits while the next step runs
                    result.seconds[step] = round(time.perf_counter() - started, 2)
                published.update(collect(step, executed, result))
        finally:
            write_summary(result, record)
    return result


__all__ = [
    "Prepared",
    "RunResult",
    "StepFailed",
    "collect",
    "execute_step",
    "iter_notebooks",
    "new_run_dir",
    "notebook_kernel",
    "notebook_path",
    "notebooks_dir",
    "parse_steps",
    "plan",
    "prepare",
    "run",
    "step_parameters",
    "write_summary",
]
