"""Deploy through the form to the fake workspace (real HTTP, the real databricks-sdk client)."""

from __future__ import annotations

from pathlib import Path

from llmops_nb.config.project import load_project_config
from llmops_nb.widgets import EndpointForm
from llmops_nb.widgets.form import DEPLOY_STEPS, FOUNDATION

ROOT = Path(__file__).resolve().parents[2]
E0 = "endpoint.served_entities[0]"


def make_form(ws) -> EndpointForm:
    base = load_project_config(ROOT / "configs" / "local.yml")
    return EndpointForm(
        base, client=ws.client(), registered_models={"smollm2-135m-instruct": ["3", "1"]}, poll_interval=0.1, timeout=30
    )


def test_deploy_stays_disabled_while_invalid_then_reaches_the_workspace(fake_workspace):
    form = make_form(fake_workspace)
    assert form.foundation_models == ["databricks-smollm2-135m-instruct"]  # listed from the workspace
    form.set(**{"endpoint.name": "has spaces"})
    assert form.deploy_button.disabled
    form.deploy_button.click()  # even a forced click makes no call
    assert fake_workspace.write_calls() == []
    form.set(**{"endpoint.name": "form-chat", "endpoint.tags": "team=ml", f"{E0}.workload_size": "Medium"})
    assert not form.deploy_button.disabled
    form.deploy_button.click()
    calls = fake_workspace.write_calls()
    assert [(c["method"], c["path"]) for c in calls] == [("POST", "/api/2.0/serving-endpoints")]
    expected = form.config.endpoint.with_resolved_versions(lambda name: "3").to_databricks_body()
    assert calls[0]["body"] == expected
    assert calls[0]["body"]["config"]["served_entities"][0]["entity_version"] == "3"  # latest listed version
    assert form.last_deploy["ready"] == "READY" and form.last_deploy["action"] == "created"
    url = f"{fake_workspace.host}/serving-endpoints/form-chat/invocations"
    assert form.last_deploy["endpoint_url"] == url and url in form.result.value
    assert form.progress.value == DEPLOY_STEPS and form.progress.bar_style == "success"
    form.deploy_button.click()  # the same config again: no write call
    assert len(fake_workspace.write_calls()) == 1 and form.last_deploy["action"] == "unchanged"


def test_deploy_failure_is_shown_in_the_form(fake_workspace):
    form = make_form(fake_workspace)
    form.set(**{f"{E0}.entity_name": "never-registered"})
    form.deploy_button.click()
    assert form.last_deploy is None and form.progress.bar_style == "danger"
    assert "no registered version of &#x27;never-registered&#x27;" in form.status.value
    assert fake_workspace.write_calls() == []


def test_foundation_model_deploy_checks_it_exists(fake_workspace):
    form = make_form(fake_workspace)
    form.set(kind=FOUNDATION)
    form.deploy_button.click()
    assert fake_workspace.write_calls() == []
    assert form.last_deploy["action"] == "exists" and form.last_deploy["ready"] == "READY"


def test_the_form_deploys_through_the_one_path_under_the_deploy_lock(fake_workspace, tmp_path: Path) -> None:  # noqa: ANN001
    """The form waits for the deploy lock the CLI and the notebook take, then deploys and shows progress."""
    import threading

    from llmops_nb.backends import Backend
    from llmops_nb.steps.deploy import _deploy_lock

    backend = Backend(
        kind="local", host=fake_workspace.host, token="unused", tracking_uri="", registry_uri="", home=tmp_path / "home"
    )
    base = load_project_config(ROOT / "configs" / "local.yml")
    form = EndpointForm(
        base,
        client=fake_workspace.client(),
        registered_models={"smollm2-135m-instruct": ["1"]},
        poll_interval=0.1,
        timeout=30,
        backend=backend,
    )
    form.set(**{"endpoint.name": "form-locked"})
    seen: list[int] = []
    form.progress.observe(lambda change: seen.append(change["new"]), names="value")
    with _deploy_lock(backend, "form-locked"):  # another deploy of this endpoint holds it
        clicker = threading.Thread(target=form.deploy_button.click)
        clicker.start()
        clicker.join(1.0)
        assert clicker.is_alive() and fake_workspace.write_calls() == []  # waiting for the lock
    clicker.join(60)
    assert not clicker.is_alive()
    assert [c["method"] for c in fake_workspace.write_calls()] == ["POST"]
    assert form.last_deploy["action"] == "created" and form.last_deploy["ready"] == "READY"
    # the progress callback moved the bar through written (2) and the polls to the end
    assert 2 in seen and seen[-1] == DEPLOY_STEPS and seen == sorted(seen)


LLAMA = "system.ai.llama_v3_2_1b_instruct"  # the fake optimizes llama models, chunk 950 tokens/s


def _uc_form(ws, kind: str, tmp_path: Path) -> EndpointForm:  # noqa: ANN001
    from llmops_nb.backends import Backend
    from llmops_nb.widgets.model_pick import PICK_NEW

    uri = "databricks" if kind == "databricks" else f"sqlite:///{tmp_path}/mlflow.db"
    backend = Backend(
        kind=kind, host=ws.host, token=ws.token, tracking_uri=uri, registry_uri=uri + "-uc" * (kind == "databricks")
    )
    form = make_form(ws)
    form.backend = backend
    form.set(**{"model.pick": PICK_NEW, "model.source": "uc", "model.name": LLAMA, "model.version": "1"})
    return form.set(backend=kind, **{"endpoint.name": "llama-pt", f"{E0}.workload_size": ""})


def test_a_uc_source_deploys_from_the_form_with_provisioned_throughput(fake_workspace, tmp_path):
    fake_workspace.uc_model(LLAMA)
    form = _uc_form(fake_workspace, "databricks", tmp_path)
    assert form.errors == {}, form.errors
    assert form.deploy() is not None, form.status.value
    (create,) = [c for c in fake_workspace.write_calls() if c["path"] == "/api/2.0/serving-endpoints"]
    entity = create["body"]["config"]["served_entities"][0]
    assert (entity["entity_name"], entity["entity_version"]) == (LLAMA, "1")
    assert (entity["min_provisioned_throughput"], entity["max_provisioned_throughput"]) == (0, 950)


def test_a_uc_source_is_refused_by_the_form_on_the_local_backend(fake_workspace, tmp_path):
    form = _uc_form(fake_workspace, "local", tmp_path)
    assert form.errors == {}, form.errors
    assert form.deploy() is None and "Databricks only" in form.status.value
    assert [c for c in fake_workspace.write_calls() if c["path"].startswith("/api/2.0/serving-endpoints")] == []
