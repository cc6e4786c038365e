"""The decision rule on constructed scores: thresholds at the bound, non-inferiority, superiority, too few rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llmops_nb.config.project import DecisionConfig, load_project_config
from llmops_nb.errors import ConfigError
from llmops_nb.evaluation import statistics as st
from llmops_nb.evaluation.decision import INCONCLUSIVE, KEEP, PROMOTE, check_threshold, decide, decision_record, write_decision


def _scored(**columns: list[float]) -> dict[str, dict[str, np.ndarray]]:
    return {name: {"contains_match": np.asarray(v, dtype=float), "error": np.zeros(len(v))} for name, v in columns.items()}


def _decide(cols: dict, rule: DecisionConfig, thresholds: dict | None = None, baseline: str | None = "champion"):  # noqa: ANN202
    estimates = {c: st.summarize(v, rule.confidence) for c, v in cols.items()}
    comparisons = st.compare_candidates(cols, baseline, confidence=rule.confidence) if baseline in cols else []
    rows = len(next(iter(cols.values()))["contains_match"])
    challengers = [c for c in cols if c != baseline]
    return decide(
        estimates, comparisons, rule=rule, thresholds=thresholds or {}, challengers=challengers, baseline=baseline, rows=rows
    )


RNG = np.random.default_rng(30)
BASE = (RNG.random(52) < 0.6).astype(float).tolist()


def test_two_identical_candidates_are_never_promoted_under_superiority() -> None:
    d = _decide(_scored(champion=BASE, new=BASE), DecisionConfig(mode="superiority", margin=0.0))
    assert d.action == KEEP and d.winner is None


def test_identical_candidates_under_non_inferiority_are_kept_out() -> None:
    d = _decide(_scored(champion=BASE, new=BASE), DecisionConfig())
    assert d.action == KEEP and "on every one of the 52 rows" in d.reason


def test_a_candidate_wrong_half_the_time_is_kept_out_with_a_small_p_value() -> None:
    half_wrong = [0.0 if i % 2 else b for i, b in enumerate(BASE)]
    d = _decide(_scored(champion=BASE, new=half_wrong), DecisionConfig())
    assert d.action == KEEP
    assert "worse than champion" in d.reason
    diff = st.compare_candidates(_scored(champion=BASE, new=half_wrong), "champion")[0]
    assert diff.p_value < 0.05


def test_a_clearly_better_candidate_wins_and_the_best_of_two_is_the_winner() -> None:
    better = [1.0] * 52
    good = [1.0 if i % 4 else b for i, b in enumerate(BASE)]
    d = _decide(_scored(champion=BASE, good=good, new=better), DecisionConfig(mode="superiority", margin=0.05))
    assert d.action == PROMOTE and d.winner == "new"
    assert {v.candidate for v in d.verdicts} == {"good", "new"}


def test_a_small_difference_is_inconclusive_and_says_how_many_rows_would_resolve_it() -> None:
    slightly = [1.0 if i in (1, 3, 5) else b for i, b in enumerate(BASE)]
    d = _decide(_scored(champion=BASE, new=slightly), DecisionConfig(mode="superiority", margin=0.0))
    assert d.action == INCONCLUSIVE
    assert d.rows_needed is not None and d.rows_needed > 52
    assert f"About {d.rows_needed} rows" in d.paragraph()


def test_five_rows_never_decide_and_thresholds_hold_at_the_bound() -> None:
    d = _decide(_scored(new=[1.0] * 5), DecisionConfig(), {"contains_match": 0.5}, baseline=None)
    assert d.action == INCONCLUSIVE and "5 rows are too few" in d.reason and d.rows_needed == 6
    # 31/52 = 0.596 passes 0.55 at the point estimate but not at Wilson's lower bound (0.46)
    cols = _scored(new=[1.0] * 31 + [0.0] * 21)
    assert _decide(cols, DecisionConfig(), {"contains_match": 0.55}, baseline=None).action == INCONCLUSIVE
    assert _decide(cols, DecisionConfig(), {"contains_match": 0.45}, baseline=None).action == PROMOTE
    assert _decide(cols, DecisionConfig(), {"contains_match": 0.8}, baseline=None).action == KEEP


def test_check_threshold_verdicts_for_upper_and_lower_bounds() -> None:
    e = st.Estimate(900.0, 800.0, 1000.0, 52, "order statistics")
    assert check_threshold("new", "latency_p95_ms", 1100, e).verdict == "pass"
    assert check_threshold("new", "latency_p95_ms", 950, e).verdict == "unsure"
    assert check_threshold("new", "latency_p95_ms", 700, e).verdict == "fail"
    assert check_threshold("new", "rows", 10, 52.0).verdict == "pass"  # a figure without an interval
    assert check_threshold("new", "judge/mean", 0.5, None).verdict == "fail"


def test_other_rows_never_promote() -> None:
    cols = _scored(new=[1.0] * 52)
    estimates = {"new": st.summarize(cols["new"])}
    d = decide(
        estimates,
        [],
        rule=DecisionConfig(),
        thresholds={},
        challengers=["new"],
        baseline="champion",
        rows=52,
        rows_differ="other rows",
    )
    assert d.action == INCONCLUSIVE and "other rows" in d.reason


def test_decision_json_has_the_issue_shape(tmp_path: Path) -> None:
    cols = _scored(champion=BASE, new=BASE)
    estimates = {c: st.summarize(v) for c, v in cols.items()}
    comparisons = st.compare_candidates(cols, "champion")
    d = _decide(cols, DecisionConfig())
    path = write_decision(decision_record(d, estimates, comparisons, cost_per_1k={"new": 0.5}), tmp_path)
    record = json.loads(path.read_text())
    assert record["rows"] == 52
    assert [c["name"] for c in record["candidates"]] == ["champion", "new"]
    assert set(record["candidates"][1]["metrics"]["contains_match"]) >= {"value", "ci_low", "ci_high"}
    assert record["candidates"][1]["cost_per_1k"] == 0.5
    assert set(record["comparisons"][0]) >= {"candidate", "baseline", "metric", "diff", "ci_low", "ci_high", "p_value"}
    assert set(record["decision"]) >= {"action", "winner", "reason"}


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ("{confidence: 1.2}", "evaluation.decision.confidence: 1.2"),
        ("{confidence: 0.5}", "evaluation.decision.confidence: 0.5"),
        ("{primary: contains_mach}", "evaluation.decision.primary: 'contains_mach'"),
        ("{mode: both}", "evaluation.decision.mode: 'both'"),
    ],
)
def test_a_bad_decision_section_is_one_line(tmp_path: Path, section: str, field: str) -> None:
    path = tmp_path / "p.yml"
    path.write_text(f"evaluation:\n  decision: {section}\nfoundation_endpoint: fm\n")
    with pytest.raises(ConfigError) as err:
        load_project_config(path)
    assert str(err.value).startswith(field) and "\n" not in str(err.value)


def test_the_old_margin_is_the_decisions_margin_unless_it_sets_one(tmp_path: Path) -> None:
    path = tmp_path / "p.yml"
    path.write_text("evaluation:\n  margin: 0.1\nfoundation_endpoint: fm\n")
    assert load_project_config(path).evaluation.decision.margin == 0.1
    path.write_text("evaluation:\n  margin: 0.1\n  decision: {margin: 0.03}\nfoundation_endpoint: fm\n")
    assert load_project_config(path).evaluation.decision.margin == 0.03
