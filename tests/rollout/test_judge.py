"""A step's decision on known traffic: each rule of rollout/judge.py, and the figures it says."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmops_nb.config.rollout import RolloutConfig
from llmops_nb.rollout.judge import (
    ADVANCE,
    ROLLBACK,
    WAIT,
    Verdict,
    error_evidence,
    judge,
    looks,
    newcombe_unpaired,
    recent_spans,
    watch,
)
from llmops_nb.rollout.traffic import Call

A, B = "champ-1", "chall-2"


def calls(entity: str, n: int, errors: int = 0, latency: float = 100.0) -> list[Call]:
    return [Call(float(i), entity, 500 if i < errors else 200, latency + i % 7) for i in range(n)]


def decide(traffic: list[Call], **kw: float) -> Verdict:
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


# ---------------------------------------------------------------- evidence and repeated looks

FAST = RolloutConfig(strategy="canary", steps=[10, 50, 100], max_wait_s=600, interval_s=0.5)  # bench/rollout.py's


def test_looks_are_fixed_by_the_config() -> None:
    assert recent_spans(1) == [] and recent_spans(2) == [1] and recent_spans(5) == [1, 2, 4]
    # the step's window and the last 1, 2, ..., 1024 reads, at 600 / 0.5 reads, steps 10 and 50 watched
    assert looks(FAST) == (1 + 11) * 1200 * 2
    assert looks(RolloutConfig(strategy="canary")) == (1 + 6) * 60 * 2  # defaults: 600 s / 10 s
    assert looks(RolloutConfig(strategy="canary", steps=[100], max_wait_s=1, interval_s=5)) == 1


def first_rollback(n_looks: int, min_requests: int = 10**6) -> int:
    """The challenger call at which a 30% failing challenger (every call i with floor(0.3 i) >
    floor(0.3 (i - 1)) fails; champion 9 calls per challenger call, none failing) is rolled back."""
    for n in range(1, 200):
        errors = math.floor(0.3 * n)
        traffic = calls(A, 9 * n) + [Call(float(i), B, 500 if i < errors else 200, 100.0) for i in range(n)]
        if decide(traffic, looks=n_looks, min_requests=min_requests).action == ROLLBACK:
            return n
    raise AssertionError("never rolled back")


def test_a_challenger_failing_30_percent_is_rolled_back_on_evidence_not_min_requests() -> None:
    # one look at 5%: 3 errors in 10 calls (exact binomial p = 0.0115 <= 0.025, Fisher's p = 0.00074)
    assert first_rollback(1) == 10
    # spread over the default config's 840 looks: 9 in 30; over bench/rollout.py's 28,800 at 0.5 s: 12 in 40
    assert first_rollback(looks(RolloutConfig(strategy="canary"))) == 30
    assert first_rollback(looks(FAST)) == 40
    assert first_rollback(looks(FAST), min_requests=20) == 40  # min_requests gates the promotion only


def test_a_challenger_failing_after_a_healthy_start_is_caught_by_a_recent_window() -> None:
    # 60 reads of 1 s, 15 challenger calls a read: 50 healthy, then 10 failing 30% (45 of its last 150)
    ch = [Call(i / 15, B, 500 if i >= 750 and i % 10 < 3 else 200, 100.0) for i in range(900)]
    traffic = ch + [Call(i / 135, A, 200, 100.0) for i in range(8100)]
    n_looks = looks(RolloutConfig(strategy="canary", max_wait_s=600, interval_s=1))
    whole = judge(traffic, challenger=B, champion=A, min_requests=10**6, max_error_rate=0.05, max_latency_p95_ratio=1.5,
                  looks=n_looks)  # fmt: skip
    assert whole.action == WAIT  # 45/900 over the whole step: 5.0%, not above the limit
    v = watch(traffic, read=60, interval_s=1.0, challenger=B, champion=A, min_requests=10**6, max_error_rate=0.05,
              max_latency_p95_ratio=1.5, looks=n_looks)  # fmt: skip
    assert v.action == ROLLBACK and v.reason.startswith("over the last 4 s, error rate above the limit")


def test_one_failed_call_is_no_evidence() -> None:
    # Wilson's two-sided 95% lower bound of 1/1 is 20.7% > 5%: a bound alone would roll back here
    v = decide(calls(A, 90) + calls(B, 1, errors=1))
    assert v.action == WAIT
    assert v.evidence is not None and v.evidence.p_limit == pytest.approx(0.05)
    assert "one-sided exact p 0.05 over the limit" in v.reason


def rollbacks(p_challenger: float, p_champion: float, n_looks: int, *, rollouts: int = 300, reads: int = 30) -> float:
    """Seeded simulation of the watch as canary.py runs it: per read 15 challenger and 135
    champion calls; each read judges the step's window and its recent windows. The share of
    rollouts rolled back on errors at some look."""
    rng = np.random.default_rng(33)
    rolled = 0
    for _ in range(rollouts):
        ch = rng.random((reads, 15)) < p_challenger
        cp = rng.random((reads, 135)) < p_champion
        for r in range(1, reads + 1):
            windows = [(0, r)] + [(r - span, r) for span in recent_spans(r)]  # as judge.watch
            if any(
                error_evidence(
                    int(ch[a:b].sum()), ch[a:b].size, int(cp[a:b].sum()), cp[a:b].size,
                    max_error_rate=0.05, alpha=0.05 / n_looks / 2,
                ).rollback
                for a, b in windows
            ):  # fmt: skip
                rolled += 1
                break
    return rolled / rollouts


@pytest.mark.parametrize(("p_challenger", "p_champion"), [(0.05, 0.05), (0.05, 0.0)])
def test_a_challenger_within_the_limit_is_not_rolled_back_over_many_looks(p_challenger: float, p_champion: float) -> None:
    """At the limit (equal to the champion, or worse than a perfect one): the worst case the
    rule must hold. Each look at alpha rolls back more often than alpha over 30 reads; spread
    over the looks it stays within alpha."""
    assert rollbacks(p_challenger, p_champion, n_looks=1) > 0.05
    assert rollbacks(p_challenger, p_champion, n_looks=(1 + len(recent_spans(30))) * 30) <= 0.05


def test_a_challenger_failing_30_percent_is_caught_in_the_same_simulation() -> None:
    assert rollbacks(0.3, 0.0, n_looks=(1 + len(recent_spans(30))) * 30, rollouts=50, reads=6) == 1.0
