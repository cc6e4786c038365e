"""Pydantic validation errors as one-line ConfigError: field path, value (secrets masked), what is allowed.

`_Model` is the base of every config model: unknown fields are forbidden and any validation
failure is raised as one ConfigError line.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, ValidationError

from llmops_nb.config.secrets import MASK, looks_like_secret
from llmops_nb.errors import ConfigError

# Endpoint names: "alphanumeric characters, dashes, and underscores" (SDK docstring of
# ServingEndpointsAPI.create), "[ 1 .. 63 ] characters" (REST reference,
# docs.databricks.com/api/model-serving/v1/serving-endpoint).
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
NAME_RULE = "1-63 characters: letters, digits, '-' or '_'"
REF_RULE = "must be a secret reference '{{secrets/<scope>/<key>}}'"


class _Shown:
    """A value shown as given text in a ConfigError (ConfigError uses repr)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


_MISSING = _Shown("(missing)")


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _join(base: str, rel: str) -> str:
    if not rel:
        return base
    if not base:
        return rel
    return base + rel if rel.startswith("[") else f"{base}.{rel}"


def _safe(name: str, value: Any) -> Any:
    """The value as it may appear in a message: secrets masked, containers shortened."""
    if isinstance(value, Mapping):
        inner = {k: _safe(str(k), v) for k, v in value.items()}
        text = repr(inner)
        return _Shown(text if len(text) <= 120 else text[:117] + "...")
    if isinstance(value, (list, tuple)):
        text = repr([_safe(name, v) for v in value])
        return _Shown(text if len(text) <= 120 else text[:117] + "...")
    if "plaintext" in name or looks_like_secret(name, value):
        return MASK
    return value


def _unwrap(tp: Any) -> Any:
    """Optional[X] / list[X] / dict[str, X] -> X, repeatedly."""
    while True:
        origin = typing.get_origin(tp)
        if origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if len(args) == 1 else tp
            if len(args) != 1:
                return tp
        elif origin in (list, dict):
            tp = typing.get_args(tp)[-1]
        else:
            return tp


def _model_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    tp: Any = cls
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(part, str) and isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(part)
            if field is None:
                return None
            tp = field.annotation
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _allowed(cls: type[BaseModel], err: Mapping[str, Any]) -> str:
    kind, msg = err["type"], str(err["msg"])
    if kind == "missing":
        return "this field is required"
    if kind == "extra_forbidden":
        owner = _model_at(cls, tuple(err["loc"][:-1]))
        names = ", ".join(owner.model_fields) if owner else "see the docs"
        return f"unknown field; allowed fields: {names}"
    if kind == "literal_error":
        return f"allowed: {err['ctx']['expected']}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a mapping"
    msg = re.sub(r"^(Input|List|String|Dictionary|Value) should", "must", msg.replace("Value error, ", ""))
    return msg.replace(" after validation", "")


def _to_config_error(cls: type[BaseModel], exc: ValidationError) -> ConfigError:
    """The first error of a ValidationError as one ConfigError line."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = tuple(first["loc"])
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    inner = first.get("ctx", {}).get("error")
    if isinstance(inner, ConfigError):
        return ConfigError(_join(_path(loc), inner.field), inner.value, inner.allowed + more)
    name = str(loc[-1]) if loc else ""
    value = _MISSING if first["type"] == "missing" else _safe(name, first.get("input"))
    return ConfigError(_path(loc) or "(root)", value, _allowed(cls, first) + more)


class _Model(BaseModel):
    """Base: unknown fields forbidden, validation errors raised as one-line ConfigError."""

    model_config = ConfigDict(extra="forbid")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _to_config_error(type(self), exc) from None

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise _to_config_error(cls, exc) from None


def _check_name(value: str | None, what: str = "name") -> str | None:
    if value is not None and not NAME_RE.match(value):
        raise ConfigError("", value, f"{what}: {NAME_RULE}")
    return value
