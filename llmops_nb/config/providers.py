"""External-model provider configs: one model per `<provider>_config` of the serving API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal, get_args

from pydantic import Field, field_validator, model_validator

from llmops_nb.config.errors import REF_RULE, _Model, _Shown
from llmops_nb.config.secrets import MASK, is_secret_ref, looks_like_secret
from llmops_nb.errors import ConfigError

# databricks-sdk serving.ExternalModelProvider, value for value (tests/config/test_sdk_schema.py checks it).
Provider = Literal[
    "openai",
    "anthropic",
    "cohere",
    "amazon-bedrock",
    "google-cloud-vertex-ai",
    "ai21labs",
    "databricks-model-serving",
    "custom",
    "palm",
]
# The SDK types `task` as a free string; these are the tasks Databricks documents for external
# models (docs.databricks.com/aws/en/generative-ai/external-models: "llm/v1/completions",
# "llm/v1/chat", "llm/v1/embeddings").
Task = Literal["llm/v1/chat", "llm/v1/completions", "llm/v1/embeddings"]
# serving.AmazonBedrockConfigBedrockProvider; the SDK says "case insensitive" (Anthropic, Cohere, ...).
BedrockProvider = Literal["anthropic", "cohere", "ai21labs", "amazon"]


class _ProviderConfig(_Model):
    """A provider config: secret fields hold references; `*_plaintext` fields are refused."""

    secret_fields: ClassVar[tuple[str, ...]] = ()
    required_secrets: ClassVar[tuple[str, ...]] = ()
    secret_alternatives: ClassVar[tuple[str, ...]] = ()  # fields that authenticate instead

    @model_validator(mode="before")
    @classmethod
    def _refuse_plaintext(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for key in data:
                if isinstance(key, str) and key.endswith("_plaintext"):
                    ref_field = key[: -len("_plaintext")]
                    raise ConfigError(
                        key,
                        MASK,
                        f"plaintext secrets are refused; store the value "
                        f"in a secret and set {ref_field}: '{{{{secrets/<scope>/<key>}}}}'",
                    )
        return data

    @model_validator(mode="after")
    def _check_refs(self) -> _ProviderConfig:
        alternative = any(getattr(self, f) is not None for f in self.secret_alternatives)
        for name in self.secret_fields:
            value = getattr(self, name)
            if value is None and name in self.required_secrets and not alternative:
                other = "".join(f" or set {f}" for f in self.secret_alternatives)
                raise ConfigError(name, None, f"required; {REF_RULE}{other}")
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
        needed = {
            "openai": ["openai_api_key"],
            "azure": ["openai_api_key", "openai_api_base", "openai_api_version", "openai_deployment_name"],
            "azuread": [
                "microsoft_entra_client_id",
                "microsoft_entra_tenant_id",
                "microsoft_entra_client_secret",
                "openai_api_base",
                "openai_api_version",
                "openai_deployment_name",
            ],
        }[kind]
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
    """Amazon Bedrock: access keys (secret references), an instance profile, or a UC service credential.

    The SDK (serving.AmazonBedrockConfig): "You must authenticate using an instance profile or
    access keys"; `uc_service_credential_name` is the third way.
    """

    secret_fields: ClassVar = ("aws_access_key_id", "aws_secret_access_key")
    required_secrets: ClassVar = secret_fields
    secret_alternatives: ClassVar = ("instance_profile_arn", "uc_service_credential_name")
    aws_region: str
    bedrock_provider: BedrockProvider
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    instance_profile_arn: str | None = None
    uc_service_credential_name: str | None = None

    @field_validator("bedrock_provider", mode="before")
    @classmethod
    def _case_insensitive(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) and value.lower() in get_args(BedrockProvider) else value

    @model_validator(mode="after")
    def _key_pair(self) -> AmazonBedrockConfig:
        keys = (self.aws_access_key_id, self.aws_secret_access_key)
        if any(k is not None for k in keys):
            for name, value in zip(self.secret_fields, keys):
                if value is None:
                    raise ConfigError(name, None, f"required with the other access key; {REF_RULE}")
        return self


class PaLmConfig(_ProviderConfig):
    """Google PaLM (provider 'palm'), still in the SDK's provider enum."""

    secret_fields: ClassVar = ("palm_api_key",)
    required_secrets: ClassVar = secret_fields
    palm_api_key: str | None = None


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
            raise ConfigError("api_key_auth", _Shown("(both or neither)"), "set exactly one of api_key_auth or bearer_token_auth")
        return self


PROVIDER_CONFIG_FIELD: dict[str, str] = {
    "openai": "openai_config",
    "anthropic": "anthropic_config",
    "cohere": "cohere_config",
    "amazon-bedrock": "amazon_bedrock_config",
    "google-cloud-vertex-ai": "google_cloud_vertex_ai_config",
    "ai21labs": "ai21labs_config",
    "databricks-model-serving": "databricks_model_serving_config",
    "custom": "custom_provider_config",
    "palm": "palm_config",
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
    palm_config: PaLmConfig | None = None

    @model_validator(mode="after")
    def _provider_matches(self) -> ExternalModel:
        wanted = PROVIDER_CONFIG_FIELD[self.provider]
        given = [f for f in PROVIDER_CONFIG_FIELD.values() if getattr(self, f) is not None]
        if given != [wanted]:
            got = ", ".join(given) or "none"
            raise ConfigError("provider", self.provider, f"provider {self.provider!r} needs exactly {wanted}, got {got}")
        return self
