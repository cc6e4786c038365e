"""Widgets built from the pydantic config schema: one field, one widget, its type from the annotation.

Literal -> Dropdown of the allowed values (first an empty one, "unset", when the field is optional); bool -> Checkbox; required int -> IntText;
optional int, str -> Text (or Combobox when choices are known). An empty Text means "unset".
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from typing import Any, Literal, Union

import ipywidgets as w
from pydantic import BaseModel

LABEL_WIDTH = "190px"
FIELD_WIDTH = "480px"  # label + input; the form is 760 px wide (the rest holds a field's error)


def unwrap(annotation: Any) -> tuple[Any, bool]:
    """``(inner type, optional)`` of ``X | None``."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def choices(model: type[BaseModel], name: str) -> tuple[Any, ...]:
    """The allowed values of a Literal field (empty for any other type)."""
    inner, _ = unwrap(model.model_fields[name].annotation)
    return typing.get_args(inner) if typing.get_origin(inner) is Literal else ()


def field_default(model: type[BaseModel], name: str) -> Any:
    field = model.model_fields[name]
    return None if field.is_required() else field.get_default(call_default_factory=True)


def field_widget(
    model: type[BaseModel],
    name: str,
    *,
    value: Any = None,
    label: str | None = None,
    options: Sequence[str] | None = None,
    placeholder: str = "",
) -> w.Widget:
    """The widget for ``model.<name>``, holding ``value`` (else the field's default)."""
    inner, optional = unwrap(model.model_fields[name].annotation)
    value = field_default(model, name) if value is None else value
    common: dict[str, Any] = {
        "description": label or name.replace("_", " "),
        "style": {"description_width": LABEL_WIDTH},
        "layout": w.Layout(width=FIELD_WIDTH),
    }
    allowed = choices(model, name)
    if allowed:
        if optional:  # "" = unset: the workspace's default applies, nothing is sent
            allowed = ("", *allowed)
        return w.Dropdown(options=list(allowed), value=value if value in allowed else allowed[0], **common)
    if inner is bool:
        return w.Checkbox(value=bool(value), indent=False, **common)
    if inner is int and not optional:
        return w.IntText(value=int(value or 0), **common)
    text = "" if value is None else str(value)
    if options is not None:
        return w.Combobox(value=text, options=list(options), ensure_option=False, placeholder=placeholder, **common)
    return w.Text(value=text, placeholder=placeholder, **common)


def read(widget: w.Widget, *, keep_empty: bool = False) -> Any:
    """A widget's value for the config: an empty text is None (unset) unless ``keep_empty``."""
    value = widget.value
    if isinstance(value, str):
        value = value.strip()
        if not value and not keep_empty:
            return None
    return value
