"""The serving endpoint: served entities, traffic, AI gateway, tags, and its REST bodies."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from llmops_nb.config.errors import _MISSING, NAME_RE, NAME_RULE, REF_RULE, _check_name, _Model, _safe, _Shown
from llmops_nb.config.io import _dump_yaml, _load_yaml_model
from llmops_nb.config.providers import ExternalModel
from llmops_nb.errors import ConfigError
from llmops_nb.secrets import MASK, looks_like_secret

WorkloadSize = Literal["Small", "Medium", "Large"]
WorkloadType = Literal["CPU", "GPU_SMALL", "GPU_MEDIUM", "GPU_LARGE", "MULTIGPU_MEDIUM"]


_WORKLOAD_DEFAULTS: dict[str, Any] = {
    "workload_size": "Small", "scale_to_zero_enabled": True, "workload_type": "CPU",
}
_REGISTERED_ONLY = ("entity_version", "workload_size", "scale_to_zero_enabled", "workload_type",
                    "environment_vars")


class ServedEntity(_Model):
    """One served entity: a registered model version, or an external model.

    `entity_version` None means "latest registered version", resolved at deploy time
    (see EndpointConfig.with_resolved_versions). `name` defaults as Databricks does.
    """

    name: str | None = None
    entity_name: str | None = Field(default=None, min_length=1)
    entity_version: str | None = None
    workload_size: WorkloadSize | None = None
    scale_to_zero_enabled: bool | None = None
    workload_type: WorkloadType | None = None
    environment_vars: dict[str, str] | None = None
    external_model: ExternalModel | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return _check_name(value)

    @field_validator("entity_version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if value is not None and not (isinstance(value, str) and value.isdigit()):
            raise ConfigError("", value, "a version number (digits), or omit it for the latest")
        return value

    @field_validator("environment_vars")
    @classmethod
    def _env(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key, item in (value or {}).items():
            if looks_like_secret(key, item):
                raise ConfigError(key, MASK, f"looks like a plaintext secret; {REF_RULE}")
        return value

    @model_validator(mode="after")
    def _kind(self) -> ServedEntity:
        if (self.entity_name is None) == (self.external_model is None):
            raise ConfigError("entity_name", self.entity_name,
                              "set exactly one of entity_name (a registered model) or external_model")
        if self.external_model is not None:
            for field in _REGISTERED_ONLY:
                if getattr(self, field) is not None:
                    raise ConfigError(field, _safe(field, getattr(self, field)),
                                      f"external_model entities take no {field} (registered models only)")
        else:
            for field, default in _WORKLOAD_DEFAULTS.items():
                if getattr(self, field) is None:
                    object.__setattr__(self, field, default)  # a default, not marked as set
        if self.name is None:
            default = self.default_name()
            if default is not None:
                if not NAME_RE.match(default):
                    raise ConfigError("name", None, f"the default name {default!r} is invalid; "
                                      f"set a name of {NAME_RULE}")
                object.__setattr__(self, "name", default)
        return self

    def default_name(self) -> str | None:
        """Databricks' default: `<entity_name .->- >-<version>` or the external model's name."""
        if self.external_model is not None:
            return self.external_model.name.replace(".", "-").replace(":", "-")
        if self.entity_name is None or self.entity_version is None:
            return None
        return f"{self.entity_name.replace('.', '-')}-{self.entity_version}"

    @property
    def is_external(self) -> bool:
        return self.external_model is not None


class Route(_Model):
    served_entity_name: str = Field(min_length=1)
    traffic_percentage: int = Field(ge=0, le=100)


class TrafficConfig(_Model):
    routes: list[Route] = Field(min_length=1)


# ---------------------------------------------------------------- AI gateway


class RateLimit(_Model):
    """At most `calls` requests and/or `tokens` tokens per minute, per `key`."""

    renewal_period: Literal["minute"] = "minute"
    calls: int | None = Field(default=None, ge=1)
    tokens: int | None = Field(default=None, ge=1)
    key: Literal["endpoint", "user", "user_group", "service_principal"] = "endpoint"
    principal: str | None = None

    @model_validator(mode="after")
    def _some_limit(self) -> RateLimit:
        if self.calls is None and self.tokens is None:
            raise ConfigError("calls", None, "set calls and/or tokens (integers >= 1)")
        if self.principal is not None and self.key == "endpoint":
            raise ConfigError("principal", self.principal,
                              "only with key user, user_group or service_principal")
        return self


class UsageTrackingConfig(_Model):
    enabled: bool


class InferenceTableConfig(_Model):
    catalog_name: str | None = None
    schema_name: str | None = None
    table_name_prefix: str | None = None
    enabled: bool | None = None

    @model_validator(mode="after")
    def _where(self) -> InferenceTableConfig:
        if self.enabled:
            for field in ("catalog_name", "schema_name"):
                if not getattr(self, field):
                    raise ConfigError(field, getattr(self, field), "required when enabled")
        return self


class FallbackConfig(_Model):
    enabled: bool


class AiGatewayConfig(_Model):
    rate_limits: list[RateLimit] | None = None
    usage_tracking_config: UsageTrackingConfig | None = None
    inference_table_config: InferenceTableConfig | None = None
    guardrails: dict[str, Any] | None = None
    fallback_config: FallbackConfig | None = None

    @field_validator("guardrails")
    @classmethod
    def _guardrails(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for key, item in (value or {}).items():
            if key not in ("input", "output"):
                raise ConfigError(key, _safe(key, item), "unknown field; allowed fields: input, output")
            if not isinstance(item, dict):
                raise ConfigError(key, _safe(key, item), "must be a mapping")
        return value


# ---------------------------------------------------------------- the endpoint


def _coerce_tags(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
                for k, v in value.items()}
    return value


class EndpointConfig(_Model):
    """A serving endpoint, field for field the body of `POST /api/2.0/serving-endpoints`.

    `tags` is a mapping here (the REST form is a list of {key, value}).
    """

    name: str
    served_entities: list[ServedEntity] = Field(min_length=1)
    traffic_config: TrafficConfig | None = None
    ai_gateway: AiGatewayConfig | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    description: str | None = None

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
        seen: set[str] = set()
        for i, entity in enumerate(entities):
            if entity.name in seen:
                raise ConfigError(f"served_entities[{i}].name", entity.name,
                                  "served entity names must be unique")
            if entity.name:
                seen.add(entity.name)
        kinds = {e.is_external for e in entities}
        if len(kinds) > 1:
            i = next(i for i, e in enumerate(entities) if e.is_external != entities[0].is_external)
            raise ConfigError(f"served_entities[{i}]", _Shown(repr(entities[i].name)),
                              "an endpoint cannot mix external models and registered models")
        tasks = [e.external_model.task for e in entities if e.external_model]
        for i, task in enumerate(tasks):
            if task != tasks[0]:
                raise ConfigError(f"served_entities[{i}].external_model.task", task,
                                  f"external models of one endpoint share one task ({tasks[0]!r})")
        self._check_routes()
        return self

    def _check_routes(self) -> None:
        entities = self.served_entities
        if self.traffic_config is None:
            if len(entities) > 1:
                raise ConfigError("traffic_config", None, f"routes are required when there are "
                                  f"{len(entities)} served entities (percentages summing to 100)")
            return
        for i, entity in enumerate(entities):
            if entity.name is None:
                raise ConfigError(f"served_entities[{i}].name", None, "give a name when "
                                  "entity_version is omitted and traffic_config routes are set")
        names = [e.name for e in entities]
        routed: set[str] = set()
        routes = self.traffic_config.routes
        for i, route in enumerate(routes):
            field = f"traffic_config.routes[{i}].served_entity_name"
            if route.served_entity_name not in names:
                raise ConfigError(field, route.served_entity_name,
                                  f"must name a served entity: {', '.join(map(str, names))}")
            if route.served_entity_name in routed:
                raise ConfigError(field, route.served_entity_name, "one route per served entity")
            routed.add(route.served_entity_name)
        missing = [n for n in names if n not in routed]
        if missing:
            raise ConfigError("traffic_config.routes", _Shown(f"(no route for {missing[0]!r})"),
                              "every served entity needs a route (0 is allowed)")
        total = sum(r.traffic_percentage for r in routes)
        if total != 100:
            raise ConfigError("traffic_config.routes", _Shown(f"(percentages summing to {total})"),
                              "traffic percentages must sum to 100")

    # ------------------------------------------------------------ REST bodies

    def routes(self) -> list[dict[str, Any]]:
        """The effective routes: traffic_config's, or 100% to the single entity."""
        if self.traffic_config is not None:
            return [r.model_dump() for r in self.traffic_config.routes]
        return [{"served_entity_name": self.served_entities[0].name, "traffic_percentage": 100}]

    def core_config_body(self) -> dict[str, Any]:
        """`{served_entities, traffic_config}`: the body of PUT .../serving-endpoints/{name}/config."""
        body: dict[str, Any] = {
            "served_entities": [e.model_dump(exclude_none=True) for e in self.served_entities]}
        if self.traffic_config is not None:
            body["traffic_config"] = self.traffic_config.model_dump(exclude_none=True)
        return body

    def ai_gateway_body(self) -> dict[str, Any] | None:
        """The body of PUT .../ai-gateway, or None when there is no AI gateway config."""
        return None if self.ai_gateway is None else self.ai_gateway.model_dump(exclude_none=True)

    def to_databricks_body(self) -> dict[str, Any]:
        """The body of `POST /api/2.0/serving-endpoints` (None values omitted)."""
        body: dict[str, Any] = {"name": self.name, "config": {"name": self.name,
                                                              **self.core_config_body()}}
        if self.ai_gateway is not None:
            body["ai_gateway"] = self.ai_gateway_body()
        if self.tags:
            body["tags"] = [{"key": k, "value": v} for k, v in self.tags.items()]
        if self.description is not None:
            body["description"] = self.description
        return body

    @classmethod
    def from_databricks_body(cls, body: Any) -> EndpointConfig:
        """Parse a REST POST body; raises ConfigError (registered entities need a version)."""
        if not isinstance(body, Mapping):
            raise ConfigError("(body)", _safe("", body), "must be a JSON object")
        data = dict(body)
        config = data.pop("config", _MISSING)
        if not isinstance(config, Mapping):
            raise ConfigError("config", _safe("config", config),
                              "must be a mapping with name, served_entities, traffic_config")
        config = dict(config)
        core_fields = ("served_entities", "traffic_config")
        for key in config:
            if key not in ("name", *core_fields):
                raise ConfigError(f"config.{key}", _safe(str(key), config[key]),
                                  "unknown field; allowed fields: name, " + ", ".join(core_fields))
        if "name" in config and config["name"] != data.get("name"):
            raise ConfigError("config.name", _safe("name", config["name"]),
                              f"must equal the endpoint name {data.get('name')!r}")
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
                raise ConfigError(f"config.served_entities[{i}].entity_version", None,
                                  "required in a REST body: a version number (digits)")
        return parsed

    def with_resolved_versions(self, resolver: Callable[[str], str]) -> EndpointConfig:
        """A copy where every omitted entity_version is `resolver(entity_name)`."""
        data = self.model_dump(exclude_unset=True)
        for raw, entity in zip(data["served_entities"], self.served_entities):
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
    if not isinstance(tags, list):
        return tags
    out: dict[str, Any] = {}
    for i, tag in enumerate(tags):
        if not isinstance(tag, Mapping) or "key" not in tag or set(tag) - {"key", "value"}:
            raise ConfigError(f"tags[{i}]", _safe("tag", tag), "must be a mapping {key, value}")
        out[tag["key"]] = tag.get("value", "")
    return out
