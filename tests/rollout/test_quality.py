"""The quality check of a canary step (issue 33, ``rollout.quality``): a pairwise judge on the fake.

The fake workspace serves the champion (version 1) behind an endpoint whose AI-gateway inference
table is on; a load generator sends distinct questions all along. The judge is an external-model
endpoint on the fake provider: its ``reply`` reads the judge prompt and prefers the answer naming
the champion (the fake responder puts the entity's name in each answer), or says T.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.config.project import load_project_config
from llmops_nb.config.rollout import QualitySample, RolloutConfig
from llmops_nb.endpoints.apply import deploy
from llmops_nb.errors import ConfigError
from llmops_nb.rollout.canary import Canary, Tracking
from llmops_nb.rollout.quality import QualityCheck, judge_prompt, verdict_of
from llmops_nb.rollout.state import PROMOTED, ROLLED_BACK, RolloutStore
from llmops_nb.rollout.traffic import UsageRecords
from llmops_nb.testing import FakeWorkspace, fake_workspace
from llmops_nb.testing.load import LoadGenerator
from llmops_nb.testing.provider import FakeProvider, fake_provider

ROOT = Path(__file__).resolve().parents[2]
NAME, JUDGE = "quality-chat", "judge"
MODEL = "smollm2-135m-instruct"
CHAMPION, CHALLENGER = f"{MODEL}-1", f"{MODEL}-2"
TABLE = {"catalog_name": "main", "schema_name": "canary", "enabled": True}


def endpoint(version: str) -> EndpointConfig:
    return EndpointConfig.model_validate(
        {
            "name": NAME,
            "served_entities": [{"entity_name": MODEL, "entity_version": version, "workload_size": "Small"}],
            "ai_gateway": {"usage_tracking_config": {"enabled": True}, "inference_table_config": TABLE},
        }
    )


def judge_body(provider: FakeProvider) -> dict[str, Any]:
    openai = {"openai_api_key": "{{secrets/judge/openai}}", "openai_api_base": provider.base_url}
    return {
        "name": JUDGE,
        "served_entities": [
            {
                "name": JUDGE,
                "external_model": {"name": "gpt-judge", "provider": "openai", "task": "llm/v1/chat", "openai_config": openai},
            }
        ],
    }


def prefers_champion(body: dict[str, Any]) -> str:
    """The letter of the answer that names the champion entity."""
    text = body["messages"][-1]["content"]
    a = text.split("Answer A:", 1)[1].split("Answer B:", 1)[0]
    return "A" if f"[{CHAMPION}]" in a else "B"


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeWorkspace, FakeProvider]]:
    """The fake serving the champion alone with its inference table, and the judge endpoint."""
    monkeypatch.setenv("LLMOPS_SECRET_JUDGE_OPENAI", "sk-" + "judge-quality-0123456789")
    with fake_provider() as provider, fake_workspace(tmp_path / "ws", ready_seconds=0.1) as workspace:
        w = workspace.client()
        deploy(w, endpoint("1"), timeout=60, poll_interval=0.1, progress=False)
        deploy(w, EndpointConfig.model_validate(judge_body(provider)), timeout=60, poll_interval=0.1, progress=False)
        yield workspace, provider


def _canary(
    workspace: FakeWorkspace, tmp_path: Path, tracking: Tracking | None = None, *, judge: str = JUDGE, databricks: bool = False
) -> tuple[Canary, list[str]]:
    fast = {"strategy": "canary", "steps": [10, 50, 100], "min_requests": 15, "max_wait_s": 60, "interval_s": 0.2}
    rollout = RolloutConfig.model_validate({**fast, "max_error_rate": 0.25, "quality": {"requests": 12, "judge_endpoint": judge}})
    assert rollout.quality is not None
    w = workspace.client()
    where: dict[str, Any] = {"home": None, "warehouse_id": "wh-1"} if databricks else {"home": workspace.home}
    quality = QualityCheck(w, rollout.quality, confidence=rollout.confidence, checks=2, **where)
    lines: list[str] = []
    canary = Canary(w, endpoint("2"), rollout, store=RolloutStore(tmp_path / "rollouts"), reader=UsageRecords(workspace.home),
                    tracking=tracking, poll_interval=0.1, progress=False, log=lines.append, quality=quality)  # fmt: skip
    return canary, lines


def _run(workspace: FakeWorkspace, tmp_path: Path, tracking: Tracking | None = None, **where: Any):  # noqa: ANN202
    canary, lines = _canary(workspace, tmp_path, tracking, **where)
    with LoadGenerator(workspace.host, workspace.token, NAME, prompt=lambda n: f"question {n % 40}") as load:
        outcome = canary.deploy()
    assert load.dropped == []
    return outcome, lines


def _routes(workspace: FakeWorkspace) -> list[dict[str, int]]:
    out = []
    for r in workspace.write_calls():
        if r["method"] == "PUT" and r["path"] == f"/api/2.0/serving-endpoints/{NAME}/config":
            routes = (r["body"].get("traffic_config") or {}).get("routes")
            names = [e.get("name") or f"{e['entity_name']}-{e['entity_version']}" for e in r["body"]["served_entities"]]
            out.append(
                {x["served_entity_name"]: x["traffic_percentage"] for x in routes} if routes else dict.fromkeys(names, 100)
            )
    return out


def test_a_judge_preferring_the_champion_rolls_the_challenger_back_at_step_1(ws, tmp_path: Path) -> None:  # noqa: ANN001
    import mlflow

    workspace, provider = ws
    provider.reply = prefers_champion
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    outcome, lines = _run(workspace, tmp_path, Tracking(uri, uri, "rollouts"))
    assert outcome.state == ROLLED_BACK, outcome.reason
    assert outcome.record is not None and outcome.record.step == 0
    # 12 sampled requests, each judged in both orders, every one a loss: p = 0.5 ** 12
    assert re.fullmatch(
        r"step 1 \(10%\): quality: the challenger lost 12 of 12 decided comparisons to the champion, p = 0\.000244 "
        r"\(limit 0\.025; won 0, tied 0 of 12 live requests, judge judge, both orders\)",
        outcome.record.reason,
    ), outcome.record.reason
    assert lines[-1] == f"rolled back {NAME} to {CHAMPION}: {outcome.record.reason}"
    assert _routes(workspace) == [{CHAMPION: 90, CHALLENGER: 10}, {CHAMPION: 100}]
    judged = [r["body"] for r in provider.requests]
    assert len(judged) == 24  # both orders of each of the 12
    assert sum(f"Answer A:\n[{CHAMPION}]" in b["messages"][-1]["content"] for b in judged) == 12
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(str(outcome.record.run_id))
    assert run.info.status == "FAILED" and run.data.tags["rollout_reason"] == outcome.record.reason
    assert (run.data.metrics["quality_losses"], run.data.metrics["quality_wins"], run.data.metrics["quality_ties"]) == (12, 0, 0)
    assert run.data.metrics["quality_p_value"] == pytest.approx(0.5**12)
    assert run.data.params["quality_judge_endpoint"] == JUDGE


@pytest.mark.parametrize("says", ["T", "A"])  # A: a judge that always prefers the first answer (position bias)
def test_a_judge_with_no_preference_lets_an_equal_challenger_reach_100_percent(ws, tmp_path: Path, says: str) -> None:  # noqa: ANN001
    workspace, provider = ws
    provider.reply = lambda body: says
    outcome, lines = _run(workspace, tmp_path)
    assert outcome.state == PROMOTED, outcome.reason
    assert _routes(workspace) == [{CHAMPION: 90, CHALLENGER: 10}, {CHAMPION: 50, CHALLENGER: 50}, {CHALLENGER: 100}]
    said = [x for x in lines if "quality:" in x]
    assert [x.split(":")[0] for x in said] == ["step 1 (10%)", "step 2 (50%)"]
    assert all("won 0, lost 0, tied 12 of 12 live requests" in x and "p = 1 for a loss" in x for x in said), said


def test_on_databricks_the_sample_is_read_through_the_sql_warehouse(ws, tmp_path: Path) -> None:  # noqa: ANN001
    workspace, provider = ws
    provider.reply = prefers_champion
    outcome, _ = _run(workspace, tmp_path, databricks=True)  # the replay's SQL on the fake's statement API
    assert outcome.state == ROLLED_BACK and outcome.record is not None
    assert "quality: the challenger lost 12 of 12 decided comparisons to the champion, p = 0.000244" in outcome.record.reason
    statements = [r for r in workspace.write_calls() if r["path"].rstrip("/") == "/api/2.0/sql/statements"]
    assert statements and all(r["body"]["warehouse_id"] == "wh-1" for r in statements)


def test_a_judge_that_never_answers_rolls_back_and_a_missing_judge_is_refused_first(ws, tmp_path: Path) -> None:  # noqa: ANN001
    workspace, provider = ws
    provider.fail_status = 401  # the provider refuses the key: a 400 EXTERNAL_MODEL_ERROR, not retried
    outcome, _ = _run(workspace, tmp_path)
    assert outcome.state == ROLLED_BACK and outcome.record is not None
    assert re.match(
        r"step 1 \(10%\): quality check not possible: the judge endpoint judge answered none of 24", outcome.record.reason
    )
    assert _routes(workspace) == [{CHAMPION: 90, CHALLENGER: 10}, {CHAMPION: 100}]
    writes = len(workspace.write_calls())
    canary, _ = _canary(workspace, tmp_path, judge="no-such-judge")
    with pytest.raises(ConfigError, match=r"^rollout.quality.judge_endpoint: 'no-such-judge' is not allowed; an existing chat"):
        canary.deploy()
    assert len(workspace.write_calls()) == writes


def test_few_distinct_requests_give_a_small_sample_without_waiting_out_the_step(ws) -> None:  # noqa: ANN001
    import time

    from llmops_nb.chat.client import chat

    workspace, provider = ws
    provider.reply = lambda body: "T"
    w = workspace.client()
    since = time.time()
    for n in range(12):  # 12 requests, 3 distinct
        chat(w, NAME, f"question {n % 3}", max_tokens=8)
    quality = QualityCheck(w, QualitySample(requests=12, judge_endpoint=JUDGE), confidence=0.95, checks=1, home=workspace.home)
    found = quality.check(NAME, CHAMPION, CHAMPION, since, until=since + 120, interval_s=0.2)
    assert (found.sampled, found.ties, found.wins, found.losses, found.p_value) == (3, 3, 0, 0, 1.0)
    assert time.time() - since < 30  # not the 120 s the step could wait
    assert len(provider.requests) == 6


def test_the_judge_verdict_and_prompt() -> None:
    texts = ("A", " b.", "Answer B is better", "tie", "T", "It's a tie", "Both are equally good", "neither", "")
    assert [verdict_of(t) for t in texts] == ["A", "B", "B", "T", "T", "T", "T", None, None]
    messages = judge_prompt([{"role": "user", "content": "q"}], "one", "two")
    assert messages[0]["role"] == "system" and "Answer A:\none\n\nAnswer B:\ntwo" in messages[1]["content"]


def test_bad_quality_config_is_one_line_and_writes_nothing(fake_workspace: FakeWorkspace, tmp_path: Path) -> None:
    base = yaml.safe_load((ROOT / "configs" / "local.yml").read_text())
    name = base["endpoint"]["name"]
    cases = [
        ({"requests": 12}, True, "rollout.quality.judge_endpoint: None is not allowed;"),
        ({"requests": 0, "judge_endpoint": JUDGE}, True, "rollout.quality.requests: 0 is not allowed;"),
        ({"requests": 1001, "judge_endpoint": JUDGE}, True, "rollout.quality.requests: 1001 is not allowed;"),
        ({"judge_endpoint": name}, True, f"rollout.quality.judge_endpoint: '{name}' is not allowed; another chat endpoint"),
        ({"judge_endpoint": JUDGE}, False, "endpoint.ai_gateway.inference_table_config.enabled: None is not allowed;"),
    ]
    for quality, table, message in cases:
        project = yaml.safe_load((ROOT / "configs" / "local.yml").read_text())
        if table:
            project["endpoint"]["ai_gateway"]["inference_table_config"] = TABLE
        project["rollout"] = {"strategy": "canary", "quality": quality}
        path = tmp_path / "p.yml"
        path.write_text(yaml.safe_dump(project))
        with pytest.raises(ConfigError) as caught:
            load_project_config(path)
        assert str(caught.value).startswith(message) and "\n" not in str(caught.value), str(caught.value)
    assert fake_workspace.write_calls() == []
    good = {**base, "rollout": {"strategy": "canary", "quality": {"requests": 3, "judge_endpoint": JUDGE}}}
    good["endpoint"]["ai_gateway"]["inference_table_config"] = TABLE
    path.write_text(yaml.safe_dump(good))
    assert load_project_config(path).rollout.quality == QualitySample(requests=3, judge_endpoint=JUDGE)
