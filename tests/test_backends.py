"""Backend choice and runtime detection."""

from __future__ import annotations

import pytest

from llmops_nb import backends
from llmops_nb.errors import ConfigError
from llmops_nb.tracking.uris import local_tracking_uri, resolve_uris


def test_default_kind_is_local_outside_databricks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    monkeypatch.delenv(backends.ENV_BACKEND, raising=False)
    assert backends.default_kind() == "local"


def test_databricks_runtime_is_detected_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(backends.ENV_BACKEND, raising=False)
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    assert backends.in_databricks_runtime()
    assert backends.default_kind() == "databricks"
    # an explicit choice wins over the runtime
    assert backends.default_kind("local") == "local"


def test_environment_variable_chooses_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(backends.ENV_BACKEND, "databricks")
    assert backends.default_kind() == "databricks"


def test_unknown_backend_is_one_line_naming_the_value() -> None:
    with pytest.raises(ConfigError) as err:
        backends.check_kind("azureml")
    text = str(err.value)
    assert "backend" in text and "'azureml'" in text and "local, databricks" in text
    assert "\n" not in text


def test_databricks_backend_reads_the_usual_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABRICKS_HOST", "http://127.0.0.1:9")
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-test")
    # Both: mlflow.set_tracking_uri / set_registry_uri (called in-process by earlier tests) export them.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    b = backends.resolve_backend("databricks")
    assert (b.kind, b.host, b.registry_uri, b.tracking_uri) == ("databricks", "http://127.0.0.1:9", "databricks-uc", "databricks")
    assert "dapi-test" not in repr(b)
    assert b.endpoint_url("chat") == "http://127.0.0.1:9/serving-endpoints/chat/invocations"


def test_local_defaults_live_in_the_project_folder(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(backends.ENV_HOME, raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert backends.local_home() == tmp_path.resolve() / ".llmops"
    # one default for every caller: the backend's and the registry's tracking URI are the same
    assert local_tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert resolve_uris("", None)[0] == local_tracking_uri()


def test_local_backend_refuses_a_running_fake_workspace_and_leaves_it_running(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    """Issue 14, point 11: `llmops-nb run` on the local default never evaluates echo answers."""
    from llmops_nb.errors import WorkspaceError
    from llmops_nb.testing import fake_workspace
    from llmops_nb.workspace import launcher

    home = tmp_path / ".llmops"
    monkeypatch.setenv(backends.ENV_HOME, str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv(backends.ENV_WORKSPACE_TOKEN, raising=False)
    with fake_workspace(home) as ws:
        for start in (True, False):
            with pytest.raises(WorkspaceError) as err:
                backends.resolve_backend("local", start=start)
            text = str(err.value)
            assert "\n" not in text and "fake" in text and ws.host in text
            assert "llmops-nb workspace stop" in text
        info = launcher.status(home)
        assert info is not None and info.fake and info.pid == ws.info.pid


def test_the_evaluate_resume_file_lives_under_llmops_home(tmp_path, fake_workspace, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """evaluate keeps its resume rows in $LLMOPS_HOME/eval (private), as the rest of the home."""
    import os

    from llmops_nb.config.project import ProjectConfig
    from llmops_nb.steps.evaluate import evaluate

    for key in [k for k in os.environ if k.startswith(("DATABRICKS_", "MLFLOW_", "LLMOPS_"))]:
        monkeypatch.delenv(key)
    for key, value in fake_workspace.env().items():
        monkeypatch.setenv(key, value)
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", db)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", db)
    monkeypatch.setenv("LLMOPS_PROJECT_DIR", str(tmp_path / "project"))
    monkeypatch.setenv(backends.ENV_HOME, str(tmp_path / "home"))
    project = ProjectConfig.model_validate(
        {
            "backend": "databricks",
            "model": {"name": "main.llmops.m"},
            "foundation_endpoint": "databricks-smollm2-135m-instruct",
            "evaluation": {"thresholds": {}},
        }
    )
    evaluate(project, backends.resolve_backend("databricks"), max_rows=2, promote=False, progress=False)
    saved = tmp_path / "home" / "eval" / "databricks-smollm2-135m-instruct-vx.jsonl"
    assert saved.exists() and saved.read_text().count('"row"') >= 2
    assert oct(saved.stat().st_mode & 0o777) == "0o600"
    assert not (tmp_path / "project" / ".llmops").exists()
