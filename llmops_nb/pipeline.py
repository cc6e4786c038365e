"""Chain the step notebooks with papermill: one run folder per run.

Each step's published outputs (see :mod:`llmops_nb.params`) are injected as papermill
parameters into the later steps that declare them. Every parameter is checked against the
notebook's ``parameters`` cell (``papermill.inspect_notebook``) before anything runs. A
failing step stops the chain; its executed notebook (with the error) stays in the run folder
and the error names the step, the cell and the exception.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmops_nb.errors import ConfigError, LlmopsError
from llmops_nb.kernels import KernelWarmer
from llmops_nb.params import check_values, read_outputs
from llmops_nb.paths import project_root
from llmops_nb.provenance import environment_record
from llmops_nb.secrets import looks_like_secret

STEPS: tuple[str, ...] = ("register", "deploy", "serve", "evaluate")
NOTEBOOKS: dict[str, str] = {
    "register": "01_register.ipynb",
    "deploy": "02_deploy.ipynb",
    "serve": "03_serve.ipynb",
    "evaluate": "04_evaluate.ipynb",
}
#: Parameters every step takes from the runner.
COMMON = ("config_path", "backend")
#: papermill's inferred type names for Python types of parameter values.
_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}


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


def notebooks_dir() -> Path:
    """The folder that holds the step notebooks: ``<project>/notebooks``, else the package's checkout."""
    local = project_root() / "notebooks"
    if (local / NOTEBOOKS["register"]).exists():
        return local
    return Path(__file__).resolve().parents[1] / "notebooks"


def parse_steps(steps: str | Sequence[str] | None) -> list[str]:
    """``"deploy,serve"`` or a list -> steps in chain order; one-line error for unknown ones."""
    if steps is None or steps == "" or steps == "all":
        return list(STEPS)
    names = [s.strip() for s in (steps.split(",") if isinstance(steps, str) else steps) if s.strip()]
    for name in names:
        if name not in STEPS:
            raise ConfigError("steps", name, f"expected a comma-separated subset of {', '.join(STEPS)}")
    return [s for s in STEPS if s in names]


def declared_parameters(notebook: Path) -> dict[str, dict[str, Any]]:
    """The parameters cell of a notebook: name -> {inferred_type_name, default, help}."""
    from papermill import inspect_notebook

    if not notebook.exists():
        raise ConfigError("notebook", str(notebook), "expected an existing .ipynb file")
    return {name: dict(info) for name, info in inspect_notebook(str(notebook)).items()}


def check_parameters(step: str, notebook: Path, params: Mapping[str, Any]) -> None:
    """Refuse unknown, mistyped or secret-looking parameters before anything runs."""
    declared = declared_parameters(notebook)
    for name, value in params.items():
        if looks_like_secret(name, value):
            raise ConfigError(
                f"{step}.{name}", "***", "secrets are never parameters (papermill writes them into the notebook); use a {{secrets/scope/key}} reference in the config"
            )
        if name not in declared:
            raise ConfigError(f"{step}.{name}", value, f"not a parameter of {notebook.name}; expected one of {', '.join(declared)}")
        expected = str(declared[name].get("inferred_type_name", "None"))
        actual = _TYPE_NAMES.get(type(value), type(value).__name__)
        if expected not in ("None", actual) and not (expected == "float" and actual == "int"):
            raise ConfigError(f"{step}.{name}", value, f"expected {expected} (the notebook's default is {declared[name].get('default')})")
    check_values({k: v for k, v in params.items() if k in ("dataset_source", "replay_since", "replay_status")})


def new_run_dir(out: Path | None = None) -> Path:
    """A new run folder under ``out`` (default ``<project>/runs``)."""
    base = out or project_root() / "runs"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = base / stamp
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = base / f"{stamp}-{n}"
    run_dir.mkdir(parents=True)
    return run_dir


def plan(
    steps: Sequence[str], config_path: Path, backend: str, overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """The parameters each step gets before outputs are known; checked against each notebook."""
    params: dict[str, dict[str, Any]] = {}
    folder = notebooks_dir()
    for step in steps:
        notebook = folder / NOTEBOOKS[step]
        declared = declared_parameters(notebook)
        base = {"config_path": str(config_path), "backend": backend}
        step_params = {k: v for k, v in base.items() if k in declared}
        step_params.update((overrides or {}).get(step, {}))
        check_parameters(step, notebook, step_params)
        # the outputs this step receives from earlier steps must be declared parameters too
        for key in STEP_INPUTS.get(step, ()):
            if key not in declared:
                raise ConfigError(f"{step}.{key}", None, f"{notebook.name} must declare it to receive it")
        params[step] = step_params
    return params


#: Outputs of earlier steps each step takes as parameters (the bundle's job wires the same).
STEP_INPUTS: dict[str, tuple[str, ...]] = {
    "deploy": ("model_version",),
    "serve": ("endpoint_name",),
    "evaluate": ("endpoint_name", "model_name", "model_version"),
}


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
    (see :mod:`llmops_nb.kernels`); every notebook still runs in a fresh kernel of its own.
    """
    from llmops_nb.config import default_config_path, load_project_config

    chosen = parse_steps(steps)
    cfg_path = Path(config_path or default_config_path()).resolve()
    project = load_project_config(cfg_path)  # bad config fails here, before any step
    with contextlib.ExitStack() as cleanup:
        warmer = None
        if warm_kernels:  # the first kernel starts while papermill imports and the parameters are checked
            warmer = cleanup.enter_context(KernelWarmer(
                {s: kernel_name or notebook_kernel(notebooks_dir() / NOTEBOOKS[s]) for s in chosen},
                cwd=notebooks_dir()))
        import papermill
        from papermill.exceptions import PapermillExecutionError

        params = plan(chosen, cfg_path, backend, overrides)
        run_dir = new_run_dir(Path(out).resolve() if out else None)
        (run_dir / "config.yml").write_text(cfg_path.read_text())
        result = RunResult(run_dir=run_dir, steps=chosen)
        record = {
            "started": datetime.now(timezone.utc).isoformat(),
            "config_path": str(cfg_path),
            "backend": backend or project.backend,
            "steps": chosen,
            "parameters": params,
            "environment": environment_record(),
        }
        published: dict[str, Any] = {}
        try:
            for i, step in enumerate(chosen, start=1):
                notebook = notebooks_dir() / NOTEBOOKS[step]
                target = run_dir / NOTEBOOKS[step]
                step_params = dict(params[step])
                step_params.update({k: v for k, v in published.items() if k in STEP_INPUTS.get(step, ())})
                check_parameters(step, notebook, step_params)
                log(f"[{i}/{len(chosen)}] {step}: {notebook.name} -> {target}")
                started = time.perf_counter()
                km = warmer.take(step) if warmer else None
                try:
                    papermill.execute_notebook(
                        str(notebook),
                        str(target),
                        parameters=step_params,
                        kernel_name=kernel_name,
                        cwd=str(notebooks_dir()),
                        progress_bar=progress,
                        **({"km": km} if km is not None else {}),
                    )
                except PapermillExecutionError as exc:
                    raise StepFailed(
                        f"step {step} failed in cell {exc.exec_count} ({exc.ename}: {str(exc.evalue).splitlines()[0] if exc.evalue else ''}); "
                        f"executed notebook: {target}"
                    ) from None
                finally:
                    if km is not None:
                        warmer.release(km)  # exits while the next step runs
                    result.seconds[step] = round(time.perf_counter() - started, 2)
                result.outputs[step] = read_outputs(target)
                published.update(result.outputs[step])
        finally:
            record.update(
                finished=datetime.now(timezone.utc).isoformat(),
                outputs=result.outputs,
                seconds=result.seconds,
                completed=[s for s in chosen if s in result.outputs],
            )
            (run_dir / "summary.json").write_text(json.dumps(record, indent=2, default=str))
    return result


def notebook_kernel(notebook: Path) -> str:
    """The kernel a notebook names in its metadata (as papermill picks it), else python3."""
    meta = json.loads(Path(notebook).read_text(encoding="utf-8")).get("metadata", {})
    return (meta.get("kernelspec") or {}).get("name") or "python3"


def iter_notebooks() -> Iterable[Path]:
    """Every step notebook, in chain order."""
    return (notebooks_dir() / NOTEBOOKS[s] for s in STEPS)
