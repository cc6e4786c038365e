"""Notebook parameters in, step outputs out.

In: each notebook has one cell tagged ``parameters`` with typed defaults. Locally, papermill
injects the runner's values after it; on Databricks the same names are declared as widgets
(``dbutils.widgets``, dropdowns where the values are a closed set), filled by the job's
``base_parameters`` or by hand, and read back (widget values are strings, converted to the
default's type). :func:`notebook_params` does both and validates the result.

Out: :func:`publish` shows a step's outputs in the notebook (so they are in the executed
notebook the runner reads) and, on Databricks, sets them as job task values
(``{{tasks.<step>.values.<key>}}`` downstream).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from llmops_nb.chain.table import STEP_OUTPUTS  # what each step publishes: the chain's table (re-exported)
from llmops_nb.config.project import MODEL_SOURCES  # 01_register's model_source choices
from llmops_nb.errors import ConfigError

#: The MIME type under which published outputs are displayed in a notebook.
OUTPUTS_MIME = "application/vnd.llmops-nb.outputs+json"

#: Parameters whose values are a closed set: dropdown widgets on Databricks.
CHOICES: dict[str, tuple[str, ...]] = {
    "backend": ("", "local", "databricks"),
    "dataset_source": ("bundled", "inference_table"),  # 04_evaluate: llmops_nb.evaluation.replay.SOURCES
    "model_source": ("", *MODEL_SOURCES),  # 01_register: "" is the config's model.source
    "strategy": ("", "replace", "canary"),  # 02_deploy: "" is the config's rollout.strategy
}


_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off", ""}


def _dbutils() -> Any | None:
    """The notebook's ``dbutils`` on Databricks, else None (never imports databricks.sdk.runtime)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "user_ns", {}).get("dbutils") if shell is not None else None


def coerce(name: str, value: Any, default: Any) -> Any:
    """Convert ``value`` (maybe a widget string) to the type of ``default``; one-line error otherwise."""
    kind = type(default)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    text = str(value).strip() if value is not None else ""
    try:
        if kind is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError
        if kind is int:
            if isinstance(value, (float, bool)):
                raise ValueError
            return int(text)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(text)
        if kind in (list, dict):
            parsed = json.loads(text) if isinstance(value, str) else value
            if not isinstance(parsed, kind):
                raise ValueError
            return parsed
        if kind is str:
            if isinstance(value, (dict, list)):
                raise ValueError
            return "" if value is None else str(value)
    except (ValueError, TypeError, json.JSONDecodeError):
        pass
    else:
        return value
    raise ConfigError(name, value, f"expected {kind.__name__} (like the default {default!r})")


def declare_widgets(dbutils: Any, defaults: Mapping[str, Any]) -> dict[str, str]:
    """Declare a widget per parameter (dropdowns for closed sets) and read every value back."""
    for name, default in defaults.items():
        text = (
            json.dumps(default)
            if isinstance(default, (list, dict))
            else str(default).lower()
            if isinstance(default, bool)
            else str(default)
        )
        if name in CHOICES:
            dbutils.widgets.dropdown(name, text if text in CHOICES[name] else CHOICES[name][0], list(CHOICES[name]))
        elif isinstance(default, bool):
            dbutils.widgets.dropdown(name, text, ["true", "false"])
        else:
            dbutils.widgets.text(name, text)
    return {name: dbutils.widgets.get(name) for name in defaults}


def notebook_params(namespace: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """The notebook's parameters ``names``, typed and validated.

    ``namespace`` is the notebook's ``globals()``: its values are the parameters cell's
    defaults, or papermill's injected values. On Databricks every name is declared as a
    widget with that default and read back, converted to the default's type.
    """
    missing = [n for n in names if n not in namespace]
    if missing:
        raise ConfigError("parameters", missing, "run the parameters cell first; these names are not defined")
    defaults = {name: namespace[name] for name in names}
    dbutils = _dbutils()
    raw: Mapping[str, Any] = declare_widgets(dbutils, defaults) if dbutils is not None else defaults
    out = {name: coerce(name, raw[name], default) for name, default in defaults.items()}
    check_values(out)
    return out


def check_values(values: Mapping[str, Any]) -> None:
    """One-line errors for values their type lets through: closed sets (:data:`CHOICES`) and
    the replay parameters of 04_evaluate (``replay_since``, ``replay_status``)."""
    for name, allowed in CHOICES.items():
        if name in values and values[name] not in allowed:
            raise ConfigError(name, values[name], f"expected one of {', '.join(a or repr(a) for a in allowed)}")
    if "replay_since" in values or "replay_status" in values:
        from llmops_nb.evaluation import replay

        if "replay_since" in values:
            replay.parse_since(values["replay_since"])
        if "replay_status" in values:
            replay.check_status(values["replay_status"])


def publish(step: str, **outputs: Any) -> None:
    """Publish a step's outputs: shown in the notebook, and job task values on Databricks."""
    if step not in STEP_OUTPUTS:
        raise ConfigError("step", step, f"expected one of {', '.join(STEP_OUTPUTS)}")
    missing = [k for k in STEP_OUTPUTS[step] if k not in outputs]
    if missing:
        raise ConfigError(f"{step} outputs", sorted(outputs), f"missing {', '.join(missing)}")
    payload = json.loads(json.dumps(_finite(outputs), default=str))
    dbutils = _dbutils()
    if dbutils is not None:
        for key, value in payload.items():
            dbutils.jobs.taskValues.set(key=key, value=value)
    try:
        from IPython.display import display

        if sys.modules.get("ipykernel") is not None:
            display({OUTPUTS_MIME: {"step": step, "outputs": payload}, "text/plain": _plain(step, payload)}, raw=True)
    except ImportError:  # pragma: no cover - IPython is a dependency
        pass


def _finite(value: Any) -> Any:
    """NaN and infinities become None (task values and JSON readers refuse them)."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _plain(step: str, payload: Mapping[str, Any]) -> str:
    return f"{step} outputs:\n" + "\n".join(f"  {k} = {json.dumps(v)}" for k, v in payload.items())


def read_outputs(notebook: Any) -> dict[str, Any]:
    """The outputs a step published, read from its executed notebook (a NotebookNode or path)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4) if not hasattr(notebook, "cells") else notebook
    found: dict[str, Any] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if OUTPUTS_MIME in data:
                found.update(data[OUTPUTS_MIME]["outputs"])
    return found
