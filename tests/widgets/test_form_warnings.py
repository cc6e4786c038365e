"""The form shows what the workspace accepts but does not apply, and deploy notes (issue 14)."""

from __future__ import annotations

from pathlib import Path

from llmops_nb.config.project import load_project_config
from llmops_nb.widgets import EndpointForm

ROOT = Path(__file__).resolve().parents[2]
E0 = "endpoint.served_entities[0]"


def make_form(ws) -> EndpointForm:  # noqa: ANN001
    base = load_project_config(ROOT / "configs" / "local.yml")
    return EndpointForm(
        base, client=ws.client(), registered_models={"smollm2-135m-instruct": ["1", "2"]}, poll_interval=0.1, timeout=30
    )


def test_a_gpu_workload_shows_one_warning_line_in_the_result(fake_workspace) -> None:  # noqa: ANN001
    form = make_form(fake_workspace)
    form.set(**{"endpoint.name": "form-gpu", f"{E0}.workload_type": "GPU_SMALL", f"{E0}.workload_size": "Small"})
    form.deploy_button.click()
    assert form.last_deploy is not None and form.last_deploy["action"] == "created"
    messages = form.last_deploy["messages"]
    assert len(messages) == 1 and messages[0].startswith("warning: config.served_entities[0].workload_type='GPU_SMALL': accepted")
    assert "workload_type=&#x27;GPU_SMALL&#x27;: accepted" in form.result.value  # shown, escaped
    form.set(**{f"{E0}.workload_type": "CPU"})
    form.deploy_button.click()  # a config update without the GPU workload: nothing to warn about
    assert form.last_deploy["action"] == "updated" and form.last_deploy["messages"] == []
    assert "warning:" not in form.result.value


def test_a_recovered_failed_update_is_a_note_not_an_error(fake_workspace) -> None:  # noqa: ANN001
    form = make_form(fake_workspace)
    form.registered_models = {"smollm2-135m-instruct": ["1"]}
    form.set(**{"endpoint.name": "form-back"})
    form.deploy_button.click()
    assert form.last_deploy["action"] == "created" and form.last_deploy["messages"] == []
    first = form.config.endpoint.with_resolved_versions(lambda name: "2").to_databricks_body()
    fake_workspace.set_faults(fail_next_update=first["config"]["served_entities"][0]["name"])
    form.registered_models = {"smollm2-135m-instruct": ["1", "2"]}
    form.deploy_button.click()  # version 2 (the latest): the update fails
    assert form.progress.bar_style == "danger" and "UPDATE_FAILED" in form.status.value
    form.registered_models = {"smollm2-135m-instruct": ["1"]}
    form.deploy_button.click()  # back to version 1: nothing to write, the endpoint serves it
    assert form.progress.bar_style == "success" and form.last_deploy["action"] == "unchanged"
    assert len(form.last_deploy["messages"]) == 1 and "note: the last config update ended UPDATE_FAILED" in form.result.value
