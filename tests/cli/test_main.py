"""The command line: bad input exits 2 with one line and starts nothing; the local lifecycle end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "llmops_nb.cli.main"]


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A project folder of its own; its local workspace is stopped afterwards, whatever happened."""
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_", "LLMOPS_"))}
    env["LLMOPS_PROJECT_DIR"] = str(tmp_path)
    yield tmp_path, env
    from llmops_nb.workspace import launcher

    launcher.stop(tmp_path / ".llmops")


def cli(args: list[str], project: tuple[Path, dict[str, str]], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    folder, env = project
    return subprocess.run(CLI + args, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)


BAD = [
    (["deploy", "--config", "configs/broken.yml"], "endpoint.name: 'bad name!'"),
    (["deploy", "--config", "configs/missing.yml"], "missing.yml"),
    (["deploy", "--model-version", "latest"], "--model-version: 'latest' is not allowed"),
    (["query", "smollm2-chat", "hi", "--max-tokens", "0"], "max_tokens: 0 is not allowed"),
    (["query", "smollm2-chat", "hi", "--temperature", "3"], "temperature: 3.0 is not allowed"),
    (["query", "smollm2-chat", "   "], "prompt: '   ' is not allowed"),
    (["run", "--steps", "train"], "steps: 'train' is not allowed"),
    (["deploy", "--backend", "aws"], "'aws' is not one of 'local', 'databricks'"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_input_exits_2_with_one_line_and_starts_nothing(args: list[str], message: str, project) -> None:  # noqa: ANN001
    folder, _ = project
    (folder / "configs" / "broken.yml").write_text(
        (folder / "configs" / "local.yml").read_text().replace("name: smollm2-chat", "name: 'bad name!'")
    )
    done = cli(args, project, timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    if args[0] != "deploy" or "--backend" not in args:
        assert len([line for line in done.stderr.splitlines() if line.startswith("error:")]) <= 1
    assert not (folder / ".llmops" / "server.json").exists()  # no workspace was started
    assert not (folder / "mlflow.db").exists() and not (folder / "runs").exists()


def test_help_explains_every_command(project) -> None:  # noqa: ANN001
    for args in (
        ["--help"],
        ["register", "--help"],
        ["deploy", "--help"],
        ["query", "--help"],
        ["run", "--help"],
        ["endpoints", "--help"],
        ["endpoints", "stop", "--help"],
        ["workspace", "--help"],
    ):
        done = cli(args, project, timeout=60)
        assert done.returncode == 0 and "Usage:" in done.stdout


@pytest.mark.model
def test_make_run_lifecycle_on_the_local_workspace_with_the_real_model(project) -> None:  # noqa: ANN001
    """register -> deploy -> serve -> evaluate, then curl the printed URL, then stop everything."""
    import psutil

    folder, _ = project
    done = cli(["run", "--max-rows", "6"], project, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = Path(done.stdout.split("run folder: ", 1)[1].splitlines()[0])
    assert sorted(p.name for p in run_dir.glob("*.ipynb")) == [
        "01_register.ipynb",
        "02_deploy.ipynb",
        "03_serve.ipynb",
        "04_evaluate.ipynb",
    ]
    assert "MLflow evaluation run:" in done.stdout and "promoted:" in done.stdout
    url = done.stdout.split("endpoint: ", 1)[1].splitlines()[0]
    assert url.startswith("http://127.0.0.1:") and url.endswith("/serving-endpoints/smollm2-chat/invocations")

    # after the chain run, $LLMOPS_HOME is the user's alone (0700 folders, 0600 files)
    home = folder / ".llmops"
    loose = {
        str(p): oct(p.lstat().st_mode & 0o777)
        for p in [home, *home.rglob("*")]
        if not p.is_symlink() and p.lstat().st_mode & 0o077
    }
    assert loose == {} and (home / "token").exists()
    # the printed curl line works as printed (it reads the token file)
    curl_line = done.stdout.split("  try: ", 1)[1].splitlines()[0]
    curled = subprocess.run(["bash", "-c", curl_line], capture_output=True, text=True, timeout=120)
    assert curled.returncode == 0 and json.loads(curled.stdout)["choices"][0]["message"]["content"], curled.stdout
    # plain HTTP with the token `workspace env` prints
    exports = cli(["workspace", "env"], project, timeout=60).stdout
    token = exports.split("export DATABRICKS_TOKEN=", 1)[1].split()[0]
    body = {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 16}
    assert requests.post(url, json=body, timeout=120).status_code == 401
    answer = requests.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=120).json()
    assert answer["choices"][0]["message"]["content"].strip()
    assert answer["usage"]["completion_tokens"] > 0 and answer["usage"]["total_tokens"] > answer["usage"]["prompt_tokens"]

    # the MLflow run holds the metrics
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    run_id = done.stdout.split("MLflow evaluation run: ", 1)[1].split()[0]
    metrics = client.get_run(run_id).data.metrics
    assert metrics["rows"] == 6 and 0 <= metrics["contains_match"] <= 1

    # through databricks-sdk, via the CLI
    queried = cli(["query", "smollm2-chat", "Name one color.", "--json"], project, timeout=120)
    assert queried.returncode == 0 and '"completion_tokens"' in queried.stdout

    # stop the endpoint, then the workspace: no process is left behind
    status = cli(["workspace", "status"], project, timeout=60)
    pid = int(status.stdout.split("pid ", 1)[1].split(",")[0])
    children = [p.pid for p in psutil.Process(pid).children(recursive=True)]
    assert children  # the scoring servers
    assert cli(["endpoints", "stop", "smollm2-chat"], project, timeout=120).returncode == 0
    assert "smollm2-chat" not in cli(["endpoints", "list"], project, timeout=60).stdout
    assert cli(["workspace", "stop"], project, timeout=120).returncode == 0
    alive = [p for p in [pid, *children] if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []


def _fake_project(tmp_path: Path, ws, thresholds: dict[str, float]) -> tuple[Path, dict[str, str]]:  # noqa: ANN001
    """A project on the fake Databricks workspace (config backend: databricks), MLflow on SQLite,
    the model's version 1 registered without the real model (deploy only names it)."""
    import mlflow
    import yaml

    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = yaml.safe_load((ROOT / "tests" / "configs" / "fake-databricks.yml").read_text())
    config["evaluation"]["thresholds"] = thresholds
    (tmp_path / "project.yml").write_text(yaml.safe_dump(config))
    client = mlflow.MlflowClient(db, db)
    if not client.search_registered_models():
        client.create_registered_model(config["model"]["name"])
        client.create_model_version(config["model"]["name"], source=str(tmp_path), run_id=None)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_", "LLMOPS_"))}
    env.update(
        ws.env(),
        LLMOPS_PROJECT_DIR=str(tmp_path),
        MLFLOW_TRACKING_URI=db,
        MLFLOW_REGISTRY_URI=db,
        LLMOPS_RETRY_TIMEOUT_SECONDS="60",
    )
    return tmp_path, env


def test_run_ends_with_the_decision_and_where_the_alias_points(tmp_path: Path, fake_workspace) -> None:  # noqa: ANN001
    """`llmops-nb run` on a Databricks config without --backend: the decision in one paragraph, the
    alias from the registry, and closing lines for Databricks (not local); a 4-row run moves nothing."""
    project = _fake_project(tmp_path, fake_workspace, {"contains_match": 0.0, "latency_p95_ms": 30000})
    done = cli(
        ["run", "--config", "project.yml", "--steps", "deploy,evaluate", "--max-rows", "4", "--cold-kernels"],
        project,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    decision = next(line for line in out.splitlines() if line.startswith("Decision: "))
    assert decision.startswith("Decision: INCONCLUSIVE (4 rows, non-inferiority on contains_match")
    assert "4 rows are too few to decide at confidence 0.95 (at least 6)" in decision
    assert "NOT promoted: main.llmops.smollm2_135m_instruct version 1 keeps its aliases" in out
    assert "promoted: False" in out
    # the config's backend (databricks) decides the closing lines too: no local MLflow UI, the Databricks token
    assert "mlflow ui" not in out and "Bearer $DATABRICKS_TOKEN" in out

    # 8 rows, thresholds met at Wilson's bound, no champion yet: promoted
    done = cli(
        ["run", "--config", "project.yml", "--steps", "evaluate", "--max-rows", "8", "--cold-kernels"], project, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    decision = next(i for i, line in enumerate(lines) if line.startswith("Decision: "))
    assert lines[decision].startswith("Decision: PROMOTE new (8 rows, ")
    assert lines[decision + 1] == "PROMOTED: alias 'champion' -> main.llmops.smollm2_135m_instruct version 1"
    assert "alias 'champion' of main.llmops.smollm2_135m_instruct now points to version 1" in done.stdout
    assert "promoted: True" in done.stdout

    # a stricter threshold: the interval is wholly below it, the alias stays where it was
    project = _fake_project(tmp_path, fake_workspace, {"contains_match": 0.99})
    done = cli(
        ["run", "--config", "project.yml", "--steps", "evaluate", "--max-rows", "8", "--cold-kernels"], project, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    decision = next(line for line in done.stdout.splitlines() if line.startswith("Decision: "))
    assert decision.startswith("Decision: KEEP") and "threshold not met: new: contains_match = 0" in decision
    assert "NOT promoted: main.llmops.smollm2_135m_instruct version 1 keeps its aliases" in done.stdout
    assert "alias 'champion' of main.llmops.smollm2_135m_instruct now points to version 1" in done.stdout
    assert "promoted: False" in done.stdout


def test_deploy_reads_the_endpoint_once_it_is_ready(tmp_path: Path, fake_workspace) -> None:  # noqa: ANN001
    """The CLI's state line comes from the deploy itself: an unchanged deploy reads the endpoint
    twice (the plan, the READY check), not a third time for the summary."""
    project = _fake_project(tmp_path, fake_workspace, {"contains_match": 0.0})
    args = ["deploy", "--config", "project.yml", "--model-version", "1", "--timeout", "60"]
    assert cli(args, project, timeout=300).returncode == 0
    fake_workspace.reset()
    done = cli(args, project, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "endpoint smollm2-chat: unchanged; state READY, config_update NOT_UPDATING" in done.stdout
    gets = [
        r for r in fake_workspace.requests() if r["method"] == "GET" and r["path"] == "/api/2.0/serving-endpoints/smollm2-chat"
    ]
    assert len(gets) == 2
