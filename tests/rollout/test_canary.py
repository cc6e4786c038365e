"""Canary rollouts on the fake workspace with real traffic (issue 33).

A load generator thread in the test sends chat requests over real HTTP all along; the rollout
reads the fake's usage records per served entity and moves traffic with real ``PUT .../config``
calls through the real databricks-sdk. Fast settings: small ``min_requests``, reads every 0.2 s.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.config.rollout import RolloutConfig
from llmops_nb.endpoints.apply import deploy
from llmops_nb.endpoints.ops import get_endpoint
from llmops_nb.rollout.canary import Canary, Tracking
from llmops_nb.rollout.state import IN_PROGRESS, PROMOTED, ROLLED_BACK, RolloutStore
from llmops_nb.rollout.traffic import UsageRecords
from llmops_nb.testing.load import LoadGenerator

ROOT = Path(__file__).resolve().parents[2]
NAME = "canary-chat"
MODEL = "smollm2-135m-instruct"
CHAMPION, CHALLENGER = f"{MODEL}-1", f"{MODEL}-2"


def endpoint(version: str) -> EndpointConfig:
    return EndpointConfig.model_validate(
        {
            "name": NAME,
            "served_entities": [{"entity_name": MODEL, "entity_version": version, "workload_size": "Small"}],
            "ai_gateway": {"usage_tracking_config": {"enabled": True}},
            "tags": {"project": "llmops-nb"},
        }
    )


def fast(**changes: Any) -> RolloutConfig:
    base = {"strategy": "canary", "steps": [10, 50, 100], "min_requests": 15, "max_wait_s": 60, "interval_s": 0.2}
    return RolloutConfig.model_validate({**base, **changes})


@pytest.fixture
def ws(fake_workspace, tmp_path: Path):  # noqa: ANN001, ANN201
    """The fake with endpoint NAME serving version 1 (the champion) alone."""
    w = fake_workspace.client()
    deploy(w, endpoint("1"), timeout=60, poll_interval=0.1, progress=False)
    return fake_workspace


def _canary(ws, tmp_path: Path, version: str = "2", tracking: Tracking | None = None, **rollout: Any) -> Canary:  # noqa: ANN001
    lines: list[str] = []
    canary = Canary(
        ws.client(),
        endpoint(version),
        fast(**rollout),
        store=RolloutStore(tmp_path / "rollouts"),
        reader=UsageRecords(ws.home),
        tracking=tracking,
        poll_interval=0.1,
        progress=False,
        log=lines.append,
    )
    canary.lines = lines  # type: ignore[attr-defined]
    return canary


def _config_puts(ws) -> list[dict[str, Any]]:  # noqa: ANN001
    return [
        r["body"] for r in ws.write_calls() if r["method"] == "PUT" and r["path"] == f"/api/2.0/serving-endpoints/{NAME}/config"
    ]


def _routes(body: dict[str, Any]) -> dict[str, int]:
    routes = (body.get("traffic_config") or {}).get("routes")
    if routes is None:
        return {e["name"] if "name" in e else f"{e['entity_name']}-{e['entity_version']}": 100 for e in body["served_entities"]}
    return {r["served_entity_name"]: r["traffic_percentage"] for r in routes}


def _serving(ws) -> dict[str, int]:  # noqa: ANN001
    found = get_endpoint(ws.client(), NAME) or {}
    config = found["config"]
    routes = (config.get("traffic_config") or {}).get("routes") or []
    names = [e["name"] for e in config["served_entities"]]
    return {r["served_entity_name"]: r["traffic_percentage"] for r in routes} or dict.fromkeys(names, 100)


def test_a_challenger_failing_30_percent_is_rolled_back_at_the_first_step(ws, tmp_path: Path) -> None:  # noqa: ANN001
    ws.set_faults(entity_error_rate={CHALLENGER: 0.3}, seed=7)
    canary = _canary(ws, tmp_path, max_error_rate=0.05)
    with LoadGenerator(ws.host, ws.token, NAME) as load:
        outcome = canary.deploy()
        done = time.time()  # READY on the champion alone: the router has switched
        time.sleep(1.0)
    assert outcome.state == ROLLED_BACK
    assert outcome.record is not None and outcome.record.step == 0
    assert re.search(r"step 1 \(10%\): (over the last 0.4 s, )?error rate above the limit: challenger ", outcome.reason)
    assert canary.lines[-1].startswith(f"rolled back {NAME} to {CHAMPION}: step 1 (10%)")  # type: ignore[attr-defined]
    # the exact config updates: the 90/10 split, then the champion alone (the challenger removed)
    assert [_routes(b) for b in _config_puts(ws)] == [{CHAMPION: 90, CHALLENGER: 10}, {CHAMPION: 100}]
    assert _serving(ws) == {CHAMPION: 100}
    # no request dropped by the rollout; every failure is the challenger's own answer
    assert load.dropped == []
    failures = [a for a in load.answers if a.status != 200]
    assert failures and all(a.status == 500 and CHALLENGER in a.message for a in failures), failures[:3]
    assert {a.entity for a in load.answers if a.status == 200} <= {CHAMPION, CHALLENGER}
    # the answers after the rollback come from the champion
    later = [a for a in load.answers if a.at > done + 0.2]
    assert later and {a.entity for a in later} == {CHAMPION}
    status = RolloutStore(tmp_path / "rollouts").latest(NAME)
    assert status is not None and status.status()["state"] == ROLLED_BACK
    assert {e["role"] for e in status.status()["entities"]} == {"champion", "challenger"}


def test_an_equal_challenger_reaches_100_percent_through_each_step(ws, tmp_path: Path) -> None:  # noqa: ANN001
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking = Tracking(uri, uri, "rollouts")
    canary = _canary(ws, tmp_path, tracking=tracking, max_error_rate=0.25)
    with LoadGenerator(ws.host, ws.token, NAME) as load:
        outcome = canary.deploy()
    assert outcome.state == PROMOTED, outcome.reason
    assert [_routes(b) for b in _config_puts(ws)] == [
        {CHAMPION: 90, CHALLENGER: 10},
        {CHAMPION: 50, CHALLENGER: 50},
        {CHALLENGER: 100},
    ]
    assert _serving(ws) == {CHALLENGER: 100}
    assert load.dropped == [] and all(a.status == 200 for a in load.answers)
    store = RolloutStore(tmp_path / "rollouts")
    record = store.latest(NAME)
    assert record is not None and record.state == PROMOTED and record.step == 2
    assert {p["percent"] for p in record.points} == {10, 50}
    # every applied config kept, with its hash: the first (v1), the two splits, the promotion
    applied = store.applied(NAME)
    assert [a.source.split(": ")[-1] for a in applied[-3:]] == ["step 10%", "step 50%", "promote"]
    assert applied[-1].hash == endpoint("2").config_hash()
    # the MLflow run: step metrics, the configs, the plot
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(str(record.run_id))
    assert run.info.status == "FINISHED" and run.data.tags["rollout_state"] == PROMOTED
    history = client.get_metric_history(run.info.run_id, "step_percent")
    assert sorted({m.value for m in history}) == [10.0, 50.0]
    files = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"rollout.png", "rollout.json", "applied_configs"} <= files
    configs = [f.path for f in client.list_artifacts(run.info.run_id, "applied_configs")]
    assert len(configs) == 3 and configs[-1].endswith(f"{applied[-1].hash}.json")


def test_a_first_deploy_creates_the_endpoint_as_replace_does_and_says_so(fake_workspace, tmp_path: Path) -> None:  # noqa: ANN001
    canary = _canary(fake_workspace, tmp_path, version="1")
    outcome = canary.deploy()
    assert outcome.state == "created" and outcome.result.action == "created"
    assert canary.lines == [f"first deploy of {NAME}: no champion serving, created as replace does"]  # type: ignore[attr-defined]
    assert [_routes(b) for b in _config_puts(fake_workspace)] == []  # one POST, no step
    assert _serving(fake_workspace) == {CHAMPION: 100}


CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_canary import endpoint, fast
from llmops_nb.rollout.canary import Canary
from llmops_nb.rollout.state import RolloutStore
from llmops_nb.rollout.traffic import UsageRecords
from llmops_nb.testing.load import LoadGenerator
from llmops_nb.testing import FakeWorkspace
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
w = WorkspaceClient(config=Config(host={host!r}, token={token!r}, auth_type="pat"))
Canary(w, endpoint("2"), fast(max_error_rate=0.25, max_wait_s=600), store=RolloutStore(Path({store!r})),
       reader=UsageRecords(Path({home!r})), poll_interval=0.1, progress=False).deploy()
"""


def test_a_rollout_killed_at_step_2_resumes_and_converges_on_the_next_deploy(ws, tmp_path: Path) -> None:  # noqa: ANN001
    store_dir = tmp_path / "rollouts"
    code = CHILD.format(tests=str(Path(__file__).parent), host=ws.host, token=ws.token, store=str(store_dir), home=str(ws.home))
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, start_new_session=True)
    store = RolloutStore(store_dir)
    try:
        deadline = time.monotonic() + 120

        def until(done) -> None:  # noqa: ANN001
            while not done():
                assert child.poll() is None and time.monotonic() < deadline, "the child ended before step 2"
                time.sleep(0.05)

        with LoadGenerator(ws.host, ws.token, NAME):  # traffic until step 1 passes
            until(lambda: (r := store.latest(NAME)) is not None and r.step == 1)
        # the child watches step 2 (50/50) with no traffic: it waits (max_wait_s 600) and is killed
        until(lambda: (r := store.latest(NAME)) is not None and any(p["percent"] == 50 for p in r.points))
        assert _serving(ws) == {CHAMPION: 50, CHALLENGER: 50}
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    record = store.latest(NAME)
    assert record is not None and record.state == IN_PROGRESS and record.step == 1
    # `rollout status --json` tells which
    env = {**os.environ, "LLMOPS_HOME": str(tmp_path)}
    shown = subprocess.run(
        [sys.executable, "-m", "llmops_nb.cli.main", "rollout", "status", NAME, "--json"],
        env=env, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert (status["state"], status["step"], status["percent"], status["interrupted"]) == ("in_progress", 2, 50, True)
    assert {e["name"] for e in status["entities"]} == {CHAMPION, CHALLENGER}
    # the next deploy of the same config resumes at step 2 and converges
    canary = _canary(ws, tmp_path, max_error_rate=0.25)
    with LoadGenerator(ws.host, ws.token, NAME) as load:
        outcome = canary.deploy()
    assert canary.lines[0].startswith(f"{NAME}: resuming rollout {record.id} of {CHALLENGER} at step 2 (50%)")  # type: ignore[attr-defined]
    assert outcome.state == PROMOTED and _serving(ws) == {CHALLENGER: 100}
    assert load.dropped == []
    assert [_routes(b) for b in _config_puts(ws)][-1] == {CHALLENGER: 100}


def test_a_new_config_after_a_kill_rolls_the_interrupted_rollout_back_first(ws, tmp_path: Path) -> None:  # noqa: ANN001
    from llmops_nb.rollout.canary import step_config
    from llmops_nb.rollout.state import RolloutRecord

    w = ws.client()
    champion = {"entity_name": MODEL, "entity_version": "1", "workload_size": "Small", "name": CHAMPION}
    deploy(w, step_config(endpoint("2"), champion, 10), timeout=60, poll_interval=0.1, progress=False)
    store = RolloutStore(tmp_path / "rollouts")
    store.save(
        RolloutRecord(
            id="interrupted1",
            endpoint=NAME,
            state=IN_PROGRESS,
            steps=[10, 50, 100],
            step=0,
            champion=CHAMPION,
            challenger=CHALLENGER,
            champion_config=endpoint("1").to_databricks_body(),
            challenger_config=endpoint("2").to_databricks_body(),
            challenger_hash=endpoint("2").config_hash(),
        )
    )
    canary = _canary(ws, tmp_path, version="3", max_error_rate=0.25)
    with LoadGenerator(ws.host, ws.token, NAME):
        outcome = canary.deploy()
    assert canary.lines[0] == (  # type: ignore[attr-defined]
        f"rolled back {NAME} to {CHAMPION}: superseded by a new deploy (config {endpoint('3').config_hash()})"
    )
    assert outcome.state == PROMOTED and _serving(ws) == {f"{MODEL}-3": 100}
    assert [_routes(b) for b in _config_puts(ws)][1:] == [
        {CHAMPION: 100},
        {CHAMPION: 90, f"{MODEL}-3": 10},
        {CHAMPION: 50, f"{MODEL}-3": 50},
        {f"{MODEL}-3": 100},
    ]


def test_an_unowned_split_is_refused_with_one_line_and_nothing_written(ws, tmp_path: Path) -> None:  # noqa: ANN001
    from llmops_nb.errors import EndpointError
    from llmops_nb.rollout.canary import step_config

    champion = {"entity_name": MODEL, "entity_version": "1", "workload_size": "Small", "name": CHAMPION}
    deploy(ws.client(), step_config(endpoint("2"), champion, 30), timeout=60, poll_interval=0.1, progress=False)
    before = len(ws.write_calls())
    with pytest.raises(EndpointError, match=r"traffic is split \(.*-1 70%, .*-2 30%\) and no rollout of this project owns"):
        _canary(ws, tmp_path, version="3").deploy()
    assert len(ws.write_calls()) == before
