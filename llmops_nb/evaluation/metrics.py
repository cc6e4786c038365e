"""The answer metrics: one answer against its expected answer, and the run's figures over all rows.

Plain functions, no MLflow: :func:`score_answer` scores one row (exact and contains match,
response length), :func:`tokens_per_second` its speed, :func:`aggregate` the run-level
metrics (:data:`KNOWN_METRICS`) over a table, :class:`RunningMetrics` the same figures over
rows added one at a time. :mod:`llmops_nb.evaluation.scorers` wraps them for MLflow.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "ARTICLES",
    "KNOWN_METRICS",
    "RunningMetrics",
    "aggregate",
    "contains_match",
    "exact_match",
    "json_schema_match",
    "normalize",
    "response_length",
    "score_answer",
    "tokens_per_second",
]

ARTICLES = frozenset({"a", "an", "the"})
# Every metric evaluate_endpoint reports (a judge adds its own, e.g. correctness/mean).
KNOWN_METRICS = (
    "rows",
    "error_rate",
    "exact_match",
    "exact_match/mean",
    "contains_match",
    "contains_match/mean",
    "json_schema_match",  # with evaluation.json_schema: the answer is JSON that the schema validates
    "json_schema_match/mean",
    "latency_p50_ms",
    "latency_p95_ms",
    "mean_completion_tokens",
    "tokens_per_second",
    "latency_ms/mean",
    "completion_tokens/mean",
    "tokens_per_second/mean",
    "response_length/mean",
)


def normalize(text: str) -> list[str]:
    """Lower-cased words without accents, punctuation or articles."""
    text = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode().lower()
    words = re.sub(r"[^a-z0-9]+", " ", text).split()
    return [w for w in words if w not in ARTICLES]


def _targets(expected: str, aliases: Sequence[str] = ()) -> list[list[str]]:
    return [t for t in (normalize(x) for x in (expected, *aliases)) if t]


def exact_match(answer: str, expected: str, aliases: Sequence[str] = ()) -> float:
    """1.0 when the normalized answer is the expected answer (or an alias), else 0.0."""
    words = normalize(answer)
    return float(any(words == t for t in _targets(expected, aliases)))


def contains_match(answer: str, expected: str, aliases: Sequence[str] = ()) -> float:
    """1.0 when the expected answer (or an alias) appears as whole words in the answer."""
    words = normalize(answer)
    for target in _targets(expected, aliases):
        n = len(target)
        if any(words[i : i + n] == target for i in range(len(words) - n + 1)):
            return 1.0
    return 0.0


def response_length(answer: str) -> int:
    """Words in the answer."""
    return len((answer or "").split())


def tokens_per_second(completion_tokens: int | None, latency_ms: float | None) -> float | None:
    """Completion tokens per second of request latency; None without a latency."""
    if completion_tokens is None or not latency_ms or latency_ms <= 0:
        return None
    return completion_tokens / (latency_ms / 1000)


def json_schema_match(answer: str, schema: Mapping[str, Any]) -> float:
    """1.0 when the whole answer parses as JSON and ``schema`` (a JSON Schema) validates it, else 0.0."""
    import jsonschema

    try:
        value = json.loads(answer)
    except ValueError:
        return 0.0
    validator = jsonschema.validators.validator_for(schema)(schema)
    return 1.0 if validator.is_valid(value) else 0.0


def score_answer(
    answer: str, expected: str, aliases: Sequence[str] = (), schema: Mapping[str, Any] | None = None
) -> dict[str, float | int]:
    """The answer scores of one row (``json_schema_match`` too when a schema is given)."""
    scores: dict[str, float | int] = {
        "exact_match": exact_match(answer, expected, aliases),
        "contains_match": contains_match(answer, expected, aliases),
        "response_length": response_length(answer),
    }
    if schema is not None:
        scores["json_schema_match"] = json_schema_match(answer, schema)
    return scores


def _quantile(values: list[float], q: float) -> float:
    """Linear-interpolated quantile (as numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _mean(total: float, n: int) -> float:
    return total / n if n else math.nan


class RunningMetrics:
    """Run-level metrics over rows added one at a time; a failed row scores 0 on matches."""

    def __init__(self) -> None:
        self.rows = self.ok = 0
        self.latencies: list[float] = []
        self.tokens, self.counted = 0.0, 0  # completion tokens, and the answers that had them
        self.rate_sum, self.rates = 0.0, 0
        self.length_sum = 0.0
        self.matches = {"exact_match": 0.0, "contains_match": 0.0}

    def add(self, row: dict[str, Any]) -> None:
        self.rows += 1
        self.length_sum += float(row["response_length"])
        if row.get("json_schema_match") is not None:
            self.matches.setdefault("json_schema_match", 0.0)
        for name in self.matches:
            self.matches[name] += float(row.get(name) or 0.0)
        if row["error"]:
            return
        self.ok += 1
        if row["latency_ms"] is not None:  # None: an answer with no timing of its own (engine ai_query)
            self.latencies.append(float(row["latency_ms"]))
        if row["completion_tokens"] is not None:  # None: an answer with no usage (engine ai_query)
            self.tokens += float(row["completion_tokens"])
            self.counted += 1
        if row["tokens_per_second"] is not None:
            self.rate_sum += float(row["tokens_per_second"])
            self.rates += 1

    def metrics(self) -> dict[str, float]:
        latency_total = sum(self.latencies)
        metrics = {
            "rows": float(self.rows),
            "error_rate": (self.rows - self.ok) / self.rows if self.rows else math.nan,
            "latency_p50_ms": _quantile(self.latencies, 0.5),
            "latency_p95_ms": _quantile(self.latencies, 0.95),
            "mean_completion_tokens": _mean(self.tokens, self.counted),
            "tokens_per_second": self.tokens / (latency_total / 1000) if latency_total > 0 else math.nan,
            "latency_ms/mean": _mean(latency_total, len(self.latencies)),
            "completion_tokens/mean": _mean(self.tokens, self.counted),
            "tokens_per_second/mean": _mean(self.rate_sum, self.rates),
            "response_length/mean": _mean(self.length_sum, self.rows),
        }
        for name, total in self.matches.items():
            metrics[name] = metrics[f"{name}/mean"] = _mean(total, self.rows)
        return metrics


def aggregate(rows: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Run-level metrics; a failed row scores 0 on matches and is left out of latency and tokens."""
    running = RunningMetrics()
    for row in rows:
        running.add(row)
    return running.metrics()
