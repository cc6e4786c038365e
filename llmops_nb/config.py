"""Typed, validated configs: the serving endpoint (1:1 with the Databricks REST body) and the project.

Every validation failure is a `ConfigError` with one line: field path, value, what is allowed.
Only pydantic and yaml are imported here.
"""

from __future__ import annotations

import hashlib
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llmops_nb.errors import ConfigError
from llmops_nb.secrets import MASK, is_secret_ref, looks_like_secret

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
NAME_RULE = "1-63 characters: letters, digits, '-' or '_'"
REF_RULE = "must be a secret reference '{{secrets/<scope>/<key>}}'"
UC_NAME_RE = re.compile(r"^[^.\s]+\.[^.\s]+\.[^.\s]+$")

WorkloadSize = Literal["Small", "Medium", "Large"]
WorkloadType = Literal["CPU", "GPU_SMALL", "GPU_MEDIUM", "GPU_LARGE", "MULTIGPU_MEDIUM"]
Provider = Literal["openai", "anthropic", "cohere", "amazon-bedrock", "google-cloud-vertex-ai",
                   "ai21labs", "databricks-model-serving", "custom"]
Task = Literal["llm/v1/chat", "llm/v1/completions", "llm/v1/embeddings"]

# ---------------------------------------------------------------- error conversion


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
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise _to_config_error(cls, exc) from None


def _check_name(value: str | None, what: str = "name") -> str | None:
    if value is not None and not NAME_RE.match(value):
        raise ConfigError("", value, f"{what}: {NAME_RULE}")
    return value


# ---------------------------------------------------------------- external model providers


class _ProviderConfig(_Model):
    """A provider config: secret fields hold references; `*_plaintext` fields are refused."""

    secret_fields: ClassVar[tuple[str, ...]] = ()
    required_secrets: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _refuse_plaintext(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for key in data:
                if isinstance(key, str) and key.endswith("_plaintext"):
                    ref_field = key[: -len("_plaintext")]
                    raise ConfigError(key, MASK, f"plaintext secrets are refused; store the value "
                                      f"in a secret and set {ref_field}: '{{{{secrets/<scope>/<key>}}}}'")
        return data

    @model_validator(mode="after")
    def _check_refs(self) -> _ProviderConfig:
        for name in self.secret_fields:
            value = getattr(self, name)
            if value is None and name in self.required_secrets:
                raise ConfigError(name, None, f"required; {REF_RULE}")
            if value is not None and not is_secret_ref(value):
                shown = value if "secrets/" in value and not looks_like_secret("", value) else MASK
                raise ConfigError(name, shown, REF_RULE)
        return self


class OpenAiConfig(_ProviderConfig):
    """OpenAI, Azure OpenAI (`openai_api_type: azure`) or Azure AD (`azuread`)."""

    secret_fields: ClassVar = ("openai_api_key", "microsoft_entra_client_secret")
    openai_api_key: str | None = None
    openai_api_base: str | None = None
    openai_api_type: Literal["openai", "azure", "azuread"] | None = None
    openai_api_version: str | None = None
    openai_deployment_name: str | None = None
    openai_organization: str | None = None
    microsoft_entra_client_id: str | None = None
    microsoft_entra_tenant_id: str | None = None
    microsoft_entra_client_secret: str | None = None

    @model_validator(mode="after")
    def _check_type(self) -> OpenAiConfig:
        kind = self.openai_api_type or "openai"
        needed = {"openai": ["openai_api_key"],
                  "azure": ["openai_api_key", "openai_api_base", "openai_api_version",
                            "openai_deployment_name"],
                  "azuread": ["microsoft_entra_client_id", "microsoft_entra_tenant_id",
                              "microsoft_entra_client_secret", "openai_api_base",
                              "openai_api_version", "openai_deployment_name"]}[kind]
        for name in needed:
            if getattr(self, name) is None:
                rule = REF_RULE if name in self.secret_fields else "a non-empty string"
                raise ConfigError(name, None, f"required when openai_api_type is {kind!r}; {rule}")
        return self


class AnthropicConfig(_ProviderConfig):
    secret_fields: ClassVar = ("anthropic_api_key",)
    required_secrets: ClassVar = secret_fields
    anthropic_api_key: str | None = None


class CohereConfig(_ProviderConfig):
    secret_fields: ClassVar = ("cohere_api_key",)
    required_secrets: ClassVar = secret_fields
    cohere_api_key: str | None = None
    cohere_api_base: str | None = None


class Ai21LabsConfig(_ProviderConfig):
    secret_fields: ClassVar = ("ai21labs_api_key",)
    required_secrets: ClassVar = secret_fields
    ai21labs_api_key: str | None = None


class AmazonBedrockConfig(_ProviderConfig):
    secret_fields: ClassVar = ("aws_access_key_id", "aws_secret_access_key")
    required_secrets: ClassVar = secret_fields
    aws_region: str
    bedrock_provider: Literal["anthropic", "cohere", "ai21labs", "amazon"]
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None


class GoogleCloudVertexAiConfig(_ProviderConfig):
    secret_fields: ClassVar = ("private_key",)
    required_secrets: ClassVar = secret_fields
    project_id: str
    region: str
    private_key: str | None = None


class DatabricksModelServingConfig(_ProviderConfig):
    secret_fields: ClassVar = ("databricks_api_token",)
    required_secrets: ClassVar = secret_fields
    databricks_workspace_url: str
    databricks_api_token: str | None = None


class ApiKeyAuth(_ProviderConfig):
    secret_fields: ClassVar = ("value",)
    required_secrets: ClassVar = secret_fields
    key: str
    value: str | None = None


class BearerTokenAuth(_ProviderConfig):
    secret_fields: ClassVar = ("token",)
    required_secrets: ClassVar = secret_fields
    token: str | None = None


class CustomProviderConfig(_Model):
    """Any OpenAI-compatible provider at `custom_provider_url`; one auth method."""

    custom_provider_url: str
    api_key_auth: ApiKeyAuth | None = None
    bearer_token_auth: BearerTokenAuth | None = None

    @model_validator(mode="after")
    def _one_auth(self) -> CustomProviderConfig:
        if (self.api_key_auth is None) == (self.bearer_token_auth is None):
            raise ConfigError("api_key_auth", _Shown("(both or neither)"),
                              "set exactly one of api_key_auth or bearer_token_auth")
        return self


PROVIDER_CONFIG_FIELD: dict[str, str] = {
    "openai": "openai_config", "anthropic": "anthropic_config", "cohere": "cohere_config",
    "amazon-bedrock": "amazon_bedrock_config",
    "google-cloud-vertex-ai": "google_cloud_vertex_ai_config", "ai21labs": "ai21labs_config",
    "databricks-model-serving": "databricks_model_serving_config",
    "custom": "custom_provider_config",
}


class ExternalModel(_Model):
    """A model served by a provider; exactly the provider's own `<provider>_config`."""

    name: str = Field(min_length=1)
    provider: Provider
    task: Task
    openai_config: OpenAiConfig | None = None
    anthropic_config: AnthropicConfig | None = None
    cohere_config: CohereConfig | None = None
    amazon_bedrock_config: AmazonBedrockConfig | None = None
    google_cloud_vertex_ai_config: GoogleCloudVertexAiConfig | None = None
    ai21labs_config: Ai21LabsConfig | None = None
    databricks_model_serving_config: DatabricksModelServingConfig | None = None
    custom_provider_config: CustomProviderConfig | None = None

    @model_validator(mode="after")
    def _provider_matches(self) -> ExternalModel:
        wanted = PROVIDER_CONFIG_FIELD[self.provider]
        given = [f for f in PROVIDER_CONFIG_FIELD.values() if getattr(self, f) is not None]
        if given != [wanted]:
            got = ", ".join(given) or "none"
            raise ConfigError("provider", self.provider,
                              f"provider {self.provider!r} needs exactly {wanted}, got {got}")
        return self


# ---------------------------------------------------------------- served entities, traffic


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


# ---------------------------------------------------------------- the project file


ALIAS_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
LOWER_IS_BETTER = frozenset({"latency", "error_rate", "errors", "failure_rate", "pii_rate",
                             "toxicity", "cost", "refusal_rate"})


def _check_alias(value: str) -> str:
    if not ALIAS_RE.match(value) or re.match(r"^v\d+$", value) or value.lower() == "latest":
        raise ConfigError("", value, "an alias of letters, digits, '-' or '_' "
                          "(not 'latest', not v<number>)")
    return value


def is_upper_bound(metric: str) -> bool:
    """True when a threshold on `metric` is a maximum (lower is better)."""
    base = metric.split("/")[0]
    return base.endswith(("_ms", "_seconds")) or base in LOWER_IS_BETTER \
        or any(base.endswith("_" + name) for name in LOWER_IS_BETTER)


class ModelSpec(_Model):
    """The registered model: its name, the alias a new version gets, and generation defaults."""

    name: str = Field(default="smollm2-135m-instruct", min_length=1)
    alias: str = "challenger"
    source: str = Field(default="smollm2", min_length=1)
    max_tokens: int = Field(default=64, ge=1, le=32768)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)

    @field_validator("alias")
    @classmethod
    def _alias(cls, value: str) -> str:
        return _check_alias(value)


class EvaluationConfig(_Model):
    """How to evaluate and when to promote.

    `thresholds: {metric: value}`: a metric whose name ends in `_ms` or `_seconds`, or is
    (or ends in `_` + ) one of LOWER_IS_BETTER (latency, error_rate, ...), must be <= its
    value; any other metric must be >= its value. A missing metric fails its threshold.
    `margin`: how much the challenger's metrics may trail the champion's and still be
    promoted (a fraction, 0..1). Passing versions get alias `promote_alias`.
    """

    dataset: str = Field(default="bundled", min_length=1)
    max_rows: int | None = Field(default=None, ge=1)
    concurrency: int = Field(default=8, ge=1, le=64)
    thresholds: dict[str, float] = Field(default_factory=dict)
    margin: float = Field(default=0.02, ge=0.0, le=1.0)
    judge_endpoint: str | None = None
    promote_alias: str = "champion"

    @field_validator("promote_alias")
    @classmethod
    def _alias(cls, value: str) -> str:
        return _check_alias(value)

    @field_validator("thresholds")
    @classmethod
    def _metric_names(cls, value: dict[str, float]) -> dict[str, float]:
        for key in value:
            if not re.match(r"^[A-Za-z0-9_./-]+$", key):
                raise ConfigError(key, key, "metric names use letters, digits, '_', '.', '/', '-'")
        return value

    def failed_thresholds(self, metrics: Mapping[str, float]) -> dict[str, str]:
        """{metric: reason} for each threshold the metrics do not meet ({} = all pass)."""
        failed: dict[str, str] = {}
        for metric, limit in self.thresholds.items():
            value = metrics.get(metric)
            upper = is_upper_bound(metric)
            if value is None:
                failed[metric] = "missing"
            elif (value > limit) if upper else (value < limit):
                failed[metric] = f"{value:g} {'>' if upper else '<'} {limit:g}"
        return failed


class ProjectConfig(_Model):
    """A file under configs/: backend, model, endpoint (or a foundation endpoint), evaluation."""

    backend: Literal["local", "databricks"] = "local"
    model: ModelSpec = Field(default_factory=ModelSpec)
    endpoint: EndpointConfig | None = None
    foundation_endpoint: str | None = None
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)

    @field_validator("foundation_endpoint")
    @classmethod
    def _foundation(cls, value: str | None) -> str | None:
        return _check_name(value, "an endpoint name")

    @model_validator(mode="after")
    def _consistent(self) -> ProjectConfig:
        if (self.endpoint is None) == (self.foundation_endpoint is None):
            raise ConfigError("endpoint", _Shown("(both or neither)" if self.endpoint else "(missing)"),
                              "set an endpoint section, or foundation_endpoint to query an "
                              "existing pay-per-token endpoint (not both)")
        if self.backend == "databricks":
            uc_rule = "Unity Catalog needs a 3-level name catalog.schema.model"
            if not UC_NAME_RE.match(self.model.name):
                raise ConfigError("model.name", self.model.name, uc_rule)
            for i, entity in enumerate(self.endpoint.served_entities if self.endpoint else []):
                if entity.entity_name is not None and not UC_NAME_RE.match(entity.entity_name):
                    raise ConfigError(f"endpoint.served_entities[{i}].entity_name",
                                      entity.entity_name, uc_rule)
        return self

    @property
    def endpoint_name(self) -> str:
        """The endpoint the steps query: the configured one or the foundation endpoint."""
        return self.endpoint.name if self.endpoint else str(self.foundation_endpoint)

    def to_yaml(self, path: str | Path) -> None:
        _dump_yaml(self, Path(path))


def load_project_config(path: str | Path) -> ProjectConfig:
    """Read and validate a project config file; any problem is one ConfigError line."""
    return _load_yaml_model(ProjectConfig, Path(path))


ENV_CONFIG = "LLMOPS_CONFIG"


def default_config_path() -> Path | None:
    """The config used when none is given: ``$LLMOPS_CONFIG``, else ``configs/local.yml`` of the
    project folder, else of the package's checkout."""
    import os

    from llmops_nb.paths import project_root

    if os.environ.get(ENV_CONFIG):
        return Path(os.environ[ENV_CONFIG]).expanduser().resolve()
    for root in (project_root(), Path(__file__).resolve().parent.parent):
        candidate = root / "configs" / "local.yml"
        if candidate.is_file():
            return candidate
    return None


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
        raise ConfigError("config file", str(path),
                          f"must hold a mapping of fields, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ConfigError as exc:
        raise ConfigError(exc.field, exc.value, f"{exc.allowed} [{path}]") from None


def _dump_yaml(model: BaseModel, path: Path) -> None:
    """Write what was set (defaults and computed names stay implicit)."""
    import yaml

    data = model.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


_M = typing.TypeVar("_M", bound=BaseModel)
