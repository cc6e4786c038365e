"""The serving endpoint: `EndpointConfig`, its tags and notifications, and its REST bodies.

Field for field the body of databricks-sdk's `ServingEndpointsAPI.create` (the old
`CreateServingEndpoint`): `name`, `config` (flattened here: its `served_entities`,
`served_models`, `traffic_config`, `auto_capture_config` are fields of EndpointConfig),
`ai_gateway`, `tags`, `route_optimized`, `description`, `budget_policy_id`,
`email_notifications`, `rate_limits`, `telemetry_config`. tests/config/test_sdk_schema.py walks
the installed SDK and fails on a field or enum value missing here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from llmops_nb.config.errors import _MISSING, _check_name, _Model, _safe, _Shown
from llmops_nb.config.gateway import AiGatewayConfig, LegacyRateLimit
from llmops_nb.config.io import _dump_yaml, _load_yaml_model
from llmops_nb.config.served_entities import (
    AutoCaptureConfigInput,
    ServedEntity,
    ServedModelInput,
    TrafficConfig,
)
from llmops_nb.errors import ConfigError

CORE_FIELDS = ("served_entities", "served_models", "traffic_config", "auto_capture_config")
# Fields Databricks cannot change on an existing endpoint (CLI bundle/direct/dresources/resources.yml,
# model_serving_endpoints.recreate_on_changes and provided_id_fields).
IMMUTABLE_FIELDS = (
    "name",
    "description",
    "route_optimized",
    "auto_capture_config.catalog_name",
    "auto_capture_config.schema_name",
    "auto_capture_config.table_name_prefix",
)


class EndpointTag(_Model):
    """A tag in its REST form; EndpointConfig keeps tags as a `{key: value}` mapping."""

    key: str = Field(min_length=1)
    value: str | None = None


class EmailNotifications(_Model):
    """Addresses mailed when an endpoint update fails or succeeds."""

    on_update_failure: list[str] | None = None
    on_update_success: list[str] | None = None


# serving.TelemetryFeature, value for value.
TelemetryFeature = Literal[
    "TELEMETRY_FEATURE_INFERENCE_TABLE", "TELEMETRY_FEATURE_LOGS", "TELEMETRY_FEATURE_METRICS", "TELEMETRY_FEATURE_TRACES"
]


class TelemetryInferenceTableConfig(_Model):
    name: str | None = None
    # "in the range [0.0, 1.0]" (SDK docstring of TelemetryInferenceTableConfig.sampling_fraction).
    sampling_fraction: float | None = Field(default=None, ge=0.0, le=1.0)


class UnityCatalogTableNames(_Model):
    annotations_table: str | None = None
    logs_table: str | None = None
    metrics_table: str | None = None
    traces_table: str | None = None


class TelemetryConfig(_Model):
    """Endpoint telemetry (logs, traces, metrics) persisted to Unity Catalog tables."""

    enabled_telemetry_features: list[TelemetryFeature] | None = None
    inference_table_config: TelemetryInferenceTableConfig | None = None
    table_names: UnityCatalogTableNames | None = None
    telemetry_profile_id: str | None = None


def _coerce_tags(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for k, v in value.items()}
    return value


class EndpointConfig(_Model):
    """A serving endpoint, field for field the body of `POST /api/2.0/serving-endpoints`.

    `config`'s fields sit at the top level here; `tags` is a mapping (the REST form is a list of
    {key, value}). Only what is set is sent: Databricks fills `workload_type`, entity names and
    the single-entity traffic config itself (CLI resources.yml, backend_defaults).

    `description` and `route_optimized` are immutable after create (CLI
    bundle/direct/dresources/resources.yml, recreate_on_changes: "description is immutable,
    can't be updated via API"); see IMMUTABLE_FIELDS. An endpoint here serves something:
    served_entities (or the deprecated served_models) is required, although the API also
    accepts an endpoint without `config`.
    """

    immutable_fields: ClassVar[tuple[str, ...]] = IMMUTABLE_FIELDS

    name: str
    served_entities: list[ServedEntity] = Field(default_factory=list)
    served_models: list[ServedModelInput] | None = None
    traffic_config: TrafficConfig | None = None
    auto_capture_config: AutoCaptureConfigInput | None = None
    ai_gateway: AiGatewayConfig | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    description: str | None = None
    route_optimized: bool | None = None
    budget_policy_id: str | None = None
    email_notifications: EmailNotifications | None = None
    rate_limits: list[LegacyRateLimit] | None = None  # deprecated by Databricks: use ai_gateway
    telemetry_config: TelemetryConfig | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value, "an endpoint name")  # type: ignore[return-value]

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        return _coerce_tags(value)

    @model_validator(mode="after")
    def _consistent(self) -> EndpointConfig:
        entities = self.served_entities
        if not entities and not self.served_models:
            given = _Shown("[]") if "served_entities" in self.model_fields_set else _MISSING
            raise ConfigError(
                "served_entities",
                given,
                "this field is required: a list of at least 1 served entity (or the deprecated served_models)",
            )
        seen: set[str] = set()
        for field, items in (("served_entities", entities), ("served_models", self.served_models or [])):
            for i, entity in enumerate(items):
                if entity.name in seen:
                    raise ConfigError(f"{field}[{i}].name", entity.name, "served entity names must be unique")
                if entity.name:
                    seen.add(entity.name)
        # SDK docstring of ServedEntityInput.external_model: an endpoint with external models cannot
        # be updated to one without (nor the reverse), and "the task type of all external models
        # within an endpoint must be the same".
        kinds = {e.is_external for e in entities}
        if len(kinds) > 1:
            i = next(i for i, e in enumerate(entities) if e.is_external != entities[0].is_external)
            raise ConfigError(
                f"served_entities[{i}]",
                _Shown(repr(entities[i].name)),
                "an endpoint cannot mix external models and registered models",
            )
        tasks = [e.external_model.task for e in entities if e.external_model]
        for i, task in enumerate(tasks):
            if task != tasks[0]:
                raise ConfigError(
                    f"served_entities[{i}].external_model.task",
                    task,
                    f"external models of one endpoint share one task ({tasks[0]!r})",
                )
        self._check_routes()
        return self

    @property
    def all_served(self) -> list[ServedEntity | ServedModelInput]:
        """served_entities, then the legacy served_models."""
        return [*self.served_entities, *(self.served_models or [])]

    def _check_routes(self) -> None:
        entities = self.all_served
        if self.traffic_config is None:
            # "The backend requires an explicit traffic_config when there is more than one served
            # entity" (CLI libs/testserver/serving_endpoints.go, defaultTrafficConfig).
            if len(entities) > 1:
                raise ConfigError(
                    "traffic_config",
                    None,
                    f"routes are required when there are {len(entities)} served entities (percentages summing to 100)",
                )
            return
        for i, entity in enumerate(self.served_entities):
            if entity.name is None:
                raise ConfigError(
                    f"served_entities[{i}].name",
                    None,
                    "give a name when entity_version is omitted and traffic_config routes are set",
                )
        names = [e.name for e in entities]
        routed: set[str] = set()
        routes = self.traffic_config.routes
        for i, route in enumerate(routes):
            key = "served_entity_name" if route.served_entity_name is not None else "served_model_name"
            field = f"traffic_config.routes[{i}].{key}"
            if route.target not in names:
                raise ConfigError(field, route.target, f"must name a served entity: {', '.join(map(str, names))}")
            if route.target in routed:
                raise ConfigError(field, route.target, "one route per served entity")
            routed.add(route.target)
        # A route for every entity: our rule from before issue 14, not found in the SDK or CLI
        # sources (a route of 0 is allowed).
        missing = [n for n in names if n not in routed]
        if missing:
            raise ConfigError(
                "traffic_config.routes",
                _Shown(f"(no route for {missing[0]!r})"),
                "every served entity needs a route (0 is allowed)",
            )
        # Databricks: the traffic percentages of an endpoint's routes add up to 100 (docs
        # "Serve multiple models to a model serving endpoint").
        total = sum(r.traffic_percentage for r in routes)
        if total != 100:
            raise ConfigError(
                "traffic_config.routes", _Shown(f"(percentages summing to {total})"), "traffic percentages must sum to 100"
            )

    # ------------------------------------------------------------ REST bodies

    def routes(self) -> list[dict[str, Any]]:
        """The effective routes: traffic_config's, or 100% to the single entity.

        Each has `served_entity_name` (the target, also for a route given by served_model_name,
        which is kept) and `traffic_percentage`.
        """
        if self.traffic_config is not None:
            return [{**r.model_dump(exclude_none=True), "served_entity_name": r.target} for r in self.traffic_config.routes]
        return [{"served_entity_name": self.all_served[0].name, "traffic_percentage": 100}]

    def core_config_body(self) -> dict[str, Any]:
        """The body of PUT .../serving-endpoints/{name}/config: served_entities (or served_models),
        traffic_config and auto_capture_config, as set."""
        body: dict[str, Any] = {}
        if self.served_entities or not self.served_models:
            body["served_entities"] = [e.model_dump(exclude_none=True) for e in self.served_entities]
        if self.served_models:
            body["served_models"] = [m.model_dump(exclude_none=True) for m in self.served_models]
        for field in ("traffic_config", "auto_capture_config"):
            value = getattr(self, field)
            if value is not None:
                body[field] = value.model_dump(exclude_none=True)
        return body

    def ai_gateway_body(self) -> dict[str, Any] | None:
        """The body of PUT .../ai-gateway, or None when there is no AI gateway config."""
        return None if self.ai_gateway is None else self.ai_gateway.model_dump(exclude_none=True)

    def to_databricks_body(self) -> dict[str, Any]:
        """The body of `POST /api/2.0/serving-endpoints` (None values omitted)."""
        body: dict[str, Any] = {"name": self.name, "config": {"name": self.name, **self.core_config_body()}}
        if self.ai_gateway is not None:
            body["ai_gateway"] = self.ai_gateway_body()
        if self.tags:
            body["tags"] = [{"key": k, "value": v} for k, v in self.tags.items()]
        for field in ("description", "route_optimized", "budget_policy_id"):
            if getattr(self, field) is not None:
                body[field] = getattr(self, field)
        for field in ("email_notifications", "telemetry_config"):
            if getattr(self, field) is not None:
                body[field] = getattr(self, field).model_dump(exclude_none=True)
        if self.rate_limits is not None:
            body["rate_limits"] = [r.model_dump(exclude_none=True) for r in self.rate_limits]
        return body

    @classmethod
    def from_databricks_body(cls, body: Any) -> EndpointConfig:
        """Parse a REST POST body; raises ConfigError (registered entities need a version)."""
        if not isinstance(body, Mapping):
            raise ConfigError("(body)", _safe("", body), "must be a JSON object")
        data = dict(body)
        config = data.pop("config", _MISSING)
        if not isinstance(config, Mapping):
            raise ConfigError("config", _safe("config", config), "must be a mapping with name, " + ", ".join(CORE_FIELDS))
        config = dict(config)
        core_fields = CORE_FIELDS
        for key in data:
            if key in core_fields:  # these belong under `config` in a REST body
                raise ConfigError(str(key), _safe(str(key), data[key]), "unknown field at the top level; it belongs under config")
        for key in config:
            if key not in ("name", *core_fields):
                raise ConfigError(
                    f"config.{key}",
                    _safe(str(key), config[key]),
                    "unknown field; allowed fields: name, " + ", ".join(core_fields),
                )
        if "name" in config and config["name"] != data.get("name"):
            raise ConfigError("config.name", _safe("name", config["name"]), f"must equal the endpoint name {data.get('name')!r}")
        if "tags" in data:
            data["tags"] = _tags_from_list(data["tags"])
        data.update({k: config[k] for k in core_fields if k in config})
        try:
            parsed = cls.model_validate(data)
        except ConfigError as exc:
            prefix = "config." if re.split(r"[.\[]", exc.field)[0] in core_fields else ""
            raise ConfigError(prefix + exc.field, exc.value, exc.allowed) from None
        for i, entity in enumerate(parsed.served_entities):
            if entity.entity_name is not None and entity.entity_version is None:
                raise ConfigError(
                    f"config.served_entities[{i}].entity_version", None, "required in a REST body: a version number (digits)"
                )
        return parsed

    def with_resolved_versions(self, resolver: Callable[[str], str]) -> EndpointConfig:
        """A copy where every omitted entity_version is `resolver(entity_name)`."""
        data = self.model_dump(exclude_unset=True)
        for raw, entity in zip(data.get("served_entities", []), self.served_entities):
            if entity.entity_name is not None and entity.entity_version is None:
                raw["entity_version"] = str(resolver(entity.entity_name))
        return type(self).model_validate(data)

    @property
    def has_unresolved_versions(self) -> bool:
        return any(e.entity_name and e.entity_version is None for e in self.served_entities)

    def config_hash(self) -> str:
        """A short sha256 of the canonical REST body: equal configs, equal hashes."""
        canonical = json.dumps(self.to_databricks_body(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @classmethod
    def from_yaml(cls, path: str | Path) -> EndpointConfig:
        return _load_yaml_model(cls, Path(path))

    def to_yaml(self, path: str | Path) -> None:
        _dump_yaml(self, Path(path))


def _tags_from_list(tags: Any) -> Any:
    """The REST list of EndpointTag as our `{key: value}` mapping (a missing value is '')."""
    if not isinstance(tags, list):
        return tags
    out: dict[str, Any] = {}
    for i, tag in enumerate(tags):
        if not isinstance(tag, Mapping):
            raise ConfigError(f"tags[{i}]", _safe("tag", tag), "must be a mapping {key, value}")
        try:
            parsed = EndpointTag.model_validate(tag)
        except ConfigError as exc:
            raise ConfigError(f"tags[{i}].{exc.field}", exc.value, exc.allowed) from None
        out[parsed.key] = "" if parsed.value is None else parsed.value
    return out
