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
"""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import Field, field_validator, model_validator

from llmops_nb.config.errors import _Model, _Shown
from llmops_nb.errors import ConfigError

Strategy = Literal["replace", "canary"]


class QualitySample(_Model):
    """An optional quality check of a step: ``requests`` of the step's live requests re-asked
    (read from the inference table) and scored by ``judge_endpoint`` (not built yet: refused)."""

    requests: int = Field(default=20, ge=1, le=1000)
    judge_endpoint: str | None = None


class RolloutConfig(_Model):
    """The ``rollout:`` section: the strategy and, for ``canary``, its steps and what must hold.

    ``steps``: percent of traffic to the challenger at each step, increasing, ending at 100.
    ``min_requests``: challenger requests a step needs before it can pass. ``max_wait_s``: the
    longest a step waits for a decision (undecided then: rolled back). ``interval_s``: how
    often a step reads the traffic. ``max_error_rate``: the challenger's error rate (status
    >= 500) it may not exceed. ``max_latency_p95_ratio``: challenger p95 latency over the
    champion's it may not exceed. ``confidence``: of every interval the decision reads.
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
        if self.quality is not None:
            raise ConfigError("quality", _Shown("(set)"), "a quality sample per step is not built yet; leave it out")
        return self

    @property
    def canary(self) -> bool:
        return self.strategy == "canary"
