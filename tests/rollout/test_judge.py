"""A step's decision on known traffic: each rule of rollout/judge.py, and the figures it says."""

from __future__ import annotations

import math

import pytest

from llmops_nb.rollout.judge import ADVANCE, ROLLBACK, WAIT, judge, newcombe_unpaired
from llmops_nb.rollout.traffic import Call

A, B = "champ-1", "chall-2"


def calls(entity: str, n: int, errors: int = 0, latency: float = 100.0) -> list[Call]:
    return [Call(float(i), entity, 500 if i < errors else 200, latency + i % 7) for i in range(n)]


def decide(traffic: list[Call], **kw: float) -> object:
    args = {"min_requests": 20, "max_error_rate": 0.05, "max_latency_p95_ratio": 1.5, **kw}
    return judge(traffic, challenger=B, champion=A, **args)  # type: ignore[arg-type]


def test_a_challenger_failing_30_percent_is_rolled_back_with_the_figures() -> None:
    v = decide(calls(A, 90) + calls(B, 10, errors=3))
    assert v.action == ROLLBACK
    assert v.reason.startswith("error rate above the limit: challenger chall-2: 3/10 errors (30.0%, 95% CI 10.8%-60.3%)")
    assert "champion champ-1: 0/90 (0.0%)" in v.reason and "limit 5.0%" in v.reason
    assert v.diff[1] > 0


def test_errors_on_both_sides_are_not_the_challengers_fault() -> None:
    v = decide(calls(A, 90, errors=27) + calls(B, 10, errors=3))
    assert v.action != ROLLBACK  # over the limit, but not above the champion


def test_a_healthy_challenger_waits_for_min_requests_then_advances() -> None:
    assert decide(calls(A, 90) + calls(B, 10), max_error_rate=0.2).action == WAIT
    v = decide(calls(A, 180) + calls(B, 20), max_error_rate=0.2)
    assert v.action == ADVANCE and v.reason.startswith("within the limits")
    assert v.diff[2] <= 0.2


def test_too_little_evidence_waits_then_rolls_back_at_max_wait() -> None:
    traffic = calls(A, 180) + calls(B, 20)  # 0/20 errors: upper bound 16% > 5%
    assert decide(traffic).action == WAIT
    v = decide(traffic, waited_s=61, max_wait_s=60)
    assert v.action == ROLLBACK and v.reason.startswith("undecided after max_wait_s 60 s")
    few = decide(calls(A, 50) + calls(B, 3), waited_s=61, max_wait_s=60)
    assert "(fewer than min_requests 20)" in few.reason


def test_a_slow_challenger_is_rolled_back_on_its_p95() -> None:
    v = decide(calls(A, 200, latency=100) + calls(B, 60, latency=400), max_error_rate=0.2)
    assert v.action == ROLLBACK and v.reason.startswith("p95 latency above 1.5x the champion's: challenger 40")
    assert decide(calls(A, 200, latency=100) + calls(B, 60, latency=120), max_error_rate=0.2).action == ADVANCE


def test_no_champion_calls_judges_the_challenger_alone() -> None:
    v = decide(calls(B, 10, errors=5))
    assert v.action == ROLLBACK and all(math.isnan(x) for x in v.diff)
    assert decide([]).action == WAIT


def test_newcombe_unpaired_matches_the_published_example() -> None:
    # Newcombe (1998), Table II example (56/70 vs 48/80): difference 0.2, method 10 interval 0.0524 to 0.3339
    from llmops_nb.evaluation.statistics import proportion

    diff, low, high = newcombe_unpaired(proportion(56, 70), proportion(48, 80))
    assert diff == pytest.approx(0.2)
    assert (low, high) == (pytest.approx(0.0524, abs=5e-4), pytest.approx(0.3339, abs=5e-4))
