"""One parameter check for the runner (papermill values) and the bundle validator (job widgets).

Both refuse a secret-looking value, a name the notebook's parameters cell does not declare
and a mistyped value, with one-line errors. They differ only in how values travel: papermill
injects typed values (an ``int`` where the notebook's default is a ``float`` is fine); a job
passes strings to widgets, which the notebook converts (a job's own checks of a string value,
such as task value references, go in ``value_check``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from llmops_nb.chain.inspect import declared_parameters
from llmops_nb.chain.params import check_values
from llmops_nb.chain.table import BY_NAME
from llmops_nb.config.secrets import looks_like_secret
from llmops_nb.errors import ConfigError

Via = Literal["papermill", "job"]
#: papermill's inferred type names for Python types of parameter values.
TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}
_SECRETS = {
    "papermill": "secrets are never parameters (papermill writes them into the notebook); use a {{secrets/scope/key}} reference in the config",
    "job": "secrets are never parameters (job parameters are visible in the run); name a {{secrets/scope/key}} in the config",
}
#: Parameters whose values are checked beyond their type (closed sets, replay filters).
_VALUE_CHECKED = ("dataset_source", "replay_since", "replay_status", "strategy")


def parameter_problems(
    notebook: Path,
    params: Mapping[str, Any],
    *,
    field: Callable[[str], str],
    via: Via = "papermill",
    value_check: Callable[[str, str, str, str], list[ConfigError]] | None = None,
) -> list[ConfigError]:
    """Every problem of ``params`` for ``notebook``, one one-line error each, in parameter order.

    ``field(name)`` names a parameter in the errors. With ``via="job"`` values must be strings
    and ``value_check(field, name, value, expected_type)`` checks each declared string value.
    """
    declared = declared_parameters(notebook)
    found: list[ConfigError] = []
    for name, value in params.items():
        where = field(name)
        if looks_like_secret(name, value) or (via == "job" and "{{secrets/" in str(value)):
            found.append(ConfigError(where, "***", _SECRETS[via]))
            continue
        if name not in declared:
            found.append(ConfigError(where, value, f"not a parameter of {notebook.name}; expected one of {', '.join(declared)}"))
            continue
        if via == "papermill":
            expected = str(declared[name].get("inferred_type_name", "None"))
            actual = TYPE_NAMES.get(type(value), type(value).__name__)
            if expected not in ("None", actual) and not (expected == "float" and actual == "int"):
                found.append(
                    ConfigError(where, value, f"expected {expected} (the notebook's default is {declared[name].get('default')})")
                )
            continue
        expected = str(declared[name].get("inferred_type_name", "str"))
        if not isinstance(value, str):
            found.append(
                ConfigError(where, value, f"widget values are strings; quote it (the notebook converts it to {expected})")
            )
            continue
        if value_check is not None:
            found += value_check(where, name, value, expected)
    return found


def check_parameters(step: str, notebook: Path, params: Mapping[str, Any]) -> None:
    """Refuse unknown, mistyped or secret-looking parameters before anything runs (the runner's check)."""
    found = parameter_problems(notebook, params, field=lambda name: f"{step}.{name}")
    if found:
        raise found[0]
    check_values({k: v for k, v in params.items() if k in _VALUE_CHECKED})


def check_inputs(step: str, notebook: Path) -> None:
    """The outputs ``step`` receives from earlier steps must be parameters of its notebook."""
    declared = declared_parameters(notebook)
    for key in BY_NAME[step].inputs if step in BY_NAME else ():
        if key not in declared:
            raise ConfigError(f"{step}.{key}", None, f"{notebook.name} must declare it to receive it")
