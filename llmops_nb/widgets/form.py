"""The endpoint form: widgets built from the config schema, validated as the user types.

Every field widget is keyed by its path in the project config (``endpoint.name``,
``endpoint.served_entities[0].entity_version``, ...), so the ``field`` of a ConfigError maps
straight to the widget it concerns; the one-line message is shown next to that widget. The
Deploy button stays disabled until the whole config validates.

The model section (:mod:`llmops_nb.widgets.model_pick`) serves a registered version (the
champion's entity_name / entity_version comboboxes list the registry's models and versions) or
registers one from a file or folder (``model.source`` and its fields; the Register button runs the
register step, the path of the CLI and ``01_register``).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import ipywidgets as w
from pydantic import BaseModel

from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.config.gateway import AiGatewayConfig, RateLimit, UsageTrackingConfig
from llmops_nb.config.project import ModelSpec, ProjectConfig
from llmops_nb.config.providers import PROVIDER_CONFIG_FIELD, BearerTokenAuth, ExternalModel
from llmops_nb.config.served_entities import ServedEntity, WorkloadSize
from llmops_nb.errors import ConfigError, LlmopsError
from llmops_nb.widgets import model_pick
from llmops_nb.widgets.model_pick import PICK_NEW, PICK_REGISTERED
from llmops_nb.widgets.schema import FIELD_WIDTH, LABEL_WIDTH, choices, field_widget, read, unwrap

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

    from llmops_nb.backends import Backend
    from llmops_nb.endpoints.events import DeployEvent

REGISTERED, EXTERNAL, FOUNDATION = "registered model", "external model", "foundation model"
ROLES = ("champion", "challenger")
ENTITY_FIELDS = ("name", "entity_name", "entity_version", "workload_size", "workload_type", "scale_to_zero_enabled")
EXTERNAL_FIELDS = ("name", "provider", "task")
RATE_LIMIT_FIELDS = ("calls", "tokens", "key", "principal")
ERROR_STYLE = "color:#b00020;font-size:90%;margin-left:8px"
_MORE = re.compile(r"( \(\+\d+ more\))+$")
DEPLOY_STEPS = 4  # validated, written, updating, ready


def provider_fields(provider: str) -> list[tuple[str, type, str]]:
    """``(path under external_model, model class, field)`` the form shows for ``provider``.

    From the provider's config class: its required fields, its required secret references
    (else its first one) and its API base; the custom provider authenticates with a bearer token.
    """
    attr = PROVIDER_CONFIG_FIELD[provider]
    cls = unwrap(ExternalModel.model_fields[attr].annotation)[0]
    secrets = getattr(cls, "secret_fields", ())
    required = getattr(cls, "required_secrets", ()) or secrets[:1]
    out = [
        (f"{attr}.{name}", cls, name)
        for name, field in cls.model_fields.items()
        if field.is_required() or name in required or name.endswith("_api_base")
    ]
    if provider == "custom":
        out.append((f"{attr}.bearer_token_auth.token", BearerTokenAuth, "token"))
    return out


def _put(data: dict[str, Any], path: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for ``path`` 'a.b.c' (None values are left out)."""
    *parents, leaf = path.split(".")
    for key in parents:
        data = data.setdefault(key, {})
    if value is not None:
        data[leaf] = value


def _owner(path: str, known: Sequence[str]) -> str | None:
    """The longest known widget path that ``path`` is, or lies under."""
    best = None
    for key in known:
        if path == key or path.startswith((key + ".", key + "[")):
            best = key if best is None or len(key) > len(best) else best
    return best


def _fit_rows(area: w.Textarea) -> None:
    """Size a textarea to its lines (one spare), so none is hidden behind a scroll bar."""
    area.rows = max(2, len(area.value.splitlines()) + 1)


def _tags_text(tags: Mapping[str, str]) -> str:
    return "\n".join(f"{k}={v}" for k, v in tags.items())


def parse_tags(text: str) -> dict[str, str]:
    """``key=value`` lines (blank lines skipped) -> tags; one-line ConfigError otherwise."""
    tags: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError("endpoint.tags", line.strip(), "one key=value per line")
        if key.strip() in tags:
            raise ConfigError("endpoint.tags", key.strip(), "each tag key once")
        tags[key.strip()] = value.strip()
    return tags


class EndpointForm(w.VBox):
    """An ipywidgets form producing a :class:`ProjectConfig` (model/evaluation from ``base``).

    ``client`` is the workspace to deploy to; ``registered_models`` ({name: versions}) and
    ``foundation_models`` feed the pickers (foundation models are listed from ``client`` when
    not given); ``resolver`` gives the latest version of a model when the version is left empty;
    ``backend`` (the workspace's backend) gives the deploy lock its place: the form deploys
    through :func:`llmops_nb.steps.deploy_endpoint`, the path of the CLI and the notebook.
    """

    def __init__(
        self,
        base: ProjectConfig | None = None,
        *,
        client: WorkspaceClient | None = None,
        registered_models: Mapping[str, Sequence[str]] | None = None,
        foundation_models: Sequence[str] | None = None,
        resolver: Callable[[str], str] | None = None,
        output_path: str | Path = "configs/my-endpoint.yml",
        timeout: float = 1200,
        poll_interval: float = 1.0,
        backend: Backend | None = None,
    ) -> None:
        self.base = (
            base
            if base is not None
            else ProjectConfig(endpoint={"name": "my-endpoint", "served_entities": [{"entity_name": ModelSpec().name}]})
        )
        self.client, self.timeout, self.poll_interval, self.backend = client, timeout, poll_interval, backend
        self.registered_models = {k: list(v) for k, v in (registered_models or {}).items()}
        if foundation_models is None and client is not None:
            from llmops_nb.widgets.sources import foundation_endpoints

            foundation_models = foundation_endpoints(client)
        self.foundation_models = list(foundation_models or [])
        self._resolver = resolver
        self.fields: dict[str, w.Widget] = {}
        self._labels: dict[str, w.HTML] = {}
        self._rows: dict[str, w.Box] = {}
        self.errors: dict[str, str] = {}
        self.config: ProjectConfig | None = None
        self.last_deploy: dict[str, Any] | None = None
        super().__init__(children=self._build(str(output_path)), layout=w.Layout(width="100%", max_width="760px"))
        self.add_class("llmops-endpoint-form")
        for widget in self.fields.values():
            widget.observe(self._changed, names="value")
        self._changed()

    # ------------------------------------------------------------------ building

    def _add(self, path: str, widget: w.Widget) -> w.Box:
        self.fields[path] = widget
        self._labels[path] = w.HTML("")
        self._rows[path] = w.HBox([widget, self._labels[path]])
        self._rows[path].add_class("llmops-field")
        widget.add_class("llmops-" + path.replace(".", "-").replace("[", "-").replace("]", ""))
        return self._rows[path]

    def _schema(self, path: str, model: type, name: str, value: Any = None, **kw: Any) -> w.Box:
        return self._add(path, field_widget(model, name, value=value, **kw))

    def _entity_box(self, i: int, entity: ServedEntity | None) -> w.VBox:
        prefix = f"endpoint.served_entities[{i}]"
        ext = entity.external_model if entity is not None else None
        name_set = entity is not None and "name" in entity.model_fields_set
        defaults = ServedEntity(entity_name="x", entity_version="1")
        rows = [w.HTML(f"<b>{ROLES[i]}</b>")]
        for name in ENTITY_FIELDS:
            value = getattr(entity if entity is not None and not ext else defaults, name)
            if name == "name":
                value = entity.name if entity is not None and name_set else None
            if name == "entity_name":
                value = entity.entity_name if entity and not ext else self.base.model.name
                rows.append(self._schema(f"{prefix}.{name}", ServedEntity, name, value, options=sorted(self.registered_models)))
            elif name == "entity_version":
                value = entity.entity_version if entity and not ext else None
                rows.append(self._schema(f"{prefix}.{name}", ServedEntity, name, value, options=[], placeholder="latest"))
            else:
                rows.append(
                    self._schema(
                        f"{prefix}.{name}",
                        ServedEntity,
                        name,
                        value,
                        placeholder="default" if name == "name" else "",
                        options=list(get_args(WorkloadSize)) if name == "workload_size" else None,
                    )
                )
        for name in EXTERNAL_FIELDS:
            label = "model name" if name == "name" else name
            rows.append(
                self._schema(
                    f"{prefix}.external_model.{name}", ExternalModel, name, getattr(ext, name) if ext else None, label=label
                )
            )
        for provider in choices(ExternalModel, "provider"):
            for rel, cls, name in provider_fields(provider):
                value = _dig(ext, rel) if ext is not None and ext.provider == provider else None
                rows.append(
                    self._schema(
                        f"{prefix}.external_model.{rel}",
                        cls,
                        name,
                        value,
                        placeholder="{{secrets/<scope>/<key>}}" if name in getattr(cls, "secret_fields", ("token",)) else "",
                    )
                )
        return w.VBox(rows)

    def _model_rows(self) -> list[w.Widget]:
        """The model section: the pick, the source's fields (``model.<field>``), the Register button."""
        pick = w.ToggleButtons(
            options=[PICK_REGISTERED, PICK_NEW],
            value=model_pick.initial_pick(self.base.model),
            description="model",
            style={"description_width": "80px", "button_width": "220px"},  # "register from a file or folder" uncut
        )
        rows = [self._add("model.pick", pick)]
        rows += [self._add(f"model.{name}", widget) for name, widget in model_pick.model_widgets(self.base.model).items()]
        self.register_button = w.Button(description="Register", icon="upload")
        self.register_button.add_class("llmops-register")
        self.register_button.on_click(lambda _: self.register())
        self.model_note = w.HTML("")
        return [*rows, self.model_note, self.register_button]

    def _build(self, output_path: str) -> list[w.Widget]:
        base, ep = self.base, self.base.endpoint
        entities = list(ep.served_entities) if ep else []
        kind = (
            FOUNDATION
            if base.foundation_endpoint and not ep
            else (EXTERNAL if entities and entities[0].is_external else REGISTERED)
        )
        foundation = sorted(
            {*self.foundation_models, *([base.foundation_endpoint] if kind == FOUNDATION and base.foundation_endpoint else [])}
        )
        foundation = foundation or [""]
        head = [
            self._schema("backend", ProjectConfig, "backend", base.backend),
            self._schema("endpoint.name", EndpointConfig, "name", ep.name if ep else "my-endpoint", label="endpoint name"),
            self._add(
                "kind",
                w.ToggleButtons(
                    options=[REGISTERED, EXTERNAL, FOUNDATION],
                    value=kind,
                    description="serves",
                    style={"description_width": "80px"},
                ),
            ),
            self._add(
                "foundation_endpoint",
                w.Dropdown(
                    options=foundation,
                    value=base.foundation_endpoint if kind == FOUNDATION else foundation[0],
                    description="foundation model",
                    style={"description_width": LABEL_WIDTH},
                    layout=w.Layout(width=FIELD_WIDTH),
                ),
            ),
        ]
        model_rows = self._model_rows()
        self.entity_boxes = [self._entity_box(i, entities[i] if i < len(entities) else None) for i in (0, 1)]
        percent = 100
        if ep and ep.traffic_config and len(entities) > 1:
            percent = next(
                (r.traffic_percentage for r in ep.traffic_config.routes if r.served_entity_name == entities[0].name), 100
            )
        split = [
            self._add(
                "split",
                w.Checkbox(
                    value=len(entities) > 1,
                    indent=False,
                    description="split traffic between a champion and a challenger",
                    layout=w.Layout(width=FIELD_WIDTH),
                ),
            ),
            self._add(
                "endpoint.traffic_config",
                w.IntSlider(
                    value=percent,
                    min=0,
                    max=100,
                    step=5,
                    description="champion %",
                    style={"description_width": LABEL_WIDTH},
                    layout=w.Layout(width=FIELD_WIDTH),
                ),
            ),
        ]
        self.split_label = w.HTML("")
        gateway = ep.ai_gateway if ep else None
        limit = gateway.rate_limits[0] if gateway and gateway.rate_limits else None
        usage = gateway.usage_tracking_config if gateway else None
        extra = [w.HTML("<b>AI gateway</b>")]
        extra += [
            self._schema(
                f"endpoint.ai_gateway.rate_limits[0].{n}",
                RateLimit,
                n,
                getattr(limit, n) if limit else None,
                label=f"rate limit {n}",
                placeholder="per minute" if n in ("calls", "tokens") else "",
            )
            for n in RATE_LIMIT_FIELDS
        ]
        extra.append(
            self._schema(
                "endpoint.ai_gateway.usage_tracking_config.enabled",
                UsageTrackingConfig,
                "enabled",
                usage.enabled if usage else True,
                label="usage tracking",
            )
        )
        tags = w.Textarea(
            value=_tags_text(ep.tags) if ep else "",
            placeholder="key=value, one per line",
            description="tags",
            style={"description_width": LABEL_WIDTH},
            layout=w.Layout(width=FIELD_WIDTH),
        )
        _fit_rows(tags)
        tags.observe(lambda _: _fit_rows(tags), names="value")
        extra.append(self._add("endpoint.tags", tags))
        extra.append(self._schema("endpoint.description", EndpointConfig, "description", ep.description if ep else None))
        extra.append(
            self._add(
                "output_path",
                w.Text(
                    value=output_path,
                    description="YAML file",
                    style={"description_width": LABEL_WIDTH},
                    layout=w.Layout(width=FIELD_WIDTH),
                ),
            )
        )
        self.validate_button = w.Button(description="Validate", icon="check")
        self.save_button = w.Button(description="Save YAML", icon="save")
        self.deploy_button = w.Button(description="Deploy", icon="rocket", button_style="primary")
        self.validate_button.on_click(lambda _: self.validate())
        self.save_button.on_click(lambda _: self.save())
        self.deploy_button.on_click(lambda _: self.deploy())
        self.form_error = w.HTML("")
        self.status = w.HTML("")
        self.progress = w.IntProgress(value=0, min=0, max=DEPLOY_STEPS, description="deploy", layout=w.Layout(width=FIELD_WIDTH))
        self.result = w.HTML("")
        for widget, name in (
            (self.validate_button, "validate"),
            (self.save_button, "save"),
            (self.deploy_button, "deploy"),
            (self.status, "status"),
            (self.result, "result"),
            (self.form_error, "form-error"),
        ):
            widget.add_class(f"llmops-{name}")
        return [
            w.HTML("<h3>Serving endpoint</h3>"),
            *head,
            *model_rows,
            *self.entity_boxes,
            *split,
            self.split_label,
            *extra,
            self.form_error,
            w.HBox([self.validate_button, self.save_button, self.deploy_button]),
            self.status,
            self.progress,
            self.result,
        ]

    # ------------------------------------------------------------------ reading

    @property
    def kind(self) -> str:
        return self.fields["kind"].value

    @property
    def split(self) -> bool:
        return self.kind != FOUNDATION and self.fields["split"].value

    @property
    def registers(self) -> bool:
        """True when the form registers its model from a file or folder (else it serves a registered one)."""
        return self.kind == REGISTERED and self.fields["model.pick"].value == PICK_NEW

    def _model_spec(self) -> ModelSpec:
        """The model section: the base's, or the one the shown source fields build (ConfigError if wrong)."""
        if not self.registers:
            return self.base.model
        values = {name: self.fields[f"model.{name}"].value for name in model_pick.MODEL_FIELDS}
        return model_pick.new_model(self.base, values)

    def _entity(self, i: int) -> dict[str, Any]:
        prefix = f"endpoint.served_entities[{i}]"
        data: dict[str, Any] = {}
        f = self.fields
        _put(data, "name", read(f[f"{prefix}.name"]))
        if self.kind == REGISTERED:
            for name in ENTITY_FIELDS[1:]:
                _put(data, name, read(f[f"{prefix}.{name}"], keep_empty=name == "entity_name"))
            return data
        ext: dict[str, Any] = {name: read(f[f"{prefix}.external_model.{name}"], keep_empty=True) for name in EXTERNAL_FIELDS}
        provider = ext["provider"]
        ext[PROVIDER_CONFIG_FIELD[provider]] = {}
        for rel, _, _ in provider_fields(provider):
            _put(ext, rel, read(f[f"{prefix}.external_model.{rel}"]))
        data["external_model"] = ext
        return data

    def _route_name(self, i: int, entity: dict[str, Any]) -> str:
        try:
            name = ServedEntity.model_validate(entity).name
        except ConfigError:
            name = None
        return name or f"served-entity-{i}"  # unnamed: the config says which name is missing

    def _gateway(self) -> dict[str, Any]:
        base = self.base.endpoint.ai_gateway if self.base.endpoint else None
        data = base.model_dump(exclude_unset=True, exclude_none=True) if base else {}
        data.pop("rate_limits", None)
        prefix = "endpoint.ai_gateway.rate_limits[0]"
        limit = {n: read(self.fields[f"{prefix}.{n}"]) for n in RATE_LIMIT_FIELDS}
        if limit["calls"] is not None or limit["tokens"] is not None or limit["principal"] is not None:
            data["rate_limits"] = [{"renewal_period": "minute", **{k: v for k, v in limit.items() if v is not None}}]
        data["usage_tracking_config"] = {"enabled": self.fields["endpoint.ai_gateway.usage_tracking_config.enabled"].value}
        return data

    def data(self) -> dict[str, Any]:
        """The project config the form describes, as plain data (tags text parsed)."""
        base = self.base
        model = self._model_spec()
        data: dict[str, Any] = {
            "backend": self.fields["backend"].value,
            "model": model.model_dump(exclude_unset=True),
            "evaluation": base.evaluation.model_dump(exclude_unset=True),
        }
        if self.kind == FOUNDATION:
            data["foundation_endpoint"] = self.fields["foundation_endpoint"].value or ""
            return data
        entities = [self._entity(i) for i in ((0, 1) if self.split else (0,))]
        if self.registers:  # the champion serves the model the form registers (register publishes its version)
            entities[0]["entity_name"] = model.name
            entities[0].pop("entity_version", None)
            _put(entities[0], "entity_version", model.version)
        endpoint: dict[str, Any] = {
            "name": read(self.fields["endpoint.name"], keep_empty=True),
            "served_entities": entities,
            "tags": parse_tags(self.fields["endpoint.tags"].value),
        }
        if self.split:
            champion = self.fields["endpoint.traffic_config"].value
            endpoint["traffic_config"] = {
                "routes": [
                    {"served_entity_name": self._route_name(i, e), "traffic_percentage": p}
                    for i, (e, p) in enumerate(zip(entities, (champion, 100 - champion)))
                ]
            }
        endpoint["ai_gateway"] = self._gateway()
        _put(endpoint, "description", read(self.fields["endpoint.description"]))
        data["endpoint"] = endpoint
        return data

    # ------------------------------------------------------------------ validation

    def _errors(self) -> tuple[ProjectConfig | None, dict[str, ConfigError]]:
        found: list[ConfigError] = []
        try:
            data = self.data()
        except ConfigError as exc:  # the tags text, or the model section
            return None, {self._error_key(exc.field): exc}
        config = None
        try:
            config = ProjectConfig.model_validate(data)
        except ConfigError as exc:
            found.append(exc)
        # The parts on their own too, so several fields can show their error at once.
        endpoint = data.get("endpoint") or {}
        parts: list[tuple[str, type[BaseModel], Any]] = [
            (f"endpoint.served_entities[{i}]", ServedEntity, e) for i, e in enumerate(endpoint.get("served_entities", []))
        ]
        for i, entity in enumerate(endpoint.get("served_entities", [])):
            ext = entity.get("external_model") or {}
            attr = PROVIDER_CONFIG_FIELD.get(str(ext.get("provider")), "")
            if attr:
                cls = unwrap(ExternalModel.model_fields[attr].annotation)[0]
                parts.append((f"endpoint.served_entities[{i}].external_model.{attr}", cls, ext[attr]))
        if endpoint:
            parts.append(("endpoint.ai_gateway", AiGatewayConfig, endpoint["ai_gateway"]))
        for prefix, cls, part in parts:
            try:
                cls.model_validate(part)
            except ConfigError as exc:
                found.append(ConfigError(f"{prefix}.{exc.field}", exc.value, _MORE.sub("", exc.allowed)))
        errors: dict[str, ConfigError] = {}
        found = [ConfigError(e.field, e.value, _MORE.sub("", e.allowed)) for e in found]
        for problem in found:
            errors.setdefault(self._error_key(problem.field), problem)
        return config, errors

    def _error_key(self, field: str) -> str:
        """The widget that shows an error on ``field``: its own, or the form's line when that widget is
        not shown (a ``model.`` field while the form serves a registered version)."""
        key = _owner(field, list(self.fields)) or "form"
        if key.startswith("model.") and not self.registers:
            return "form"
        return key

    def _changed(self, change: Any = None) -> None:
        self._show_relevant()
        config, errors = self._errors()
        self.config = config if not errors else None
        self.errors = {k: str(v) for k, v in errors.items()}
        for path, label in self._labels.items():
            message = self.errors.get(path)
            label.value = f"<span style='{ERROR_STYLE}'>{html.escape(message)}</span>" if message else ""
        form = self.errors.get("form")
        self.form_error.value = f"<span style='{ERROR_STYLE}'>{html.escape(form)}</span>" if form else ""
        self.deploy_button.disabled = self.config is None
        self.save_button.disabled = self.config is None

    def _show_relevant(self) -> None:
        kind, split = self.kind, self.split
        provider = {i: self.fields[f"endpoint.served_entities[{i}].external_model.provider"].value for i in (0, 1)}
        for path, row in self._rows.items():
            visible = True
            if path.startswith("endpoint.served_entities["):
                i = int(path[len("endpoint.served_entities[")])
                rel = path.split("].", 1)[1]
                if rel.startswith("external_model."):
                    visible = kind == EXTERNAL and (
                        rel.count(".") == 1 or any(rel == f"external_model.{r}" for r, _, _ in provider_fields(provider[i]))
                    )
                else:
                    visible = rel == "name" or kind == REGISTERED
                    if i == 0 and rel in ("entity_name", "entity_version") and self.registers:
                        visible = False  # the model section names what the champion serves
            elif path.startswith("model."):
                field = path.removeprefix("model.")
                visible = kind == REGISTERED and (
                    field == "pick" or (self.registers and field in model_pick.shown(self.fields["model.source"].value))
                )
            elif path.startswith("endpoint."):
                visible = kind != FOUNDATION and (path != "endpoint.traffic_config" or split)
            elif path == "split":
                visible = kind != FOUNDATION
            elif path == "foundation_endpoint":
                visible = kind == FOUNDATION
            row.layout.display = None if visible else "none"
        self.entity_boxes[0].layout.display = "none" if kind == FOUNDATION else None
        self.register_button.layout.display = None if self.registers else "none"
        uc = self.fields["model.source"].value == "uc"
        self.model_note.value = (
            ""
            if not self.registers
            else "the champion serves this Unity Catalog version (provisioned throughput, Databricks only)"
            if uc
            else "the champion serves the version the Register button (or `llmops-nb run` on the saved YAML) creates"
        )
        self.entity_boxes[1].layout.display = None if split else "none"
        share = self.fields["endpoint.traffic_config"].value
        self.split_label.value = f"champion {share}% / challenger {100 - share}%" if split else ""
        for i in (0, 1):
            versions = self.registered_models.get(self.fields[f"endpoint.served_entities[{i}].entity_name"].value.strip(), [])
            version_widget = self.fields[f"endpoint.served_entities[{i}].entity_version"]
            if list(version_widget.options) != versions:
                version_widget.options = versions

    # ------------------------------------------------------------------ actions

    def set(self, **values: Any) -> EndpointForm:
        """Set fields by path (``set(**{"endpoint.name": "x"})``), as a user would."""
        for path, value in values.items():
            self.fields[path].value = value
        return self

    def validate(self) -> ProjectConfig | None:
        """Validate now; show the outcome; return the config (None while invalid)."""
        self._changed()
        if self.config is None:
            self.status.value = f"<span style='{ERROR_STYLE}'>{len(self.errors)} field(s) to fix</span>"
        else:
            target = self.config.endpoint_name
            self.status.value = f"<span style='color:#1b5e20'>valid: endpoint {html.escape(target)}</span>"
        return self.config

    def save(self, path: str | Path | None = None) -> Path | None:
        """Write the project config YAML (what 02_deploy and `llmops-nb run --config` read)."""
        config = self.validate()
        if config is None:
            return None
        target = Path(path or self.fields["output_path"].value).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        config.to_yaml(target)
        self.status.value = f"saved {html.escape(str(target))}"
        return target

    def _resolve(self, name: str) -> str:
        if self._resolver is not None:
            return self._resolver(name)
        versions = self.registered_models.get(name)
        if not versions:
            raise ConfigError("entity_version", None, f"no registered version of {name!r} is known; pick a version")
        return str(max(int(v) for v in versions))

    def _on_progress(self, event: DeployEvent) -> None:
        """The deploy's progress callback: the bar and the status line follow its state."""
        if event.phase == "written":
            self.progress.value = max(self.progress.value, 2)
        elif event.phase == "polled":
            self.progress.value = max(self.progress.value, 3 if event.config_update == "IN_PROGRESS" else 2)
            self.status.value = html.escape(f"{event.name}: {event.config_update}, {event.ready}")

    def register(self) -> dict[str, Any] | None:
        """Register the model section's source (the register step); then serve that version.

        Afterwards the form's model section is the registered one and the champion is pinned to the
        new version ("a registered version"). A bad source is one line in the form; nothing is created.
        """
        from mlflow.exceptions import MlflowException

        from llmops_nb.steps.register import register

        config = self.validate()
        if config is None:
            return None
        if not self.registers:
            self._fail(f"pick '{PICK_NEW}' to register a model")
            return None
        if self.backend is None:
            self._fail("no backend: cannot register")
            return None
        try:
            out = register(config, self.backend)
        except (LlmopsError, OSError, MlflowException) as exc:  # shown in the form, not raised into the kernel
            self._fail((str(exc).splitlines() or [type(exc).__name__])[0])
            return None
        name, version = out["model_name"], out["model_version"]
        versions = self.registered_models.setdefault(name, [])
        if version not in versions:
            versions.insert(0, version)
        self.base = self.base.model_copy(update={"model": config.model})
        self.set(**{"model.pick": PICK_REGISTERED, "endpoint.served_entities[0].entity_name": name})
        self.set(**{"endpoint.served_entities[0].entity_version": version})
        self.validate()
        self.status.value = html.escape(f"registered {name} version {version}; the champion serves it")
        return out

    def _fail(self, message: str) -> None:
        self.status.value = f"<span style='{ERROR_STYLE}'>{html.escape(message)}</span>"

    def _resolved(self, config: ProjectConfig) -> EndpointConfig:
        """The endpoint to deploy, every version resolved. A model still to register is refused; a
        ``uc`` model gets its provisioned throughput (as the deploy step does:
        :mod:`llmops_nb.endpoints.provisioned`), on Databricks only."""
        source = config.model.source
        if self.registers and source != "uc":
            raise ConfigError(
                "model.source", source, "register the model first: the Register button (or save the YAML and run it)"
            )
        assert config.endpoint is not None  # deploy() handles a foundation model
        cfg = config.endpoint.with_resolved_versions(self._resolve)
        if source != "uc":
            return cfg
        from llmops_nb.endpoints.provisioned import with_throughput
        from llmops_nb.models.sources import prepare

        prepare(config.model, databricks=self.backend is None or self.backend.kind == "databricks")  # the local refusal
        assert self.client is not None  # deploy() checked it
        return with_throughput(cfg, config.model.name, self.client)

    def deploy(self) -> dict[str, Any] | None:
        """Create or update the endpoint on ``client``, wait for READY; show state and URL."""
        from llmops_nb.endpoints.ops import endpoint_url, get_endpoint, state_of
        from llmops_nb.steps.deploy import deploy_endpoint

        config = self.validate()
        if config is None:
            return None
        if self.client is None:
            self.status.value = f"<span style='{ERROR_STYLE}'>no workspace client: cannot deploy</span>"
            return None
        self.progress.bar_style, self.progress.value = "info", 1
        messages: list[str] = []  # warning: / note: lines from the deploy
        try:
            if config.endpoint is None:  # a foundation model: nothing to create, check it is there
                endpoint = get_endpoint(self.client, config.endpoint_name)
                if endpoint is None:
                    raise ConfigError("foundation_endpoint", config.endpoint_name, "an endpoint of this workspace")
                action = "exists"
                (ready, update), url = state_of(endpoint), endpoint_url(self.client, config.endpoint_name)
            else:
                cfg = self._resolved(config)
                deployed = deploy_endpoint(
                    self.client,
                    cfg,
                    backend=self.backend,
                    timeout=self.timeout,
                    poll_interval=self.poll_interval,
                    on_progress=self._on_progress,
                )
                action, messages = deployed.action, deployed.messages()
                ready, update, url = deployed.ready, deployed.config_update, deployed.endpoint_url
        except Exception as exc:  # shown in the form, not raised into the kernel
            from databricks.sdk.errors import DatabricksError

            if not isinstance(exc, (LlmopsError, DatabricksError, OSError, TimeoutError)):
                raise
            self.progress.bar_style = "danger"
            self.status.value = f"<span style='{ERROR_STYLE}'>{html.escape(str(exc).splitlines()[0])}</span>"
            return None
        self.last_deploy = {
            "name": config.endpoint_name,
            "action": action,
            "ready": ready,
            "config_update": update,
            "endpoint_url": url,
            "messages": messages,
        }
        self.progress.value, self.progress.bar_style = DEPLOY_STEPS, "success"
        self.status.value = html.escape(f"{config.endpoint_name}: {action}, {update}, {ready}")
        self.result.value = f"<b>{html.escape(ready)}</b> &nbsp; <code>{html.escape(url)}</code>" + "".join(
            f"<div class='llmops-message'>{html.escape(m)}</div>" for m in messages
        )
        return self.last_deploy


def _dig(model: Any, path: str) -> Any:
    for part in path.split("."):
        model = getattr(model, part, None) if model is not None else None
    return model


def endpoint_form(config_path: str = "", backend: str = "", *, output_path: str = "configs/my-endpoint.yml") -> EndpointForm:
    """The form for a notebook: base config, workspace client and registry of the backend."""
    from llmops_nb.backends import load_project
    from llmops_nb.models import registry
    from llmops_nb.widgets.sources import registered_models

    project, be = load_project(config_path, backend)
    form = EndpointForm(
        project,
        client=be.workspace_client(),
        registered_models=registered_models(be.tracking_uri, be.registry_uri),
        resolver=lambda name: registry.latest_version(name, tracking_uri=be.tracking_uri, registry_uri=be.registry_uri),
        output_path=output_path,
        backend=be,
    )
    form.fields["backend"].value = be.kind
    return form
