"""The form's model section: serve a registered version, or register one from a file or folder.

"register from a file or folder" shows ``model.source`` (bundled, gguf, transformers, code, uc)
and, per source, the fields :data:`llmops_nb.config.project.SOURCE_FIELDS` gives it; the model
section is built with :func:`llmops_nb.config.project.with_model` and so validated as the
project file would be (one ConfigError line naming ``model.<field>``). A path is also looked up
as register would look it up (:func:`llmops_nb.models.sources.local_path`, which only stats it):
nothing is loaded, logged or created while the user types.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ipywidgets as w

from llmops_nb.config.project import SOURCE_FIELDS, ModelSpec, ProjectConfig, with_model
from llmops_nb.errors import ConfigError
from llmops_nb.widgets.schema import FIELD_WIDTH, LABEL_WIDTH, field_widget

PICK_REGISTERED, PICK_NEW = "a registered version", "register from a file or folder"
#: The model fields the section shows, in order (``name`` and ``source`` always, the rest per source).
MODEL_FIELDS = ("name", "source", "path", "hf_repo", "hf_file", "revision", "requirements", "version")
PLACEHOLDERS = {
    "path": "a file or folder (relative: from the project folder)",
    "hf_repo": "owner/repo on the Hugging Face Hub",
    "hf_file": "the .gguf file in the repo",
    "revision": "main",
    "requirements": "pip requirements, comma separated",
    "version": "the Unity Catalog version, e.g. 1",
}
LABELS = {"name": "model name", "version": "uc version", "hf_repo": "hf repo", "hf_file": "hf file"}
#: Sources whose ``path`` is a file or folder on this machine.
_PATH_SOURCES = frozenset({"gguf", "transformers", "code"})


def initial_pick(model: ModelSpec) -> str:
    """The bundled model starts as "a registered version"; any other source shows its fields."""
    return PICK_REGISTERED if model.source == "bundled" else PICK_NEW


def model_widgets(model: ModelSpec) -> dict[str, w.Widget]:
    """``{field: widget}`` for :data:`MODEL_FIELDS`, holding ``model``'s values."""
    out: dict[str, w.Widget] = {}
    for name in MODEL_FIELDS:
        value = getattr(model, name)
        if name == "requirements":  # a list: one comma-separated line
            out[name] = w.Text(
                value=", ".join(value),
                description=name,
                placeholder=PLACEHOLDERS[name],
                style={"description_width": LABEL_WIDTH},
                layout=w.Layout(width=FIELD_WIDTH),
            )
        else:
            out[name] = field_widget(
                ModelSpec,
                name,
                value=value,
                label=LABELS.get(name, name.replace("_", " ")),
                placeholder=PLACEHOLDERS.get(name, ""),
            )
    return out


def shown(source: str) -> frozenset[str]:
    """The fields shown for ``source``."""
    return frozenset({"name", "source"}) | SOURCE_FIELDS.get(source, frozenset())


def new_model(project: ProjectConfig, values: Mapping[str, Any]) -> ModelSpec:
    """The model section the shown ``values`` ({field: text}) describe, over ``project``'s alias and
    generation defaults; one ConfigError line naming ``model.<field>`` if it is wrong."""
    source = str(values.get("source") or "bundled")
    name = str(values.get("name") or "").strip()
    if not name:
        raise ConfigError("model.name", name, "the registered model's name")
    kept = project.model
    blank = ModelSpec(name=name, alias=kept.alias, max_tokens=kept.max_tokens, temperature=kept.temperature)
    changes: dict[str, Any] = {}
    for field in shown(source) - {"name"}:
        value = values.get(field)
        if field == "requirements":
            value = [r.strip() for r in str(value or "").split(",") if r.strip()]
        changes[field] = value.strip() if isinstance(value, str) else value
    spec = with_model(project.model_copy(update={"model": blank}), **changes).model
    if spec.source in _PATH_SOURCES and spec.path:
        from llmops_nb.models.sources import local_path

        local_path(spec.path, "model.path")  # exists, as register looks it up (a stat: nothing is read)
    return spec
