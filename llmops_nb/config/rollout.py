"""How a deploy moves traffic to the new version (the project's ``rollout:`` section, issue 33).

``strategy: replace`` (the default) switches the endpoint to the new config in one update, as
before. ``strategy: canary`` sends ``steps`` percent of the traffic to the new version (the
challenger) beside the entity serving now (the champion), watches each step on live traffic and
advances, waits or rolls back by itself (:mod:`llmops_nb.rollout`)::

    rollout:
      strategy: canary
      steps: [10, 50, 100]
      min_requests: 40
      max_wait_s: 600
      max_error_rate: 0.05
      max_latency_p95_ratio: 1.5

On Databricks a step reads what each served entity answered from the endpoint's AI-gateway
inference table through a SQL warehouse (``warehouse_id``), whose rows land up to
``inference_table_lag_s`` after their request: Databricks documents "Payload logging data
populates these tables less than hour after querying the endpoint" (docs.databricks.com,
ai-gateway/configure-ai-gateway-endpoints, "Payload logging"), hence the default 3600 s and the
rule that a step may wait at least that long (:func:`check_on_databricks`).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from llmops_nb.config.errors import _Model, _Shown
from llmops_nb.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from llmops_nb.config.endpoint import EndpointConfig

#: "less than hour after querying the endpoint" (Databricks docs, AI gateway payload logging)
DOCUMENTED_INFERENCE_TABLE_LAG_S = 3600.0

Strategy = Literal["replace", "canary"]


class QualitySample(_Model):
    """An optional quality check at the end of each step (:mod:`llmops_nb.rollout.quality`):
    ``requests`` of the step's live requests, read from the endpoint's inference table, asked again
    of the champion and of the challenger, and the two answers compared by ``judge_endpoint`` (any
    chat endpoint: an external model or a foundation endpoint), in both orders."""

    requests: int = Field(default=20, ge=1, le=1000)
    judge_endpoint: str | None = None

    @model_validator(mode="after")
    def _judge(self) -> QualitySample:
        if not (self.judge_endpoint or "").strip():
            raise ConfigError(
                "judge_endpoint", self.judge_endpoint, "the chat endpoint that compares the two answers (an external model "
                "or a foundation endpoint): a quality check needs one"
            )  # fmt: skip
        return self


class RolloutConfig(_Model):
    """The ``rollout:`` section: the strategy and, for ``canary``, its steps and what must hold.

    ``steps``: percent of traffic to the challenger at each step, increasing, ending at 100.
    ``min_requests``: challenger requests a step needs before it can pass. ``max_wait_s``: the
    longest a step waits for a decision (undecided then: rolled back). ``interval_s``: how
    often a step reads the traffic. ``max_error_rate``: the challenger's error rate (status
    >= 500) it may not exceed. ``max_latency_p95_ratio``: challenger p95 latency over the
    champion's it may not exceed. ``confidence``: the rollout holds its false-rollback and false-advance rates at
    most 1 - confidence over any number of reads (sequential tests: :mod:`llmops_nb.rollout.judge`).
    ``quality``: the optional pairwise judge of each step's live requests (:class:`QualitySample`).
    ``warehouse_id``: on Databricks, the SQL warehouse the inference table is read through.
    ``inference_table_lag_s``: on Databricks, how long after its request a row of the inference
    table may land (documented: within the hour); each read asks again for the rows this recent.
    """

    strategy: Strategy = "replace"
    steps: list[int] = Field(default_factory=lambda: [10, 50, 100])
    min_requests: int = Field(default=40, ge=1)
    max_wait_s: float = Field(default=600.0, gt=0)
    interval_s: float = Field(default=10.0, gt=0)
    max_error_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    max_latency_p95_ratio: float = 2.0
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    quality: QualitySample | None = None
    warehouse_id: str = ""
    inference_table_lag_s: float = Field(default=DOCUMENTED_INFERENCE_TABLE_LAG_S, gt=0)

    @field_validator("max_latency_p95_ratio")
    @classmethod
    def _ratio(cls, value: float) -> float:
        if not value > 0:
            raise ConfigError("", value, "a ratio > 0 (challenger p95 latency over the champion's, e.g. 1.5)")
        return value

    @model_validator(mode="after")
    def _steps(self) -> RolloutConfig:
        steps = self.steps
        if not steps or steps[-1] != 100 or any(not 0 < s <= 100 for s in steps):
            raise ConfigError(
                "steps", _Shown(repr(steps)), "percentages in 1..100 to the challenger, increasing, the last one 100"
            )
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ConfigError("steps", _Shown(repr(steps)), "each step must be larger than the one before (e.g. [10, 50, 100])")
        return self

    @property
    def canary(self) -> bool:
        return self.strategy == "canary"


def _require_inference_table(endpoint: EndpointConfig | None, why: str) -> None:
    """One ConfigError line unless ``endpoint`` enables its AI-gateway inference table (``why`` it must)."""
    table = endpoint.ai_gateway.inference_table_config if endpoint is not None and endpoint.ai_gateway else None
    if table is None or not table.enabled:
        raise ConfigError(
            "endpoint.ai_gateway.inference_table_config.enabled",
            table.enabled if table else None,
            f"{why}: set it to true (with catalog_name and schema_name)",
        )


def check_quality(rollout: RolloutConfig, endpoint: EndpointConfig | None) -> None:
    """What ``rollout.quality`` needs of the endpoint (one ConfigError line): its AI-gateway
    inference table enabled (where the step's live requests are read back), and a judge that is
    another endpoint (the one rolled out would judge its own answers)."""
    if rollout.quality is None or endpoint is None:
        return
    _require_inference_table(endpoint, "rollout.quality reads the step's live requests from the endpoint's inference table")
    if rollout.quality.judge_endpoint == endpoint.name:
        raise ConfigError(
            "rollout.quality.judge_endpoint",
            rollout.quality.judge_endpoint,
            "another chat endpoint than the one rolled out (it would judge its own answers)",
        )


def check_on_databricks(rollout: RolloutConfig, endpoint: EndpointConfig | None) -> None:
    """What a canary on Databricks needs, checked before anything changes (one ConfigError line):
    the endpoint's AI-gateway inference table enabled (the only per-entity record of live calls
    a client can read there: status, latency, time, ``served_entity_id``), a SQL warehouse to
    read it through, and steps allowed to wait as long as its rows take to land."""
    if not rollout.canary:
        return
    _require_inference_table(
        endpoint, "a canary rollout on Databricks reads each served entity's calls from the endpoint's inference table"
    )
    if not rollout.warehouse_id.strip():
        raise ConfigError(
            "rollout.warehouse_id",
            rollout.warehouse_id,
            "a canary rollout on Databricks reads the inference table through a SQL warehouse: set its id",
        )
    if rollout.max_wait_s < rollout.inference_table_lag_s:
        raise ConfigError(
            "rollout.max_wait_s",
            rollout.max_wait_s,
            f"at least rollout.inference_table_lag_s ({rollout.inference_table_lag_s:g} s): on Databricks a step's calls "
            "reach the inference table up to that long after the request (documented: within the hour), so a shorter "
            "step would roll back undecided; lower inference_table_lag_s only where the tables land sooner",
        )
