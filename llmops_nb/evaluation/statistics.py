"""Intervals and paired comparisons for an evaluation's per-row scores (numpy and scipy, no MLflow).

- a 0/1 score (a match, an error): the rate with Wilson's interval
  (``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``);
- any other per-row score (tokens, length, a judge's grade): the mean with a seeded bootstrap
  over rows (``scipy.stats.bootstrap``, BCa) up to :data:`BOOTSTRAP_MAX_ROWS` rows, beyond that
  Student's interval (``scipy.stats.ttest_1samp``; the bootstrap converges to it and would cost
  rows x resamples);
- a latency quantile (p50, p95): the distribution-free order-statistic interval
  (``scipy.stats.quantile_test``), or a seeded percentile bootstrap when there are too few rows
  for one of its bounds;
- a candidate against a baseline on the same rows: the paired difference of means with its
  interval (Newcombe's hybrid score interval for 0/1 scores; otherwise a bootstrap of the
  per-row differences, or Student's beyond :data:`BOOTSTRAP_MAX_ROWS`) and a p-value: McNemar's exact test (``binomtest`` on the
  discordant pairs) for 0/1 scores, the Wilcoxon signed-rank test for the rest;
  :func:`holm` adjusts the p-values of several candidates against one baseline.

Missing values (NaN: the latency of a failed row) are left out of their metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Up to this many rows the intervals of means are bootstrapped; beyond it, Student's.
BOOTSTRAP_MAX_ROWS = 2000
#: Bootstrap resamples (seeded: the same rows give the same interval).
N_RESAMPLES = 2000
SEED = 20260
#: Run-level metric -> (per-row column, statistic): ``"mean"`` or a quantile in (0, 1).
ROW_METRICS: dict[str, tuple[str, str | float]] = {
    "exact_match": ("exact_match", "mean"),
    "contains_match": ("contains_match", "mean"),
    "json_schema_match": ("json_schema_match", "mean"),
    "error_rate": ("error", "mean"),
    "latency_p50_ms": ("latency_ms", 0.5),
    "latency_p95_ms": ("latency_ms", 0.95),
    "latency_ms/mean": ("latency_ms", "mean"),
    "response_length/mean": ("response_length", "mean"),
    "completion_tokens/mean": ("completion_tokens", "mean"),
    "prompt_tokens/mean": ("prompt_tokens", "mean"),
    "tokens_per_second/mean": ("tokens_per_second", "mean"),
}


@dataclass(frozen=True)
class Estimate:
    """A metric's value and its interval at ``confidence`` over ``n`` rows (``method`` says how)."""

    value: float
    ci_low: float
    ci_high: float
    n: int
    method: str

    def as_dict(self) -> dict[str, Any]:
        return {k: _finite(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Difference:
    """``candidate - baseline`` on ``metric`` over ``n`` paired rows, its interval and p-value."""

    candidate: str
    baseline: str
    metric: str
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    test: str
    p_raw: float | None = None  # before the Holm adjustment, when there was one
    identical: bool = False  # the same score on every paired row

    def as_dict(self) -> dict[str, Any]:
        return {k: _finite(v) for k, v in asdict(self).items()}


def _finite(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _values(values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[~np.isnan(array)]


def is_binary(values: np.ndarray) -> bool:
    """True when every value is 0 or 1."""
    return bool(np.all((values == 0) | (values == 1)))


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _bootstrap(
    data: tuple[np.ndarray, ...], statistic: Any, confidence: float, seed: int, method: str = "BCa"
) -> tuple[float, float]:
    from scipy import stats

    with np.errstate(all="ignore"):
        ci = stats.bootstrap(
            data, statistic, n_resamples=N_RESAMPLES, confidence_level=confidence, method=method, rng=_rng(seed), vectorized=True
        ).confidence_interval
    return float(ci.low), float(ci.high)


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def proportion(successes: int, n: int, confidence: float = 0.95) -> Estimate:
    """A rate with Wilson's interval."""
    from scipy import stats

    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, "wilson")
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return Estimate(successes / n, float(ci.low), float(ci.high), int(n), "wilson")


def sign_test(wins: int, losses: int, alternative: str = "two-sided") -> float:
    """The sign test's p-value of ``wins`` against ``losses`` (ties dropped before): an exact
    binomial test at 1/2 (``scipy.stats.binomtest``); ``alternative="less"``: fewer wins than
    losses. No decided pair: 1.0."""
    from scipy import stats

    n = int(wins) + int(losses)
    return float(stats.binomtest(int(wins), n, 0.5, alternative=alternative).pvalue) if n else 1.0


def mean(values: Any, confidence: float = 0.95, seed: int = SEED) -> Estimate:
    """The mean: Wilson for 0/1 values, else bootstrap (or Student's beyond :data:`BOOTSTRAP_MAX_ROWS`)."""
    from scipy import stats

    x = _values(values)
    n = len(x)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, "none")
    if is_binary(x):
        return proportion(int(x.sum()), n, confidence)
    value = float(x.mean())
    if n < 2 or np.all(x == x[0]):
        return Estimate(value, value, value, n, "constant")
    if n <= BOOTSTRAP_MAX_ROWS:
        low, high = _bootstrap((x,), _mean, confidence, seed)
        if math.isnan(low) or math.isnan(high):  # BCa degenerate (a few distinct values): percentile
            low, high = _bootstrap((x,), _mean, confidence, seed, "percentile")
        return Estimate(value, low, high, n, "bootstrap")
    ci = stats.ttest_1samp(x, 0.0).confidence_interval(confidence)
    return Estimate(value, float(ci.low), float(ci.high), n, "student")


def quantile(values: Any, q: float, confidence: float = 0.95, seed: int = SEED) -> Estimate:
    """The ``q`` quantile (numpy's linear interpolation) with the order-statistic interval."""
    from scipy import stats

    x = _values(values)
    n = len(x)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, "none")
    value = float(np.quantile(x, q))
    ci = stats.quantile_test(x, q=value, p=q).confidence_interval(confidence)
    low, high = float(ci.low), float(ci.high)
    if not (math.isnan(low) or math.isnan(high)):
        return Estimate(value, low, high, n, "order statistics")
    if n < 2:
        return Estimate(value, math.nan, math.nan, n, "none")

    def stat(sample: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.quantile(sample, q, axis=axis)

    low, high = _bootstrap((x,), stat, confidence, seed, "percentile")
    return Estimate(value, low, high, n, "bootstrap")


def estimate(values: Any, statistic: str | float = "mean", confidence: float = 0.95, seed: int = SEED) -> Estimate:
    """``statistic`` (``"mean"`` or a quantile) of ``values`` with its interval."""
    if statistic == "mean":
        return mean(values, confidence, seed)
    return quantile(values, float(statistic), confidence, seed)


def row_columns(table: Any) -> dict[str, np.ndarray]:
    """The per-row numeric columns of a result table (pandas), ``error`` as 0/1."""
    columns: dict[str, np.ndarray] = {}
    for metric_column, _ in ROW_METRICS.values():
        if metric_column == "error":
            columns["error"] = table["error"].notna().to_numpy(dtype=float)
        elif metric_column in table:
            columns[metric_column] = table[metric_column].to_numpy(dtype=float, na_value=np.nan)
    for column in table.columns:  # a judge's per-row scores, e.g. "correctness"
        if column not in columns and column.startswith("judge_"):
            columns[column] = table[column].to_numpy(dtype=float, na_value=np.nan)
    return columns


def metric_sources(columns: Mapping[str, Any]) -> dict[str, tuple[str, str | float]]:
    """:data:`ROW_METRICS` with the columns present, plus ``<judge column>/mean`` per judge column."""
    sources = {m: s for m, s in ROW_METRICS.items() if s[0] in columns}
    sources.update({f"{c}/mean": (c, "mean") for c in columns if c.startswith("judge_")})
    return sources


def summarize(columns: Mapping[str, Any], confidence: float = 0.95, seed: int = SEED) -> dict[str, Estimate]:
    """Every run-level metric of :func:`metric_sources` with its interval."""
    return {m: estimate(columns[c], stat, confidence, seed) for m, (c, stat) in metric_sources(columns).items()}


def paired(
    candidate: Any,
    baseline: Any,
    *,
    metric: str = "",
    names: tuple[str, str] = ("candidate", "baseline"),
    confidence: float = 0.95,
    seed: int = SEED,
) -> Difference:
    """``mean(candidate - baseline)`` over the rows where both have a value, with interval and p-value.

    0/1 scores: McNemar's exact test (a two-sided binomial test of the discordant pairs, as
    ``statsmodels.stats.contingency_tables.mcnemar(exact=True)``); otherwise Wilcoxon's
    signed-rank test (zero differences split, ``zero_method="zsplit"``).
    """
    from scipy import stats

    a, b = np.asarray(candidate, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same rows: {a.shape} vs {b.shape}")
    both = ~(np.isnan(a) | np.isnan(b))
    a, b = a[both], b[both]
    n = len(a)
    name, base = names
    if n == 0:
        return Difference(name, base, metric, math.nan, math.nan, math.nan, math.nan, 0, "none")
    d = a - b
    diff = float(d.mean())
    binary = is_binary(a) and is_binary(b)
    if binary:
        wins, losses = int(np.sum(d > 0)), int(np.sum(d < 0))
        p = stats.binomtest(wins, wins + losses, 0.5).pvalue if wins + losses else 1.0
        test = "mcnemar exact"
    elif np.all(d == 0):
        p, test = 1.0, "wilcoxon"
    else:
        p, test = float(stats.wilcoxon(d, zero_method="zsplit").pvalue), "wilcoxon"
    if binary:
        low, high = newcombe_paired(a, b, confidence)
    elif n < 2 or np.all(d == d[0]):
        low = high = diff
    elif n <= BOOTSTRAP_MAX_ROWS:
        low, high = _bootstrap((d,), _mean, confidence, seed)
        if math.isnan(low) or math.isnan(high):
            low, high = _bootstrap((d,), _mean, confidence, seed, "percentile")
    else:
        ci = stats.ttest_1samp(d, 0.0).confidence_interval(confidence)
        low, high = float(ci.low), float(ci.high)
    return Difference(name, base, metric, diff, low, high, float(p), n, test, identical=bool(np.all(d == 0)))


def newcombe_paired(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval for a difference of paired proportions (his method 10).

    scipy has no interval for paired proportions, and a bootstrap of mostly-zero differences
    under-covers; this one combines the two rates' Wilson intervals (``binomtest``) with the
    phi correlation of the 2x2 table (Newcombe, Statistics in Medicine 17, 1998, 2635-2650).
    """
    n = len(a)
    both, only_a = int(np.sum((a == 1) & (b == 1))), int(np.sum((a == 1) & (b == 0)))
    only_b, neither = int(np.sum((a == 0) & (b == 1))), int(np.sum((a == 0) & (b == 0)))
    p1, p2 = proportion(both + only_a, n, confidence), proportion(both + only_b, n, confidence)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    phi = (both * neither - only_a * only_b) / math.sqrt(margins) if margins else 0.0
    d1_low, d1_high = p1.value - p1.ci_low, p1.ci_high - p1.value
    d2_low, d2_high = p2.value - p2.ci_low, p2.ci_high - p2.value
    below = math.sqrt(max(0.0, d1_low**2 - 2 * phi * d1_low * d2_high + d2_high**2))
    above = math.sqrt(max(0.0, d1_high**2 - 2 * phi * d1_high * d2_low + d2_low**2))
    diff = p1.value - p2.value
    return max(-1.0, diff - below), min(1.0, diff + above)


def _kappa(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """Cohen's kappa of two 0/1 raters along ``axis`` (vectorised for the bootstrap)."""
    po = np.mean(a == b, axis=axis)
    pa, pb = np.mean(a, axis=axis), np.mean(b, axis=axis)
    pe = pa * pb + (1 - pa) * (1 - pb)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pe < 1, (po - pe) / (1 - pe), np.where(po == 1, 1.0, np.nan))


def kappa(rater: Any, reference: Any, confidence: float = 0.95, seed: int = SEED) -> Estimate:
    """Cohen's kappa between two 0/1 ratings of the same rows (a judge and a labelled metric),
    with a seeded paired bootstrap interval (percentile). scipy and numpy have no kappa;
    ``sklearn.metrics.cohen_kappa_score`` computes the same value."""
    a, b = np.asarray(rater, dtype=float), np.asarray(reference, dtype=float)
    both = ~(np.isnan(a) | np.isnan(b))
    a, b = a[both], b[both]
    n = len(a)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, "none")
    value = float(_kappa(a, b))
    if n < 2 or math.isnan(value):
        return Estimate(value, math.nan, math.nan, n, "cohen")
    from scipy import stats

    with np.errstate(all="ignore"):
        ci = stats.bootstrap(
            (a, b), _kappa, paired=True, vectorized=True, n_resamples=N_RESAMPLES, confidence_level=confidence,
            method="percentile", rng=_rng(seed),
        ).confidence_interval  # fmt: skip
    return Estimate(value, float(ci.low), float(ci.high), n, "cohen, bootstrap")


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error), as ``statsmodels`` ``multipletests(method="holm")``.

    The i-th smallest p-value is multiplied by (m - i), the running maximum taken, capped at 1.
    (``scipy.stats.false_discovery_control`` is Benjamini-Hochberg, a different error rate.)
    """
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p)
    scaled = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    adjusted = np.empty(m)
    adjusted[order] = scaled
    return [float(v) for v in adjusted]


def compare_candidates(
    columns: Mapping[str, Mapping[str, Any]],
    baseline: str,
    *,
    metrics: Sequence[str] | None = None,
    confidence: float = 0.95,
    seed: int = SEED,
) -> list[Difference]:
    """Each candidate against ``baseline`` (paired, same rows) on each mean-type metric.

    ``columns``: candidate -> its :func:`row_columns`, rows in the same order for all. With more
    than one candidate against the baseline the p-values are Holm-adjusted per metric.
    """
    others = [c for c in columns if c != baseline]
    sources = metric_sources(columns[baseline])
    wanted = [m for m in (metrics or sources) if m in sources and sources[m][1] == "mean"]
    out: list[Difference] = []
    for metric in wanted:
        column = sources[metric][0]
        found = [
            paired(
                columns[c][column],
                columns[baseline][column],
                metric=metric,
                names=(c, baseline),
                confidence=confidence,
                seed=seed,
            )
            for c in others
            if column in columns[c]
        ]
        if len(found) > 1:
            adjusted = holm([f.p_value for f in found])
            found = [Difference(**{**asdict(f), "p_value": p, "p_raw": f.p_value}) for f, p in zip(found, adjusted, strict=True)]
        out += found
    return out


def min_rows(confidence: float) -> int:
    """The fewest paired rows on which an exact two-sided test can reach ``confidence`` at all.

    With every one of ``n`` rows discordant in one direction McNemar's p-value is ``2 * 0.5**n``;
    fewer rows than this can never show a difference (5 rows at 0.95: p >= 0.0625).
    """
    return max(1, math.ceil(math.log2(2 / (1 - confidence))))


def rows_to_resolve(n: int, diff: float, ci_low: float, ci_high: float, boundary: float) -> int | None:
    """About how many rows would put the interval of ``diff`` clear of ``boundary``.

    The interval's half-width shrinks as ``1/sqrt(n)``; None when the difference sits on the
    boundary (no number of rows resolves it) or the interval is unknown.
    """
    half = (ci_high - ci_low) / 2
    gap = abs(diff - boundary)
    if not (math.isfinite(half) and math.isfinite(gap)) or gap == 0 or n == 0:
        return None
    return max(n + 1, math.ceil(n * (half / gap) ** 2 - 1e-9))
