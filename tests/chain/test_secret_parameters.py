"""Issue 9, secrets: a canary key flows through the whole chain to the provider, and is found
nowhere else: not in an output notebook, the MLflow database or artifacts, a log file, a usage
record, or any request body the fake workspace recorded."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmops_nb.chain import runner as chain_runner
from llmops_nb.testing import fake_provider, fake_workspace

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "tests" / "configs" / "fake-external.yml"
CANARY = "sk-canary-7Q2xW9vLm3Rt8Zp1Ky6Hn4Bd"

pytestmark = pytest.mark.model  # the register step logs the real GGUF


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with fake_provider() as provider:
        # the workspace resolves {{secrets/llmops/openai_api_key}} from its environment
        monkeypatch.setenv("LLMOPS_SECRET_LLMOPS_OPENAI_API_KEY", CANARY)
        monkeypatch.setenv("LLMOPS_OPENAI_API_BASE", provider.base_url)
        with fake_workspace(tmp_path / "workspace") as ws:
            monkeypatch.delenv("LLMOPS_SECRET_LLMOPS_OPENAI_API_KEY")  # the notebooks never need it
            # the scope and key as on Databricks (preflight in 02_deploy lists them; the fake keeps no value)
            ws.client().secrets.create_scope("llmops")
            ws.client().secrets.put_secret("llmops", "openai_api_key", string_value="resolved-from-the-workspace-env")
            for key, value in {
                **ws.env(),
                "LLMOPS_PROJECT_DIR": str(tmp_path),
                "MLFLOW_TRACKING_URI": db,
                "MLFLOW_REGISTRY_URI": db,
                "LLMOPS_RETRY_TIMEOUT_SECONDS": "60",
            }.items():
                monkeypatch.setenv(key, value)
            yield {"root": tmp_path, "ws": ws, "provider": provider}


def test_a_canary_key_reaches_the_provider_and_nothing_else(world: dict, capfd: pytest.CaptureFixture[str]) -> None:
    result = chain_runner.run(CONFIG, progress=False, log=print)
    assert result.published["endpoint_name"] == "openai-chat" and result.published["metrics"]["rows"] == 6
    provider = world["provider"]
    assert provider.authorizations().count(f"Bearer {CANARY}") == 3 + 6  # serve + evaluate, every call
    found = {}
    for path in world["root"].rglob("*"):  # notebooks, mlflow.db, artifacts, logs, usage, state
        if path.is_file() and CANARY.encode() in path.read_bytes():
            found[str(path)] = True
    recorded = world["ws"].requests()
    assert any("{{secrets/llmops/openai_api_key}}" in str(r["body"]) for r in recorded)  # the reference travels
    occurrences = len(found) + sum(CANARY in str(r) for r in recorded)
    out, err = capfd.readouterr()
    occurrences += (out + err).count(CANARY)
    assert occurrences == 0, found
    scanned = [p for p in world["root"].rglob("*") if p.is_file()]
    assert any(p.suffix == ".ipynb" for p in scanned) and any(p.name == "mlflow.db" for p in scanned)
    assert any(p.suffix == ".log" for p in scanned) and any(p.suffix == ".jsonl" for p in scanned)
