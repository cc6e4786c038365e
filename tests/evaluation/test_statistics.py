"""The statistics of an evaluation: intervals that cover, paired tests on known tables, Holm."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmops_nb.evaluation import statistics as st


def _covered(estimates: list[st.Estimate], truth: float) -> float:
    return float(np.mean([e.ci_low <= truth <= e.ci_high for e in estimates]))


def test_wilson_intervals_cover_the_true_rate_in_a_seeded_simulation() -> None:
    rng = np.random.default_rng(7)
    runs = [st.mean(rng.random(52) < 0.6) for _ in range(500)]
    assert {e.method for e in runs} == {"wilson"}
    assert 0.93 <= _covered(runs, 0.6) <= 0.97


def test_bootstrap_intervals_cover_the_true_mean_in_a_seeded_simulation() -> None:
    rng = np.random.default_rng(11)
    runs = [st.mean(rng.gamma(4.0, 10.0, size=80), seed=i) for i in range(500)]
    assert {e.method for e in runs} == {"bootstrap"}
    assert 0.93 <= _covered(runs, 40.0) <= 0.97


def test_paired_differences_cover_the_true_difference_in_a_seeded_simulation() -> None:
    rng = np.random.default_rng(3)
    found = []
    for _ in range(500):
        base = rng.random(200) < 0.6
        flip = rng.random(200) < 0.2  # the candidate differs on about a fifth of the rows
        cand = np.where(flip, rng.random(200) < 0.7, base)
        found.append(st.paired(cand, base))
    truth = 0.2 * (0.7 - 0.6)
    assert 0.93 <= float(np.mean([d.ci_low <= truth <= d.ci_high for d in found])) <= 0.97


def test_mcnemar_exact_on_a_known_table() -> None:
    # 2x2 table of (candidate, baseline): 30 both right, 2 only the candidate, 10 only the
    # baseline, 8 both wrong. Exact McNemar: 2 * P(Binom(12, 0.5) <= 2) = 2 * 79 / 4096.
    cand = [1] * 30 + [1] * 2 + [0] * 10 + [0] * 8
    base = [1] * 30 + [0] * 2 + [1] * 10 + [0] * 8
    d = st.paired(cand, base, metric="contains_match", names=("new", "champion"))
    assert d.test == "mcnemar exact"
    assert d.p_value == pytest.approx(2 * 79 / 4096)
    assert d.diff == pytest.approx(-8 / 50)
    assert d.ci_low < d.diff < d.ci_high < 0
    assert (d.candidate, d.baseline, d.n) == ("new", "champion", 50)


def test_identical_scores_differ_by_nothing_with_p_one() -> None:
    same = [1, 0, 1, 1, 0] * 10
    d = st.paired(same, same)
    assert (d.diff, d.p_value, d.identical) == (0.0, 1.0, True)
    assert -0.05 < d.ci_low < 0 < d.ci_high < 0.05  # no discordant pair in 50 still leaves a little doubt (Newcombe)
    lengths = st.paired([3.0, 4.0, 5.0], [3.0, 4.0, 5.0])
    assert (lengths.ci_low, lengths.ci_high, lengths.identical) == (0.0, 0.0, True)


def test_continuous_paired_scores_use_wilcoxon_and_leave_out_missing_rows() -> None:
    rng = np.random.default_rng(5)
    base = rng.normal(100, 10, 60)
    cand = base + 5 + rng.normal(0, 2, 60)
    cand[0] = np.nan
    d = st.paired(cand, base)
    assert d.test == "wilcoxon" and d.n == 59
    assert d.p_value < 1e-6
    assert d.ci_low < 5 < d.ci_high


def test_wilson_matches_its_formula_and_quantiles_have_order_statistic_intervals() -> None:
    e = st.proportion(31, 52)
    z = 1.959963984540054
    p, n = 31 / 52, 52
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert (e.ci_low, e.ci_high) == (pytest.approx(centre - half), pytest.approx(centre + half))
    lat = np.arange(1, 1001, dtype=float)
    q = st.quantile(lat, 0.95)
    assert q.method == "order statistics"
    assert q.ci_low < q.value < q.ci_high
    small = st.quantile(np.arange(1, 53, dtype=float), 0.95)  # too few rows for the exact upper bound
    assert small.method == "bootstrap" and small.ci_low <= small.value <= small.ci_high


def test_holm_adjusts_as_statsmodels_does() -> None:
    # statsmodels.stats.multitest.multipletests([0.01, 0.04, 0.03, 0.5], method="holm")[1]
    assert st.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert st.holm([]) == []


def test_compare_candidates_holm_adjusts_when_more_than_one_faces_the_baseline() -> None:
    rng = np.random.default_rng(1)
    base = (rng.random(300) < 0.5).astype(float)
    cols = {
        "champion": {"contains_match": base},
        "a": {"contains_match": np.where(rng.random(300) < 0.3, 1.0, base)},
        "b": {"contains_match": np.where(rng.random(300) < 0.1, 0.0, base)},
    }
    found = st.compare_candidates(cols, "champion")
    assert [d.candidate for d in found] == ["a", "b"]
    assert all(d.p_raw is not None and d.p_value >= d.p_raw for d in found)
    alone = st.compare_candidates({"champion": cols["champion"], "a": cols["a"]}, "champion")
    assert alone[0].p_raw is None


def test_min_rows_and_rows_to_resolve() -> None:
    assert st.min_rows(0.95) == 6  # 5 rows all discordant: p = 0.0625
    assert st.paired([1] * 5, [0] * 5).p_value == pytest.approx(0.0625)
    assert st.paired([1] * 6, [0] * 6).p_value < 0.05
    need = st.rows_to_resolve(52, 0.05, -0.1, 0.2, 0.0)  # half-width 0.15, gap 0.05: 9x the rows
    assert need == 468
    assert st.rows_to_resolve(52, 0.0, -0.1, 0.1, 0.0) is None


def test_the_statistics_of_100k_rows_and_three_candidates_are_vectorised() -> None:
    """Runs the large-n paths (Student's, order statistics); the timing is in bench/evaluation_statistics.py."""
    rng = np.random.default_rng(0)
    n = 100_000
    cols = {
        name: {"contains_match": (rng.random(n) < p).astype(float), "latency_ms": rng.gamma(2, 50, n), "error": np.zeros(n)}
        for name, p in (("base", 0.6), ("a", 0.61), ("b", 0.6))
    }
    summaries = {c: st.summarize(v) for c, v in cols.items()}
    assert summaries["base"]["latency_ms/mean"].method == "student"
    assert summaries["base"]["latency_p95_ms"].method == "order statistics"
    found = st.compare_candidates(cols, "base")
    a = next(d for d in found if d.candidate == "a" and d.metric == "contains_match")
    assert a.ci_low < 0.01 < a.ci_high


def test_cohen_kappa_on_known_tables_with_an_interval() -> None:
    judge = [1, 1, 0, 0] * 10
    assert st.kappa(judge, judge).value == 1.0
    assert st.kappa(judge, [1 - j for j in judge]).value == -1.0
    # 20 rows: both say 1 on 8, both 0 on 6, judge-only 4, label-only 2: po = 0.7, pe = 0.6*0.5 + 0.4*0.5 = 0.5
    a = [1] * 8 + [0] * 6 + [1] * 4 + [0] * 2
    b = [1] * 8 + [0] * 6 + [0] * 4 + [1] * 2
    k = st.kappa(a, b)  # sklearn.metrics.cohen_kappa_score(a, b) == 0.4
    assert k.value == pytest.approx(0.4) and k.ci_low < 0.4 < k.ci_high and k.n == 20
    assert st.kappa([1, np.nan, 0], [1, 1, 0]).n == 2  # a judge error is left out


def test_the_sign_test_is_one_sided_on_the_decided_pairs() -> None:
    from llmops_nb.evaluation.statistics import sign_test

    assert sign_test(3, 14, "less") == pytest.approx(0.00636, abs=1e-5)  # P(X <= 3), X ~ Bin(17, 1/2)
    assert sign_test(14, 3, "less") > 0.99 and sign_test(0, 0, "less") == 1.0
    assert sign_test(3, 14) == pytest.approx(2 * sign_test(3, 14, "less"))
