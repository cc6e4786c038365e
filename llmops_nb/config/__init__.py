"""Typed, validated configs: the serving endpoint (1:1 with the Databricks REST body) and the project.

Every validation failure is a `ConfigError` with one line: field path, value, what is allowed.
Only pydantic and yaml are imported here. Modules by concern: `errors` (one-line errors and the
base model), `providers` (external-model provider configs), `endpoint` (EndpointConfig and its
parts, REST bodies), `project` (ModelSpec, EvaluationConfig, ProjectConfig), `io` (YAML).
"""

from llmops_nb.config.endpoint import (
    AiGatewayConfig,
    EndpointConfig,
    FallbackConfig,
    InferenceTableConfig,
    RateLimit,
    Route,
    ServedEntity,
    TrafficConfig,
    UsageTrackingConfig,
    WorkloadSize,
    WorkloadType,
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
    CohereConfig,
    CustomProviderConfig,
    DatabricksModelServingConfig,
    ExternalModel,
    GoogleCloudVertexAiConfig,
    OpenAiConfig,
    Provider,
    Task,
)
from llmops_nb.errors import ConfigError

__all__ = [
    "ALIAS_RE", "ENV_CONFIG", "LOWER_IS_BETTER", "NAME_RE", "NAME_RULE", "PROVIDER_CONFIG_FIELD", "REF_RULE",
    "UC_NAME_RE", "Ai21LabsConfig", "AiGatewayConfig", "AmazonBedrockConfig", "AnthropicConfig", "ApiKeyAuth",
    "BearerTokenAuth", "CohereConfig", "ConfigError", "CustomProviderConfig", "DatabricksModelServingConfig",
    "EndpointConfig", "EvaluationConfig", "ExternalModel", "FallbackConfig", "GoogleCloudVertexAiConfig",
    "InferenceTableConfig", "ModelSpec", "OpenAiConfig", "ProjectConfig", "Provider", "RateLimit", "Route",
    "ServedEntity", "Task", "TrafficConfig", "UsageTrackingConfig", "WorkloadSize", "WorkloadType",
    "default_config_path", "is_upper_bound", "load_project_config",
]
