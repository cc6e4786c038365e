"""The durable rollout store of the databricks backend (issue 33): the endpoint's tag names the
rollout's MLflow run, MLflow holds the record and every applied config, so a deploy or a CLI on
another machine (a fresh ``$LLMOPS_HOME``) resumes, reports or rolls back a rollout whose job
was killed at step 2.

Against the fake workspace with real traffic, traffic read from its inference table as on
Databricks, MLflow in a SQLite file the "machines" share (as a workspace's tracking server is);
the killed deploy is a child process stopped with SIGKILL, as the local interruption test does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_canary import CHALLENGER, CHAMPION, MODEL, NAME, _config_puts, _routes, _serving, fast
from test_inference_table import TABLE, endpoint

from llmops_nb.endpoints.apply import deploy
from llmops_nb.endpoints.normalize import ROLLOUT_RUN_TAG
from llmops_nb.endpoints.ops import get_endpoint
from llmops_nb.errors import EndpointError
from llmops_nb.rollout.canary import Canary, Tracking, step_config
from llmops_nb.rollout.inference_table import InferenceTableReader
from llmops_nb.rollout.mlflow_store import MlflowRolloutStore
from llmops_nb.rollout.state import IN_PROGRESS, PROMOTED, ROLLED_BACK, AppliedConfig
from llmops_nb.testing.load import LoadGenerator

pytest.importorskip("deltalake", reason="the local extra (deltalake) is required")

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "llmops-nb"  # what the CLI resolves with the checkout's configs/local.yml (no experiment set)


@pytest.fixture
def ws(fake_workspace):  # noqa: ANN001, ANN201
    """The fake with endpoint NAME serving version 1 alone, its rows landing 0.5 s late."""
    deploy(fake_workspace.client(), endpoint("1"), timeout=60, poll_interval=0.1, progress=False)
    fake_workspace.set_faults(inference_table_lag_s=0.5)
    return fake_workspace


def _uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _store(ws, tmp_path: Path) -> MlflowRolloutStore:  # noqa: ANN001
    """A store as a new machine has it: nothing in memory, only the endpoint and MLflow."""
    uri = _uri(tmp_path)
    return MlflowRolloutStore(ws.client(), uri, uri, EXPERIMENT)


def _canary(ws, tmp_path: Path, version: str = "2", **rollout: Any) -> Canary:  # noqa: ANN001
    lines: list[str] = []
    w, uri = ws.client(), _uri(tmp_path)
    canary = Canary(
        w,
        endpoint(version),
        fast(warehouse_id="wh-1", inference_table_lag_s=2.5, **rollout),
        store=_store(ws, tmp_path),
        reader=InferenceTableReader(w, "wh-1", TABLE, lag_s=2.5),
        tracking=Tracking(uri, uri, EXPERIMENT),
        poll_interval=0.1,
        progress=False,
        log=lines.append,
    )
    canary.lines = lines  # type: ignore[attr-defined]
    return canary


def _owner_tag(ws) -> str | None:  # noqa: ANN001
    found = get_endpoint(ws.client(), NAME) or {}
    return {t["key"]: t.get("value") for t in found.get("tags") or []}.get(ROLLOUT_RUN_TAG)


CHILD = """
import sys
sys.path.insert(0, {tests!r})
from test_mlflow_store import _canary

class Ws:
    host, token = {host!r}, {token!r}
    def client(self):
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.config import Config
        return WorkspaceClient(config=Config(host=self.host, token=self.token, auth_type="pat"))

from pathlib import Path
_canary(Ws(), Path({tmp!r}), max_error_rate=0.25, max_wait_s=600).deploy()
"""


def _killed_at_step_2(ws, tmp_path: Path) -> str:  # noqa: ANN001
    """Run the rollout in a child process until it watches step 2 (50/50), then SIGKILL it (the
    job's cluster gone); returns the rollout's run id."""
    tmp_path.mkdir(exist_ok=True)
    code = CHILD.format(tests=str(Path(__file__).parent), host=ws.host, token=ws.token, tmp=str(tmp_path))
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180

        def until(done) -> None:  # noqa: ANN001
            while not done():
                assert child.poll() is None and time.monotonic() < deadline, "the child ended before step 2"
                time.sleep(0.2)

        def latest():  # noqa: ANN202
            return _store(ws, tmp_path).latest(NAME)

        with LoadGenerator(ws.host, ws.token, NAME):  # traffic until step 1 passes
            until(lambda: (r := latest()) is not None and r.step == 1)
        until(lambda: (r := latest()) is not None and any(p["percent"] == 50 for p in r.points))
        assert _serving(ws) == {CHAMPION: 50, CHALLENGER: 50}
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    record = _store(ws, tmp_path).latest(NAME)
    assert record is not None and record.state == IN_PROGRESS and record.step == 1 and record.run_id
    assert _owner_tag(ws) == record.run_id  # the endpoint says who owns its split
    return record.run_id


def _cli(args: list[str], home: Path, ws, tmp_path: Path) -> subprocess.CompletedProcess[str]:  # noqa: ANN001
    """The real CLI on a new machine: a fresh $LLMOPS_HOME, the workspace and MLflow only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_", "LLMOPS_"))}
    uri = _uri(tmp_path)
    env.update(ws.env(), LLMOPS_HOME=str(home), LLMOPS_PROJECT_DIR=str(home), MLFLOW_TRACKING_URI=uri,
               MLFLOW_REGISTRY_URI=uri)  # fmt: skip
    return subprocess.run([sys.executable, "-m", "llmops_nb.cli.main", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_a_deploy_on_another_machine_resumes_a_rollout_killed_at_step_2(ws, tmp_path: Path) -> None:  # noqa: ANN001
    import mlflow

    run_id = _killed_at_step_2(ws, tmp_path / "job")
    canary = _canary(ws, tmp_path / "job", max_error_rate=0.25)  # a new process, a new store: nothing in memory
    with LoadGenerator(ws.host, ws.token, NAME) as load:
        outcome = canary.deploy()
    assert canary.lines[0].startswith(f"{NAME}: resuming rollout ") and " at step 2 (50%)" in canary.lines[0]  # type: ignore[attr-defined]
    assert outcome.state == PROMOTED, outcome.reason
    assert _serving(ws) == {CHALLENGER: 100} and load.dropped == []
    # the killed job's 90/10 and 50/50, then the promotion (the resumed step's split is already there)
    assert [_routes(b) for b in _config_puts(ws)] == [
        {CHAMPION: 90, CHALLENGER: 10},
        {CHAMPION: 50, CHALLENGER: 50},
        {CHALLENGER: 100},
    ]
    record = _store(ws, tmp_path / "job").latest(NAME)
    assert record is not None and record.state == PROMOTED and record.run_id == run_id
    client = mlflow.MlflowClient(tracking_uri=_uri(tmp_path / "job"))
    run = client.get_run(run_id)
    assert run.data.tags["rollout_state"] == PROMOTED and run.info.status == "FINISHED"
    applied = _store(ws, tmp_path / "job").applied(NAME)
    assert [a.source.split(": ")[-1] for a in applied] == ["step 10%", "step 50%", "promote"]
    assert applied[-1].hash == endpoint("2").config_hash()


def test_status_and_rollback_from_a_fresh_home_of_a_rollout_killed_at_step_2(ws, tmp_path: Path) -> None:  # noqa: ANN001
    shared = tmp_path / "job"
    run_id = _killed_at_step_2(ws, shared)
    time.sleep(3 * 0.2 + 5.5)  # nobody saves the record any more: past 3 intervals + 5 s it is interrupted
    laptop = tmp_path / "laptop"
    shown = _cli(["rollout", "status", NAME, "--json", "--backend", "databricks"], laptop, ws, shared)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert (status["state"], status["step"], status["percent"], status["interrupted"]) == ("in_progress", 2, 50, True)
    assert status["run_id"] == run_id and {e["name"] for e in status["entities"]} == {CHAMPION, CHALLENGER}
    assert all(e["requests"] >= 0 for e in status["entities"])
    text = _cli(["rollout", "status", NAME, "--backend", "databricks"], laptop, ws, shared)
    assert "interrupted: no deploy of it is running" in text.stdout, text.stderr
    assert not (laptop / "rollouts").exists()  # nothing local read or written

    back = _cli(["rollback", NAME, "--backend", "databricks", "--timeout", "60"], tmp_path / "other", ws, shared)
    assert back.returncode == 0, back.stderr
    assert back.stdout.startswith(f"rolled back {NAME} to {CHAMPION}: rolled back by hand (llmops-nb rollback)")
    assert _serving(ws) == {CHAMPION: 100}
    after = json.loads(_cli(["rollout", "status", NAME, "--json", "--backend", "databricks"], laptop, ws, shared).stdout)
    assert after["state"] == ROLLED_BACK and "interrupted" not in after
    # the split is gone and no longer owned: the next canary deploy is a new rollout
    assert _store(ws, shared).applied(NAME)[-1].source.endswith(": rollback")


def test_a_promoted_rollout_is_rolled_back_from_a_fresh_home(ws, tmp_path: Path) -> None:  # noqa: ANN001
    canary = _canary(ws, tmp_path, max_error_rate=0.25)
    with LoadGenerator(ws.host, ws.token, NAME):
        assert canary.deploy().state == PROMOTED
    back = _cli(["rollback", NAME, "--backend", "databricks", "--timeout", "60"], tmp_path / "laptop", ws, tmp_path)
    assert back.returncode == 0, back.stderr
    assert back.stdout.startswith(f"rolled back {NAME} to config {endpoint('1').config_hash()} (applied ")
    assert _serving(ws) == {CHAMPION: 100}


def test_a_split_without_an_owner_is_refused_in_one_line_and_nothing_written(ws, tmp_path: Path) -> None:  # noqa: ANN001
    champion = {"entity_name": MODEL, "entity_version": "1", "workload_size": "Small", "name": CHAMPION}
    deploy(ws.client(), step_config(endpoint("2"), champion, 30), timeout=60, poll_interval=0.1, progress=False)
    assert _owner_tag(ws) is None
    before = len(ws.write_calls())
    with pytest.raises(EndpointError) as e:
        _canary(ws, tmp_path, version="3").deploy()
    line = str(e.value)
    assert "\n" not in line and "traffic is split" in line and "no rollout of this project owns the split" in line
    assert "rollout.strategy replace" in line
    assert len(ws.write_calls()) == before


def test_the_owner_tag_survives_a_replace_deploy_and_the_history_is_shared(ws, tmp_path: Path) -> None:  # noqa: ANN001
    """A deploy neither compares nor deletes the rollout's tag (a config with other tags changes only
    those); the applied-config history written by one store is read by another."""
    from databricks.sdk.service import serving

    w = ws.client()
    w.serving_endpoints.patch(name=NAME, add_tags=[serving.EndpointTag(key=ROLLOUT_RUN_TAG, value="0" * 32)])
    before = len(ws.write_calls())
    assert deploy(w, endpoint("1"), timeout=60, poll_interval=0.1, progress=False).action == "unchanged"
    assert len(ws.write_calls()) == before
    retagged = endpoint("1").model_copy(update={"tags": {"team": "a"}})
    deploy(w, retagged, timeout=60, poll_interval=0.1, progress=False)
    assert _owner_tag(ws) == "0" * 32
    assert _store(ws, tmp_path).latest(NAME) is None  # a run that does not exist owns nothing
    one = _store(ws, tmp_path)
    one.record_applied(NAME, AppliedConfig("h1", 1.0, "deploy (replace)", endpoint("1").to_databricks_body()))
    one.record_applied(NAME, AppliedConfig("h2", 2.0, "deploy (replace)", retagged.to_databricks_body()))
    assert [a.hash for a in _store(ws, tmp_path).applied(NAME)] == ["h1", "h2"]
    # the fake deletes tags as the API does: delete_tags (what databricks-sdk sends)
    w.serving_endpoints.patch(name=NAME, delete_tags=[ROLLOUT_RUN_TAG])
    assert _owner_tag(ws) is None


def test_a_new_config_from_another_machine_rolls_the_killed_rollout_back_first(ws, tmp_path: Path) -> None:  # noqa: ANN001
    run_id = _killed_at_step_2(ws, tmp_path / "job")
    canary = _canary(ws, tmp_path / "job", version="3", max_error_rate=0.25)
    with LoadGenerator(ws.host, ws.token, NAME) as load:
        outcome = canary.deploy()
    assert canary.lines[0] == (  # type: ignore[attr-defined]
        f"rolled back {NAME} to {CHAMPION}: superseded by a new deploy (config {endpoint('3').config_hash()})"
    )
    assert outcome.state == PROMOTED and _serving(ws) == {f"{MODEL}-3": 100} and load.dropped == []
    assert [_routes(b) for b in _config_puts(ws)][2:] == [
        {CHAMPION: 100},
        {CHAMPION: 90, f"{MODEL}-3": 10},
        {CHAMPION: 50, f"{MODEL}-3": 50},
        {f"{MODEL}-3": 100},
    ]
    import mlflow

    killed = mlflow.MlflowClient(tracking_uri=_uri(tmp_path / "job")).get_run(run_id)
    assert killed.data.tags["rollout_state"] == ROLLED_BACK and killed.info.status == "FAILED"
    assert _owner_tag(ws) not in (None, run_id)  # the new rollout's run owns the endpoint now


def test_a_rollout_without_its_mlflow_run_is_refused_before_any_write(ws, tmp_path: Path) -> None:  # noqa: ANN001
    """Its record would live nowhere another machine looks: one line, the endpoint untouched."""
    canary = _canary(ws, tmp_path)
    canary.tracking = None
    before = len(ws.write_calls())
    with pytest.raises(EndpointError, match=r"^endpoint canary-chat: rollout \w+ has no MLflow run to keep its record"):
        canary.deploy()
    assert len(ws.write_calls()) == before and _serving(ws) == {CHAMPION: 100}
