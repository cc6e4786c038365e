"""Served entities (and the legacy served models), traffic routes, the legacy inference table.

Field for field databricks-sdk's `ServedEntityInput`, `ServedModelInput`, `TrafficConfig`,
`Route` and `AutoCaptureConfigInput` (tests/config/test_sdk_schema.py walks the SDK). Nothing is
filled in that the user did not set, except a served entity's `name`, which Databricks derives
the same way (SDK docstring of `ServedEntityInput.name`); `workload_type` and the traffic
config are left to Databricks' defaults (CLI bundle/direct/dresources/resources.yml,
backend_defaults).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from llmops_nb.config.errors import REF_RULE, _Model, _safe
from llmops_nb.config.providers import ExternalModel
from llmops_nb.config.secrets import MASK, looks_like_secret
from llmops_nb.errors import ConfigError

# The sizes Databricks documents; `workload_size` itself is a free string because "additional
# custom workload sizes can also be used when available in the workspace" (SDK docstring).
WorkloadSize = Literal["Small", "Medium", "Large"]
# databricks-sdk serving.ServingModelWorkloadType (= ServedModelInputWorkloadType), value for value.
WorkloadType = Literal[
    "CPU", "CPU_LARGE", "CPU_MEDIUM", "GPU_LARGE", "GPU_MEDIUM", "GPU_SMALL", "GPU_XLARGE", "GPU_XLARGE_8", "MULTIGPU_MEDIUM"
]

# "A served entity name can consist of alphanumeric characters, dashes, and underscores" (SDK
# docstring of ServedEntityInput.name; no length limit is documented).
ENTITY_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
ENTITY_NAME_RULE = "letters, digits, '-' or '_'"
# "Only one of external_model and (entity_name, entity_version, workload_size, workload_type, and
# scale_to_zero_enabled) can be specified" (SDK docstring of ServedEntityInput.external_model).
_REGISTERED_ONLY = ("entity_version", "workload_size", "scale_to_zero_enabled", "workload_type")
_CONCURRENCY = ("min_provisioned_concurrency", "max_provisioned_concurrency")


def _entity_name(value: str | None) -> str | None:
    if value is not None and not ENTITY_NAME_RE.match(value):
        raise ConfigError("", value, f"a served entity name: {ENTITY_NAME_RULE}")
    return value


def _version(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is not None and not (isinstance(value, str) and value.isdigit()):
        raise ConfigError("", value, "a version number (digits), or omit it for the latest")
    return value


def _env(value: dict[str, str] | None) -> dict[str, str] | None:
    for key, item in (value or {}).items():
        if looks_like_secret(key, item):
            raise ConfigError(key, MASK, f"looks like a plaintext secret; {REF_RULE}")
    return value


class _Compute(_Model):
    """Name and compute fields shared by served entities and legacy served models (same SDK fields)."""

    name: str | None = None
    workload_size: str | None = Field(default=None, min_length=1)
    workload_type: WorkloadType | None = None
    scale_to_zero_enabled: bool | None = None
    environment_vars: dict[str, str] | None = None
    instance_profile_arn: str | None = None
    burst_scaling_enabled: bool | None = None
    min_provisioned_concurrency: int | None = None
    max_provisioned_concurrency: int | None = None
    min_provisioned_throughput: int | None = None
    max_provisioned_throughput: int | None = None
    provisioned_model_units: int | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return _entity_name(value)

    @field_validator("environment_vars")
    @classmethod
    def _env(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return _env(value)

    def _check_sizing(self) -> None:
        # "min/max_provisioned_concurrency: Do not use if workload_size is specified" (SDK docstrings).
        for field in _CONCURRENCY:
            if self.workload_size is not None and getattr(self, field) is not None:
                raise ConfigError(field, getattr(self, field), "do not set provisioned concurrency together with workload_size")


class ServedEntity(_Compute):
    """One served entity (`ServedEntityInput`): a registered model version, or an external model.

    `entity_version` None means "latest registered version", resolved at deploy time
    (see EndpointConfig.with_resolved_versions). `name` defaults as Databricks does.
    """

    entity_name: str | None = Field(default=None, min_length=1)
    entity_version: str | None = None
    external_model: ExternalModel | None = None

    @field_validator("entity_version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        return _version(value)

    @model_validator(mode="after")
    def _kind(self) -> ServedEntity:
        if (self.entity_name is None) == (self.external_model is None):
            raise ConfigError(
                "entity_name", self.entity_name, "set exactly one of entity_name (a registered model) or external_model"
            )
        if self.external_model is not None:
            for field in _REGISTERED_ONLY:
                if getattr(self, field) is not None:
                    raise ConfigError(
                        field,
                        _safe(field, getattr(self, field)),
                        f"external_model entities take no {field} (registered models only)",
                    )
        self._check_sizing()
        if self.name is None:
            default = self.default_name()
            if default is not None:
                if not ENTITY_NAME_RE.match(default):
                    raise ConfigError("name", None, f"the default name {default!r} is invalid; set a name of {ENTITY_NAME_RULE}")
                object.__setattr__(self, "name", default)  # a default, not marked as set
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


class ServedModelInput(_Compute):
    """A legacy served model (`config.served_models[]`; deprecated for served_entities)."""

    model_name: str = Field(min_length=1)
    model_version: str
    scale_to_zero_enabled: bool  # required in ServedModelInput (SDK)

    @field_validator("model_version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        if value is None:
            raise ConfigError("", None, "a version number (digits)")
        return _version(value)

    @model_validator(mode="after")
    def _default_name(self) -> ServedModelInput:
        self._check_sizing()
        if self.name is None:
            object.__setattr__(self, "name", f"{self.model_name.replace('.', '-')}-{self.model_version}")
        return self

    is_external: ClassVar[bool] = False


class Route(_Model):
    """A traffic route, by `served_entity_name` or (legacy) `served_model_name`."""

    served_entity_name: str | None = Field(default=None, min_length=1)
    served_model_name: str | None = Field(default=None, min_length=1)
    # "an integer between 0 and 100 inclusive" (SDK docstring of Route.traffic_percentage).
    traffic_percentage: int = Field(ge=0, le=100)

    @model_validator(mode="after")
    def _target(self) -> Route:
        names = {n for n in (self.served_entity_name, self.served_model_name) if n is not None}
        if not names:
            raise ConfigError(
                "served_entity_name",
                None,
                "name the served entity this route sends to (served_entity_name, or the legacy served_model_name)",
            )
        if len(names) > 1:  # Databricks echoes both with the same name (CLI libs/testserver)
            raise ConfigError(
                "served_model_name",
                self.served_model_name,
                f"must equal served_entity_name {self.served_entity_name!r} when both are set",
            )
        return self

    @property
    def target(self) -> str:
        """The served entity (or model) this route sends to."""
        return str(self.served_entity_name or self.served_model_name)


class TrafficConfig(_Model):
    routes: list[Route] = Field(min_length=1)


class AutoCaptureConfigInput(_Model):
    """The legacy inference table (`config.auto_capture_config`); deprecated for the AI gateway's.

    Its catalog, schema and prefix cannot change while it is enabled (SDK docstrings).
    """

    catalog_name: str | None = None
    schema_name: str | None = None
    table_name_prefix: str | None = None
    enabled: bool | None = None
