"""``llmops-nb rollout status`` and ``llmops-nb rollback`` (issue 33), the real CLI in a
subprocess against the fake workspace: with ``--backend databricks`` the rollout records are the
endpoint's tag and MLflow (a SQLite file here, as the fake serves no MLflow), read from a fresh
``$LLMOPS_HOME``; locally, the files under ``$LLMOPS_HOME``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.config.rollout import RolloutConfig
from llmops_nb.endpoints.apply import deploy
from llmops_nb.endpoints.ops import get_endpoint
from llmops_nb.rollout.canary import Canary, Tracking
from llmops_nb.rollout.mlflow_store import MlflowRolloutStore
from llmops_nb.rollout.state import RolloutStore
from llmops_nb.rollout.traffic import UsageRecords
from llmops_nb.testing.load import LoadGenerator

ROOT = Path(__file__).resolve().parents[2]
MODEL, NAME = "smollm2-135m-instruct", "cli-canary"


def _endpoint(version: str) -> EndpointConfig:
    return EndpointConfig.model_validate(
        {
            "name": NAME,
            "served_entities": [{"entity_name": MODEL, "entity_version": version, "workload_size": "Small"}],
            "ai_gateway": {"usage_tracking_config": {"enabled": True}},
        }
    )


def _cli(args: list[str], home: Path, ws) -> subprocess.CompletedProcess[str]:  # noqa: ANN001
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_", "LLMOPS_"))}
    uri = f"sqlite:///{home / 'mlflow.db'}"
    env.update(ws.env(), LLMOPS_HOME=str(home / "fresh"), LLMOPS_PROJECT_DIR=str(home / "fresh"), MLFLOW_TRACKING_URI=uri,
               MLFLOW_REGISTRY_URI=uri)  # fmt: skip
    return subprocess.run([sys.executable, "-m", "llmops_nb.cli.main", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_status_then_rollback_of_a_promoted_rollout(fake_workspace, tmp_path: Path) -> None:  # noqa: ANN001
    w = fake_workspace.client()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = MlflowRolloutStore(w, uri, uri, "llmops-nb")  # the experiment the CLI resolves (configs/local.yml sets none)
    tracking = Tracking(uri, uri, "llmops-nb")
    canary_v1 = Canary(w, _endpoint("1"), RolloutConfig(strategy="canary"), store=store, reader=UsageRecords(fake_workspace.home),
                       tracking=tracking, poll_interval=0.1, progress=False, log=None)  # fmt: skip
    assert canary_v1.deploy().state == "created"
    rc = RolloutConfig(strategy="canary", min_requests=10, interval_s=0.2, max_error_rate=0.3)
    canary = Canary(w, _endpoint("2"), rc, store=store, reader=UsageRecords(fake_workspace.home), tracking=tracking,
                    poll_interval=0.1, progress=False, log=None)  # fmt: skip
    with LoadGenerator(fake_workspace.host, fake_workspace.token, NAME):
        assert canary.deploy().state == "promoted"

    shown = _cli(["rollout", "status", NAME, "--json", "--backend", "databricks"], tmp_path, fake_workspace)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert {"state", "step", "reason", "entities"} <= set(status)
    assert (status["state"], status["step"], status["challenger"]) == ("promoted", 3, f"{MODEL}-2")
    assert [e["role"] for e in status["entities"]] == ["challenger", "champion"]
    assert status["entities"][0]["requests"] >= 10 and status["entities"][0]["errors"] == 0
    text = _cli(["rollout", "status", NAME, "--backend", "databricks"], tmp_path, fake_workspace)
    assert text.stdout.startswith(f"{NAME}: promoted at step 3/3 (100% to {MODEL}-2; champion {MODEL}-1)")
    assert f"  challenger {MODEL}-2: " in text.stdout and "reason: promoted" in text.stdout

    back = _cli(["rollback", NAME, "--backend", "databricks", "--timeout", "60"], tmp_path, fake_workspace)
    assert back.returncode == 0, back.stderr
    assert back.stdout.startswith(f"rolled back {NAME} to config {_endpoint('1').config_hash()} (applied ")
    found = get_endpoint(w, NAME) or {}
    assert [e["name"] for e in found["config"]["served_entities"]] == [f"{MODEL}-1"]
    after = json.loads(_cli(["rollout", "status", NAME, "--json", "--backend", "databricks"], tmp_path, fake_workspace).stdout)
    assert after["state"] == "rolled_back" and after["reason"].startswith(f"rolled back {NAME} to config ")


def test_status_of_an_endpoint_without_rollout_and_rollback_without_history(fake_workspace, tmp_path: Path) -> None:  # noqa: ANN001
    import mlflow

    deploy(fake_workspace.client(), _endpoint("1"), timeout=60, poll_interval=0.1, progress=False)
    mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()  # the tables made (MLflow logs it)
    shown = _cli(["rollout", "status", NAME, "--backend", "databricks"], tmp_path, fake_workspace)
    assert shown.returncode == 1 and shown.stderr.strip() == f"error: endpoint {NAME}: no rollout recorded"
    back = _cli(["rollback", NAME, "--backend", "databricks"], tmp_path, fake_workspace)
    assert back.returncode == 1
    assert back.stderr.strip() == f"error: endpoint {NAME}: no previous config recorded to roll back to (0 applied)"
    before = [r for r in fake_workspace.write_calls() if r["path"].endswith("/config")]
    assert before == []


@pytest.mark.model
def test_the_cli_deploys_in_canary_steps_on_the_local_workspace(tmp_path: Path) -> None:
    """``llmops-nb register`` / ``deploy`` with ``rollout.strategy: canary`` in the config, the real
    model on the local workspace: a first deploy says so, the next version is promoted under load,
    ``rollout status`` shows it and ``rollback`` puts the first version back."""
    pytest.importorskip("llama_cpp")
    import shutil

    import yaml

    from llmops_nb.workspace import launcher

    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    project = yaml.safe_load((tmp_path / "configs" / "local.yml").read_text())
    project["rollout"] = {"strategy": "canary", "steps": [50, 100], "min_requests": 4, "interval_s": 1, "max_error_rate": 0.6}
    (tmp_path / "configs" / "canary.yml").write_text(yaml.safe_dump(project))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_", "LLMOPS_"))}
    env["LLMOPS_PROJECT_DIR"] = str(tmp_path)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "llmops_nb.cli.main", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)  # fmt: skip

    name = project["endpoint"]["name"]
    try:
        for _ in range(2):
            done = cli("register", "--config", "configs/canary.yml")
            assert done.returncode == 0, done.stderr[-2000:]
        first = cli("deploy", "--config", "configs/canary.yml", "--model-version", "1")
        assert first.returncode == 0, first.stderr[-2000:]
        assert f"first deploy of {name}: no champion serving, created as replace does" in first.stderr
        assert f"endpoint {name}: created; state READY" in first.stdout
        info = launcher.status(tmp_path / ".llmops")
        assert info is not None
        with LoadGenerator(info.host, str(info.token), name, threads=2, pause=0.05) as load:
            second = cli("deploy", "--config", "configs/canary.yml", "--model-version", "2")
        assert second.returncode == 0, second.stderr[-2000:]
        assert f"promoted {MODEL}-2 on {name} after steps [50, 100]" in second.stderr
        assert f"serving: {MODEL}-2" in second.stdout
        assert load.dropped == [] and all(a.status == 200 for a in load.answers)
        shown = json.loads(cli("rollout", "status", name, "--json").stdout)
        assert (shown["state"], shown["champion"], shown["challenger"]) == ("promoted", f"{MODEL}-1", f"{MODEL}-2")
        back = cli("rollback", name, "--config", "configs/canary.yml")
        assert back.returncode == 0 and back.stdout.startswith(f"rolled back {name} to config "), back.stderr[-2000:]
        w = launcher.status(tmp_path / ".llmops")
        assert w is not None
        import requests

        view = requests.get(f"{w.host}/api/2.0/serving-endpoints/{name}", headers={"Authorization": f"Bearer {w.token}"},
                            timeout=30).json()  # fmt: skip
        assert [e["name"] for e in view["config"]["served_entities"]] == [f"{MODEL}-1"]
    finally:
        launcher.stop(tmp_path / ".llmops")


def test_rollback_refuses_while_a_deploy_of_the_endpoint_holds_its_lock(tmp_path: Path) -> None:
    """Locally one deploy of an endpoint runs at a time (a file lock); a rollback during a live
    rollout would race it: one line, nothing written."""
    from llmops_nb.backends import Backend
    from llmops_nb.steps.deploy import deploy_lock
    from llmops_nb.workspace import launcher

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_", "LLMOPS_"))}
    env.update(LLMOPS_PROJECT_DIR=str(tmp_path), LLMOPS_HOME=str(tmp_path / ".llmops"))
    home = tmp_path / ".llmops"
    held = Backend(kind="local", host=None, token=None, tracking_uri="", registry_uri="", home=home)
    try:
        with deploy_lock(held, NAME):
            done = subprocess.run([sys.executable, "-m", "llmops_nb.cli.main", "rollback", NAME, "--backend", "local"],
                                  cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 1
        assert done.stderr.strip() == f"error: endpoint {NAME}: a deploy of it is running now (its lock is held); stop it first"
        assert not (home / "rollouts" / NAME / "configs.jsonl").exists()
        # a rollout in progress whose deploy holds the lock is not interrupted; once free, it is
        from llmops_nb.rollout.state import IN_PROGRESS, RolloutRecord

        body = _endpoint("2").to_databricks_body()
        RolloutStore(home / "rollouts").save(
            RolloutRecord("r1", NAME, IN_PROGRESS, [10, 100], 0, f"{MODEL}-1", f"{MODEL}-2", body, body, "h")
        )

        def interrupted() -> bool:
            shown = subprocess.run([sys.executable, "-m", "llmops_nb.cli.main", "rollout", "status", NAME, "--json"],
                                   cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
            return json.loads(shown.stdout)["interrupted"]

        with deploy_lock(held, NAME):
            assert interrupted() is False
        assert interrupted() is True
    finally:
        launcher.stop(home)
