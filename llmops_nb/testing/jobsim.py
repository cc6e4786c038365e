"""Run a bundle's job locally, as Databricks would, for offline tests.

:func:`run_job` validates the bundle (:mod:`llmops_nb.chain.bundle`), resolves it for a target
(``${var.*}``, ``${workspace.file_path}`` = the bundle's own folder), then runs its notebook
tasks in ``depends_on`` order with papermill. Each notebook runs unchanged: a hidden setup
cell (in a temporary copy) puts an emulated ``dbutils`` in the kernel's namespace, so the
notebook declares widgets and reads the task's ``base_parameters`` from them, and
``params.publish`` sets task values. ``{{tasks.<task>.values.<key>}}`` in later tasks'
parameters are filled from the values upstream tasks set, ``{{job.parameters.<name>}}`` from
the job's parameters. Failed tasks are retried up to their ``max_retries``; tasks downstream
of a failure are marked UPSTREAM_FAILED and not run.

Not emulated: clusters and libraries (the kernel is this environment's), ``run_if``,
schedules, notifications, wall-clock waits between retries, and the rest of ``dbutils``.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops_nb.errors import ConfigError, LlmopsError

SETUP_TAG = "llmops-jobsim-setup"
#: Databricks refuses task values larger than this (serialized as JSON).
MAX_TASK_VALUE_BYTES = 48 * 1024


class TaskValueError(LlmopsError, ValueError):
    """A task value could not be set or read (too big, not JSON, not published)."""


# --------------------------------------------------------------------------- emulated dbutils


class _Widgets:
    """``dbutils.widgets``: job parameters win over the declared defaults; values are strings."""

    def __init__(self, params: Mapping[str, str]) -> None:
        self._params = {k: str(v) for k, v in params.items()}
        self._declared: dict[str, str] = {}

    def text(self, name: str, defaultValue: str, label: str | None = None) -> None:  # noqa: N803 - dbutils' names
        self._declared[name] = str(defaultValue)

    def dropdown(self, name: str, defaultValue: str, choices: list[str], label: str | None = None) -> None:  # noqa: N803
        if str(defaultValue) not in [str(c) for c in choices]:
            raise ValueError(f"Default value {defaultValue!r} of widget {name} is not one of its choices {choices}")
        self._declared[name] = str(defaultValue)

    combobox = dropdown

    def multiselect(self, name: str, defaultValue: str, choices: list[str], label: str | None = None) -> None:  # noqa: N803
        self._declared[name] = str(defaultValue)

    def get(self, name: str) -> str:
        if name in self._params:
            return self._params[name]
        if name in self._declared:
            return self._declared[name]
        raise ValueError(f"InputWidgetNotDefined: no input widget named {name} is defined")

    getArgument = get  # noqa: N815 - the legacy dbutils name

    def remove(self, name: str) -> None:
        self._declared.pop(name, None)

    def removeAll(self) -> None:  # noqa: N802
        self._declared.clear()


class _TaskValues:
    """``dbutils.jobs.taskValues``: set writes the task's values file; get reads upstream ones."""

    def __init__(self, upstream: Mapping[str, Mapping[str, Any]], out: Path) -> None:
        self._upstream, self._out = upstream, out
        self._values: dict[str, Any] = {}

    def set(self, key: str, value: Any) -> None:
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TaskValueError(f"task value {key}: not JSON serializable ({exc})") from None
        if len(text.encode()) > MAX_TASK_VALUE_BYTES:
            raise TaskValueError(f"task value {key}: {len(text.encode())} bytes, more than the {MAX_TASK_VALUE_BYTES} allowed")
        self._values[key] = json.loads(text)
        self._out.write_text(json.dumps(self._values))

    def get(self, taskKey: str, key: str, default: Any = None, debugValue: Any = None) -> Any:  # noqa: N803
        found = self._upstream.get(taskKey, {})
        if key in found:
            return found[key]
        if default is not None:
            return default
        raise TaskValueError(f"task value {key} of task {taskKey} was not set by an upstream task and has no default")


@dataclass
class _Jobs:
    taskValues: _TaskValues  # noqa: N815


class EmulatedDbutils:
    """The parts of ``dbutils`` the notebooks use in a job: widgets and task values."""

    def __init__(self, params: Mapping[str, str], upstream: Mapping[str, Mapping[str, Any]], values_path: Path) -> None:
        self.widgets = _Widgets(params)
        self.jobs = _Jobs(_TaskValues(upstream, values_path))

    @classmethod
    def from_file(cls, context: str | Path) -> EmulatedDbutils:
        """Built from the JSON context the simulator writes for a task."""
        data = json.loads(Path(context).read_text())
        return cls(data["params"], data["upstream"], Path(data["values_path"]))


# --------------------------------------------------------------------------- the job run


@dataclass
class TaskRun:
    """One task of a simulated run."""

    task_key: str
    state: str = "PENDING"  # SUCCESS | FAILED | UPSTREAM_FAILED
    params: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    notebook: Path | None = None
    error: str | None = None
    seconds: float = 0.0


@dataclass
class JobRun:
    """A simulated run of a bundle's job."""

    job_key: str
    target: str
    run_dir: Path
    order: list[str]
    tasks: dict[str, TaskRun]

    @property
    def state(self) -> str:
        return "SUCCESS" if all(t.state == "SUCCESS" for t in self.tasks.values()) else "FAILED"


def _setup_source(context: Path) -> str:
    return (
        "# llmops-nb job simulator: an emulated dbutils (widgets and task values), as on Databricks\n"
        "from llmops_nb.testing.jobsim import EmulatedDbutils as _EmulatedDbutils\n"
        f"dbutils = _EmulatedDbutils.from_file({str(context)!r})\n"
        "del _EmulatedDbutils\n"
    )


def _with_setup_cell(notebook: Path, context: Path, target: Path) -> None:
    """A copy of ``notebook`` with the hidden setup cell first."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cell = nbformat.v4.new_code_cell(_setup_source(context))
    cell.metadata.update({"tags": [SETUP_TAG], "jupyter": {"source_hidden": True}})
    nb.cells.insert(0, cell)
    nbformat.write(nb, str(target))


def resolve_refs(value: str, values: Mapping[str, Mapping[str, Any]], job_params: Mapping[str, Any], field_name: str) -> str:
    """Fill ``{{tasks.X.values.Y}}`` and ``{{job.parameters.Z}}`` as Databricks does (JSON for non-strings)."""
    from llmops_nb.chain.bundle import ANY_REF

    def one(match: Any) -> str:
        ref = match.group(1)
        parts = ref.split(".")
        if len(parts) == 4 and parts[0] == "tasks" and parts[2] == "values":
            task, key = parts[1], parts[3]
            if key not in values.get(task, {}):
                raise TaskValueError(f"{field_name}: task {task} did not set task value {key}")
            found = values[task][key]
        elif len(parts) == 3 and parts[:2] == ["job", "parameters"]:
            found = job_params[parts[2]]
        else:
            return match.group(0)
        return found if isinstance(found, str) else json.dumps(found)

    return ANY_REF.sub(one, value)


def run_job(
    bundle_path: str | Path,
    *,
    target: str = "dev",
    variables: Mapping[str, Any] | None = None,
    job_key: str | None = None,
    out: str | Path | None = None,
    kernel_name: str | None = None,
    log: Any = print,
) -> JobRun:
    """Run the bundle's job (the only one, or ``job_key``) locally; see the module docstring."""
    import papermill

    from llmops_nb.chain import bundle

    path = Path(bundle_path).resolve()
    root = path.parent
    raw = bundle.load(path)
    found = bundle.problems(raw, root)
    if found:
        raise found[0]
    jobs = bundle.resolve(raw, target, file_path=str(root), overrides=variables)
    key = job_key or next(iter(jobs))
    if key not in jobs:
        raise ConfigError("job_key", key, f"expected one of {', '.join(jobs)}")
    job = jobs[key]
    tasks = {t["task_key"]: t for t in job.get("tasks") or []}
    order = bundle.task_order(list(tasks.values()))
    job_params = {p["name"]: p.get("default", "") for p in job.get("parameters") or []}
    run_dir = Path(out) if out else Path(tempfile.mkdtemp(prefix="llmops-jobsim-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    result = JobRun(job_key=key, target=target, run_dir=run_dir, order=order, tasks={k: TaskRun(k) for k in order})
    values: dict[str, dict[str, Any]] = {}
    for i, task_key in enumerate(order, start=1):
        task, run = tasks[task_key], result.tasks[task_key]
        needs = [d["task_key"] for d in task.get("depends_on") or []]
        if any(result.tasks[n].state != "SUCCESS" for n in needs):
            run.state = "UPSTREAM_FAILED"
            log(f"[{i}/{len(order)}] {task_key}: skipped (upstream failed)")
            continue
        nb_task = task["notebook_task"]
        notebook = bundle.notebook_file(nb_task["notebook_path"], root)
        assert notebook is not None  # problems() checked it
        run.params = {
            name: resolve_refs(str(value), values, job_params, f"{task_key}.{name}")
            for name, value in (nb_task.get("base_parameters") or {}).items()
        }
        _run_task(papermill, task, run, notebook, run_dir, values, kernel_name, log, f"[{i}/{len(order)}]")
        values[task_key] = run.values
    return result


def _run_task(
    papermill: Any,
    task: Mapping[str, Any],
    run: TaskRun,
    notebook: Path,
    run_dir: Path,
    values: Mapping[str, Mapping[str, Any]],
    kernel_name: str | None,
    log: Any,
    counter: str,
) -> None:
    """Run one notebook task, retrying up to ``max_retries`` times; fills ``run``."""
    work = run_dir / run.task_key
    work.mkdir(exist_ok=True)
    upstream = {k: dict(v) for k, v in values.items()}
    retries = int(task.get("max_retries") or 0)
    timeout = task.get("timeout_seconds") or None
    started = time.perf_counter()
    while True:
        run.attempts += 1
        values_path = work / f"task_values-{run.attempts}.json"
        context = work / f"context-{run.attempts}.json"
        context.write_text(json.dumps({"params": run.params, "upstream": upstream, "values_path": str(values_path)}))
        source = work / f"source-{notebook.name}"
        _with_setup_cell(notebook, context, source)
        run.notebook = work / notebook.name
        log(f"{counter} {run.task_key}: {notebook.name} (attempt {run.attempts}) -> {run.notebook}")
        try:
            papermill.execute_notebook(
                str(source),
                str(run.notebook),
                kernel_name=kernel_name,
                cwd=str(notebook.parent),
                progress_bar=False,
                execution_timeout=timeout,
            )
        except Exception as exc:  # noqa: BLE001 - a task fails on any error, as on Databricks
            run.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
            if run.attempts <= retries:
                continue
            run.state = "FAILED"
            break
        run.values = json.loads(values_path.read_text()) if values_path.exists() else {}
        run.state, run.error = "SUCCESS", None
        break
    run.seconds = round(time.perf_counter() - started, 2)
