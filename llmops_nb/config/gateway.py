"""The AI gateway (`ai_gateway`, PUT .../ai-gateway) and the deprecated endpoint `rate_limits`.

Field for field databricks-sdk's `AiGatewayConfig`, `AiGatewayRateLimit`,
`AiGatewayGuardrails` / `AiGatewayGuardrailParameters` / `AiGatewayGuardrailPiiBehavior`,
`AiGatewayUsageTrackingConfig`, `AiGatewayInferenceTableConfig`, `FallbackConfig` and `RateLimit`.
Our historical names (RateLimit for the gateway's, UsageTrackingConfig, InferenceTableConfig) stay
as aliases of the SDK-named classes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from llmops_nb.config.errors import _Model
from llmops_nb.errors import ConfigError

# serving.AiGatewayRateLimitRenewalPeriod / AiGatewayRateLimitKey / RateLimitKey /
# AiGatewayGuardrailPiiBehaviorBehavior, value for value.
RenewalPeriod = Literal["minute"]
RateLimitKey = Literal["endpoint", "service_principal", "user", "user_group"]
LegacyRateLimitKey = Literal["endpoint", "user"]
PiiBehavior = Literal["BLOCK", "MASK", "NONE"]


class AiGatewayRateLimit(_Model):
    """At most `calls` requests and/or `tokens` tokens per `renewal_period`, per `key`.

    `renewal_period` is required (SDK); `key` left out means 'endpoint' (SDK docstring), and is
    then not sent.
    """

    calls: int | None = Field(default=None, ge=1)
    tokens: int | None = Field(default=None, ge=1)
    key: RateLimitKey | None = None
    # "a user email, group name, or service principal application ID" (SDK docstring).
    principal: str | None = Field(default=None, min_length=1)
    renewal_period: RenewalPeriod  # last, so a bad calls/tokens is the error shown first

    @model_validator(mode="after")
    def _some_limit(self) -> AiGatewayRateLimit:
        if self.calls is None and self.tokens is None:
            raise ConfigError("calls", None, "set calls and/or tokens (integers >= 1)")
        if self.principal is not None and self.key in (None, "endpoint"):
            raise ConfigError("principal", self.principal, "only with key user, user_group or service_principal")
        return self


class AiGatewayGuardrailPiiBehavior(_Model):
    behavior: PiiBehavior | None = None


class AiGatewayGuardrailParameters(_Model):
    """Input or output guardrails: keywords, PII behaviour, safety filter, allowed topics."""

    invalid_keywords: list[str] | None = None
    pii: AiGatewayGuardrailPiiBehavior | None = None
    safety: bool | None = None
    valid_topics: list[str] | None = None


class AiGatewayGuardrails(_Model):
    input: AiGatewayGuardrailParameters | None = None
    output: AiGatewayGuardrailParameters | None = None


class AiGatewayUsageTrackingConfig(_Model):
    enabled: bool | None = None


class AiGatewayInferenceTableConfig(_Model):
    """Payload logging to Unity Catalog; catalog, schema and prefix change only while disabled (SDK)."""

    catalog_name: str | None = None
    schema_name: str | None = None
    table_name_prefix: str | None = None
    enabled: bool | None = None

    @model_validator(mode="after")
    def _where(self) -> AiGatewayInferenceTableConfig:
        # catalog_name / schema_name: "Required when enabling inference tables" (SDK docstrings).
        if self.enabled:
            for field in ("catalog_name", "schema_name"):
                if not getattr(self, field):
                    raise ConfigError(field, getattr(self, field), "required when enabled")
        return self


class FallbackConfig(_Model):
    enabled: bool


class AiGatewayConfig(_Model):
    rate_limits: list[AiGatewayRateLimit] | None = None
    usage_tracking_config: AiGatewayUsageTrackingConfig | None = None
    inference_table_config: AiGatewayInferenceTableConfig | None = None
    guardrails: AiGatewayGuardrails | None = None
    fallback_config: FallbackConfig | None = None


class LegacyRateLimit(_Model):
    """An endpoint `rate_limits[]` entry (SDK `RateLimit`; deprecated: use the AI gateway's)."""

    calls: int = Field(ge=1)
    renewal_period: RenewalPeriod
    key: LegacyRateLimitKey | None = None


# The names this package used before it followed the SDK's.
RateLimit = AiGatewayRateLimit
UsageTrackingConfig = AiGatewayUsageTrackingConfig
InferenceTableConfig = AiGatewayInferenceTableConfig
