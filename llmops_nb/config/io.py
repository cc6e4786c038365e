"""YAML in and out for config models, and the config used when none is given."""

from __future__ import annotations

import typing
from pathlib import Path

from pydantic import BaseModel

from llmops_nb.errors import ConfigError

_M = typing.TypeVar("_M", bound=BaseModel)

ENV_CONFIG = "LLMOPS_CONFIG"


def default_config_path() -> Path:
    """The config used when none is given: ``$LLMOPS_CONFIG``, else ``configs/local.yml`` of the
    project folder, else of the package's checkout; ConfigError when there is none (an installed
    package run outside a project)."""
    import os

    from llmops_nb.util.paths import project_root

    if os.environ.get(ENV_CONFIG):
        return Path(os.environ[ENV_CONFIG]).expanduser().resolve()
    for root in (project_root(), Path(__file__).resolve().parents[2]):
        candidate = root / "configs" / "local.yml"
        if candidate.is_file():
            return candidate
    raise ConfigError(
        "config", "", f"none given, and no configs/local.yml in {project_root()}: pass --config or set ${ENV_CONFIG}"
    )


# ---------------------------------------------------------------- YAML in and out


def _load_yaml_model(cls: type[_M], path: Path) -> _M:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("config file", str(path), f"must be a readable file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError("config file", str(path), f"must be valid YAML ({where}{problem})") from None
    if not isinstance(data, dict):
        raise ConfigError("config file", str(path), f"must hold a mapping of fields, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ConfigError as exc:
        raise ConfigError(exc.field, exc.value, f"{exc.allowed} [{path}]") from None


def _dump_yaml(model: BaseModel, path: Path) -> None:
    """Write what was set (defaults and computed names stay implicit)."""
    import yaml

    data = model.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
