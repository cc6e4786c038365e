"""The one exception root of llmops-nb and the few subclasses users catch."""

from __future__ import annotations


class LlmopsError(Exception):
    """Root of every error raised on purpose by llmops-nb."""


class ConfigError(LlmopsError, ValueError):
    """Bad input: a config file, a parameter, a widget value or a CLI argument.

    The message is one line naming the field, the value and what is allowed.
    """

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(f"{field}: {value!r} is not allowed; {allowed}")


class WorkspaceError(LlmopsError):
    """The workspace (local or Databricks) could not be reached or answered an error."""


class EndpointError(LlmopsError):
    """An endpoint could not be deployed, became unhealthy, or did not get ready in time."""


class DeployFailed(EndpointError):
    """A config update ended in UPDATE_FAILED or UPDATE_CANCELED."""


class DeployTimeout(EndpointError):
    """An endpoint did not reach READY within the allowed time."""


class RolledBack(EndpointError):
    """A canary rollout was rolled back: traffic is on the champion again; the message says why."""


class QueryError(LlmopsError):
    """A chat request failed after retries."""


class ModelError(LlmopsError):
    """The model (GGUF, llama.cpp runtime) could not be found or loaded."""
