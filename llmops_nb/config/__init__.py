"""Typed, validated configs: the serving endpoint (1:1 with the Databricks REST body) and the project.

Every validation failure is a `ConfigError` with one line: field path, value, what is allowed.
Only pydantic and yaml are imported here. Modules by concern: `errors` (one-line errors and the
base model), `providers` (external-model provider configs), `endpoint` (EndpointConfig and its
parts, REST bodies), `project` (ModelSpec, EvaluationConfig, ProjectConfig), `io` (YAML).
"""

from llmops_nb.config.endpoint import (
    CORE_FIELDS,
    IMMUTABLE_FIELDS,
    EmailNotifications,
    EndpointConfig,
    EndpointTag,
    TelemetryConfig,
    TelemetryFeature,
    TelemetryInferenceTableConfig,
    UnityCatalogTableNames,
)
from llmops_nb.config.entities import (
    ENTITY_NAME_RE,
    AutoCaptureConfigInput,
    Route,
    ServedEntity,
    ServedModelInput,
    TrafficConfig,
    WorkloadSize,
    WorkloadType,
)
from llmops_nb.config.gateway import (
    AiGatewayConfig,
    AiGatewayGuardrailParameters,
    AiGatewayGuardrailPiiBehavior,
    AiGatewayGuardrails,
    AiGatewayInferenceTableConfig,
    AiGatewayRateLimit,
    AiGatewayUsageTrackingConfig,
    FallbackConfig,
    InferenceTableConfig,
    LegacyRateLimit,
    PiiBehavior,
    RateLimit,
    RateLimitKey,
    UsageTrackingConfig,
)
from llmops_nb.config.errors import NAME_RE, NAME_RULE, REF_RULE
from llmops_nb.config.io import ENV_CONFIG, default_config_path
from llmops_nb.config.project import (
    ALIAS_RE,
    LOWER_IS_BETTER,
    UC_NAME_RE,
    EvaluationConfig,
    ModelSpec,
    ProjectConfig,
    is_upper_bound,
    load_project_config,
)
from llmops_nb.config.providers import (
    PROVIDER_CONFIG_FIELD,
    Ai21LabsConfig,
    AmazonBedrockConfig,
    AnthropicConfig,
    ApiKeyAuth,
    BearerTokenAuth,
    BedrockProvider,
    CohereConfig,
    CustomProviderConfig,
    DatabricksModelServingConfig,
    ExternalModel,
    GoogleCloudVertexAiConfig,
    OpenAiConfig,
    PaLmConfig,
    Provider,
    Task,
)
from llmops_nb.errors import ConfigError

# SDK names for the classes whose historical names differ
ServedEntityInput = ServedEntity
EndpointCoreConfigInput = EndpointConfig

__all__ = [
    "ALIAS_RE", "CORE_FIELDS", "NAME_RE", "NAME_RULE", "REF_RULE", "ENTITY_NAME_RE", "ENV_CONFIG", "IMMUTABLE_FIELDS", "LOWER_IS_BETTER",
    "PROVIDER_CONFIG_FIELD", "UC_NAME_RE", "Ai21LabsConfig", "AiGatewayConfig",
    "AiGatewayGuardrailParameters", "AiGatewayGuardrailPiiBehavior", "AiGatewayGuardrails",
    "AiGatewayInferenceTableConfig", "AiGatewayRateLimit", "AiGatewayUsageTrackingConfig",
    "AmazonBedrockConfig", "AnthropicConfig", "ApiKeyAuth", "AutoCaptureConfigInput", "BearerTokenAuth",
    "BedrockProvider", "CohereConfig", "ConfigError", "CustomProviderConfig", "DatabricksModelServingConfig",
    "EmailNotifications", "EndpointConfig", "EndpointCoreConfigInput", "EndpointTag", "EvaluationConfig",
    "ExternalModel", "FallbackConfig", "GoogleCloudVertexAiConfig", "InferenceTableConfig",
    "LegacyRateLimit", "ModelSpec", "OpenAiConfig", "PaLmConfig", "PiiBehavior", "ProjectConfig", "Provider",
    "RateLimit", "RateLimitKey", "Route", "ServedEntity", "ServedEntityInput", "ServedModelInput", "Task",
    "TelemetryConfig", "TelemetryFeature", "TelemetryInferenceTableConfig", "TrafficConfig",
    "UnityCatalogTableNames", "UsageTrackingConfig", "WorkloadSize", "WorkloadType", "default_config_path",
    "is_upper_bound", "load_project_config",
]
