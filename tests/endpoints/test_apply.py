"""Deploy, wait and query through the real databricks-sdk over HTTP against the fake workspace."""

from __future__ import annotations

import threading
import time

import pytest

from llmops_nb.chat import client
from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.endpoints.apply import deploy as apply_deploy
from llmops_nb.endpoints.ops import get_endpoint, state_of
from llmops_nb.endpoints.plan import ImmutableChange
from llmops_nb.errors import DeployFailed, DeployTimeout


def config(version: str = "1", **extra) -> EndpointConfig:  # noqa: ANN003
    body = {
        "name": "chat",
        "served_entities": [{"entity_name": "m", "entity_version": version, "scale_to_zero_enabled": False}],
        "ai_gateway": {"usage_tracking_config": {"enabled": True}},
        "tags": {"team": "ml"},
    }
    body.update(extra)
    return EndpointConfig.model_validate(body)


def writes(ws) -> list[tuple[str, str]]:  # noqa: ANN001
    return [(c["method"], c["path"]) for c in ws.write_calls()]


def deploy(ws, cfg: EndpointConfig, **kwargs):  # noqa: ANN001, ANN003, ANN201
    """Deploy with a fresh client after clearing the fake's request record."""
    ws.reset()
    return apply_deploy(ws.client(), cfg, progress=False, poll_interval=0.1, **kwargs)


API = "/api/2.0/serving-endpoints/chat"


def test_create_then_the_same_config_makes_no_write_call(fake_workspace) -> None:  # noqa: ANN001
    w = fake_workspace.client()
    first = apply_deploy(w, config(), progress=False, poll_interval=0.1)
    assert (first.action, first.ready, first.config_update) == ("created", "READY", "NOT_UPDATING")
    assert first.endpoint_url == f"{fake_workspace.host}/serving-endpoints/chat/invocations"
    assert writes(fake_workspace) == [("POST", "/api/2.0/serving-endpoints")]
    before = len(fake_workspace.write_calls())
    again = apply_deploy(w, config(), progress=False, poll_interval=0.1)
    assert again.action == "unchanged" and again.writes == ()
    assert len(fake_workspace.write_calls()) == before


def test_a_changed_config_makes_one_update_per_changed_part(fake_workspace) -> None:  # noqa: ANN001
    w = fake_workspace.client()
    apply_deploy(w, config(), progress=False, poll_interval=0.1)
    fake_workspace.reset()
    result = apply_deploy(w, config("2"), progress=False, poll_interval=0.1)
    assert result.action == "updated" and result.writes == ("config",)
    assert writes(fake_workspace) == [("PUT", "/api/2.0/serving-endpoints/chat/config")]
    assert apply_deploy(w, config("2"), progress=False, poll_interval=0.1).writes == ()
    assert result.served_entities == ("m-2",)
    fake_workspace.reset()
    tagged = apply_deploy(w, config("2", tags={"team": "ml", "stage": "prod"}), progress=False, poll_interval=0.1)
    assert tagged.writes == ("tags",)
    assert writes(fake_workspace) == [("PATCH", "/api/2.0/serving-endpoints/chat/tags")]
    fake_workspace.reset()
    limited = config(
        "2",
        tags={"team": "ml", "stage": "prod"},
        ai_gateway={"rate_limits": [{"calls": 10, "renewal_period": "minute"}], "usage_tracking_config": {"enabled": True}},
    )
    assert apply_deploy(w, limited, progress=False, poll_interval=0.1).writes == ("ai_gateway",)
    assert writes(fake_workspace) == [("PUT", "/api/2.0/serving-endpoints/chat/ai-gateway")]


def test_an_update_during_an_update_waits_then_applies(fake_workspace) -> None:  # noqa: ANN001
    w = fake_workspace.client()
    apply_deploy(w, config(), progress=False, poll_interval=0.1)
    fake_workspace.set_faults(ready_seconds=1.5)
    # someone else starts an update and does not wait for it
    from databricks.sdk.service import serving

    other = fake_workspace.client()
    other.serving_endpoints.update_config(
        name="chat", served_entities=[serving.ServedEntityInput(entity_name="m", entity_version="2", scale_to_zero_enabled=False)]
    )
    assert state_of(get_endpoint(w, "chat"))[1] == "IN_PROGRESS"
    result = apply_deploy(w, config("3"), progress=False, poll_interval=0.1)
    assert result.served_entities == ("m-3",) and result.ready == "READY"


def test_a_conflicting_write_is_retried_after_the_other_update(fake_workspace) -> None:  # noqa: ANN001
    w = fake_workspace.client()
    apply_deploy(w, config(), progress=False, poll_interval=0.1)
    fake_workspace.set_faults(ready_seconds=1.0)
    results: list[object] = []

    def deploy(version: str) -> None:
        results.append(apply_deploy(fake_workspace.client(), config(version), progress=False, poll_interval=0.1))

    threads = [threading.Thread(target=deploy, args=(v,)) for v in ("2", "3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 2
    final = get_endpoint(w, "chat")
    assert state_of(final) == ("READY", "NOT_UPDATING")
    assert [e["name"] for e in final["config"]["served_entities"]] in (["m-2"], ["m-3"])


def test_update_failed_names_the_entity_and_keeps_the_old_config_serving(fake_workspace) -> None:  # noqa: ANN001
    w = fake_workspace.client()
    apply_deploy(w, config(), progress=False, poll_interval=0.1)
    fake_workspace.set_faults(fail_next_update="m-2")
    with pytest.raises(DeployFailed) as err:
        apply_deploy(w, config("2"), progress=False, poll_interval=0.1)
    text = str(err.value)
    assert "endpoint chat" in text and "UPDATE_FAILED" in text and "m-2" in text and "build-logs" in text
    assert "\n" not in text
    answer = client.chat(w, "chat", "still there?")
    assert answer.served_entity == "m-1" and answer.content


def test_a_wait_past_its_timeout_is_an_error_not_a_hang(fake_workspace) -> None:  # noqa: ANN001
    w = fake_workspace.client()
    fake_workspace.set_faults(ready_seconds=30)
    started = time.monotonic()
    with pytest.raises(DeployTimeout, match="not READY after 1 s"):
        apply_deploy(w, config(), progress=False, timeout=1, poll_interval=0.2)
    assert time.monotonic() - started < 10


def test_queries_survive_a_storm_of_429_and_503(fake_workspace) -> None:  # noqa: ANN001
    w = fake_workspace.client()
    apply_deploy(w, config(), progress=False, poll_interval=0.1)
    fake_workspace.set_faults(rate_429=0.3, rate_503=0.2, retry_after=0.1, seed=7)
    results = client.chat_many(w, "chat", [f"question {i}" for i in range(20)], concurrency=4, progress=False)
    assert [r.content for r in results] == [f"[m-1] echo: question {i}" for i in range(20)]
    statuses = [c.get("status") for c in fake_workspace.requests() if c["path"].endswith("/invocations")]
    assert 429 in statuses and 503 in statuses  # faults were really injected


def test_after_a_create_the_first_poll_waits_one_interval(fake_workspace) -> None:  # noqa: ANN001
    w = fake_workspace.client()
    fake_workspace.set_faults(ready_seconds=1.2)
    apply_deploy(w, config(), progress=False, poll_interval=0.5)
    calls = [r for r in fake_workspace.requests() if r["path"].startswith("/api/2.0/serving-endpoints")]
    posted = next(r["time"] for r in calls if r["method"] == "POST")
    polls = [r["time"] - posted for r in calls if r["method"] == "GET" and r["time"] > posted]
    assert polls and polls[0] >= 0.45  # no GET right after the create: it cannot be READY yet
    assert len(polls) <= round(polls[-1] / 0.5)  # at most one GET per interval since the create


# ----------------------------------------------------------------- plan and apply as the Databricks CLI does


def test_removing_the_ai_gateway_section_clears_it_with_an_empty_put(fake_workspace) -> None:  # noqa: ANN001
    gated = config(
        ai_gateway={
            "usage_tracking_config": {"enabled": True},
            "rate_limits": [{"calls": 10, "renewal_period": "minute"}],
            "fallback_config": {"enabled": False},
        }
    )
    deploy(fake_workspace, gated)
    result = deploy(fake_workspace, config(ai_gateway=None))
    assert result.writes == ("ai_gateway",)
    [put] = fake_workspace.write_calls()
    assert (put["method"], put["path"], put["body"]) == ("PUT", f"{API}/ai-gateway", {})
    assert deploy(fake_workspace, config(ai_gateway=None)).writes == ()
    assert fake_workspace.write_calls() == []


def test_dropping_rate_limits_or_guardrails_puts_the_gateway_without_them(fake_workspace) -> None:  # noqa: ANN001
    deploy(
        fake_workspace,
        config(
            ai_gateway={"usage_tracking_config": {"enabled": True}, "rate_limits": [{"calls": 10, "renewal_period": "minute"}]}
        ),
    )
    assert deploy(fake_workspace, config()).writes == ("ai_gateway",)
    [put] = fake_workspace.write_calls()
    assert put["body"] == {"usage_tracking_config": {"enabled": True}}
    current = get_endpoint(fake_workspace.client(), "chat")
    assert not (current.get("ai_gateway") or {}).get("rate_limits")


def test_a_dropped_tag_is_deleted(fake_workspace) -> None:  # noqa: ANN001
    deploy(fake_workspace, config(tags={"team": "ml", "stage": "dev"}))
    assert deploy(fake_workspace, config(tags={"team": "ml"})).writes == ("tags",)
    [patch] = fake_workspace.write_calls()
    assert (patch["method"], patch["path"], patch["body"]) == ("PATCH", f"{API}/tags", {"delete_tags": ["stage"]})
    assert get_endpoint(fake_workspace.client(), "chat")["tags"] == [{"key": "team", "value": "ml"}]


def test_writes_go_tags_then_ai_gateway_then_config(fake_workspace) -> None:  # noqa: ANN001
    deploy(fake_workspace, config())
    changed = config(
        "2",
        tags={"team": "ai"},
        ai_gateway={"usage_tracking_config": {"enabled": True}, "rate_limits": [{"calls": 7, "renewal_period": "minute"}]},
    )
    result = deploy(fake_workspace, changed)
    assert result.writes == ("tags", "ai_gateway", "config") and result.ready == "READY"
    assert writes(fake_workspace) == [("PATCH", f"{API}/tags"), ("PUT", f"{API}/ai-gateway"), ("PUT", f"{API}/config")]
    assert deploy(fake_workspace, changed).writes == ()


def test_moving_an_enabled_inference_table_disables_it_then_sets_the_new_place(fake_workspace) -> None:  # noqa: ANN001
    table = {"catalog_name": "main", "schema_name": "logs", "table_name_prefix": "chat", "enabled": True}
    deploy(fake_workspace, config(ai_gateway={"inference_table_config": table}))
    moved = {**table, "schema_name": "audit"}
    result = deploy(fake_workspace, config(ai_gateway={"inference_table_config": moved}))
    assert result.writes == ("ai_gateway_disable", "ai_gateway")
    first, second = fake_workspace.write_calls()
    assert first["path"] == second["path"] == f"{API}/ai-gateway"
    assert first["body"] == {"inference_table_config": {**table, "enabled": False}}
    assert second["body"] == {"inference_table_config": moved}
    assert deploy(fake_workspace, config(ai_gateway={"inference_table_config": moved})).writes == ()


def test_an_immutable_change_is_refused_before_any_write_unless_recreate(fake_workspace) -> None:  # noqa: ANN001
    deploy(fake_workspace, config(description="first words"))
    changed = config("2", description="other words", tags={"team": "ai"})
    with pytest.raises(ImmutableChange) as err:
        deploy(fake_workspace, changed)
    message = str(err.value)
    assert "\n" not in message and message.startswith("description: 'other words' is not allowed")
    assert "--recreate" in message
    assert fake_workspace.write_calls() == []
    result = deploy(fake_workspace, changed, recreate=True)
    assert result.action == "recreated" and result.writes == ("delete", "create")
    assert writes(fake_workspace) == [("DELETE", API), ("POST", "/api/2.0/serving-endpoints")]
    now = get_endpoint(fake_workspace.client(), "chat")
    assert now["description"] == "other words" and result.served_entities == ("m-2",)
    assert deploy(fake_workspace, changed).writes == ()


def test_a_deploy_recovers_an_endpoint_whose_last_update_failed(fake_workspace) -> None:  # noqa: ANN001
    deploy(fake_workspace, config())
    fake_workspace.set_faults(fail_next_update="m-2")
    with pytest.raises(DeployFailed):
        apply_deploy(fake_workspace.client(), config("2"), progress=False, poll_interval=0.1)
    assert state_of(get_endpoint(fake_workspace.client(), "chat")) == ("READY", "UPDATE_FAILED")
    # the last good config: nothing to write, and no DeployFailed for an update that is not ours
    back = deploy(fake_workspace, config())
    assert (back.action, back.writes, back.ready, back.config_update) == ("unchanged", (), "READY", "UPDATE_FAILED")
    assert back.notes and "UPDATE_FAILED" in back.notes[0] and fake_workspace.write_calls() == []
    tagged = deploy(fake_workspace, config(tags={"team": "ml", "stage": "prod"}))
    assert tagged.writes == ("tags",) and tagged.ready == "READY"
    # the failed version again is a real update (a retry), which now succeeds
    retried = deploy(fake_workspace, config("2", tags={"team": "ml", "stage": "prod"}))
    assert retried.writes == ("config",) and (retried.ready, retried.config_update) == ("READY", "NOT_UPDATING")
    assert retried.served_entities == ("m-2",) and retried.notes == ()


def test_notifications_are_written_after_config_as_the_cli_does(fake_workspace) -> None:  # noqa: ANN001
    deploy(fake_workspace, config())
    mails = {"on_update_failure": ["ops@example.com"]}
    result = deploy(fake_workspace, config("2", email_notifications=mails))
    assert result.writes == ("config", "email_notifications")
    assert writes(fake_workspace) == [("PUT", f"{API}/config"), ("PATCH", f"{API}/notifications")]
    assert deploy(fake_workspace, config("2", email_notifications=mails)).writes == ()


def test_switching_to_an_external_model_is_refused_before_any_write(fake_workspace) -> None:  # noqa: ANN001
    deploy(fake_workspace, config())
    external = {
        "name": "gpt",
        "external_model": {
            "name": "gpt-4o-mini",
            "provider": "openai",
            "task": "llm/v1/chat",
            "openai_config": {"openai_api_key": "{{secrets/llm/openai}}"},
        },
    }
    with pytest.raises(ImmutableChange, match=r"^served_entities: 'external' is not allowed; .*'registered'"):
        deploy(fake_workspace, config(served_entities=[external], tags={"team": "ai"}))
    assert fake_workspace.write_calls() == []


def test_deploy_endpoint_reports_its_progress_to_the_callback(fake_workspace) -> None:  # noqa: ANN001
    """written -> polled ... -> done with the final state; the same config again: unchanged."""
    from llmops_nb.steps.deploy import deploy_endpoint

    cfg = EndpointConfig.model_validate(
        {"name": "progress", "served_entities": [{"entity_name": "m", "entity_version": "1", "scale_to_zero_enabled": False}]}
    )
    for expected in ("created", "unchanged"):
        events: list = []
        result = deploy_endpoint(fake_workspace.client(), cfg, poll_interval=0.1, timeout=30, on_progress=events.append)
        phases = [e.phase for e in events]
        assert phases[0] == "written" and phases[-1] == "done" and set(phases[1:-1]) == {"polled"}, phases
        assert {e.action for e in events} == {expected} == {result.action}
        assert (events[-1].ready, events[-1].config_update) == ("READY", "NOT_UPDATING")
        assert (events[-2].ready, events[-2].config_update) == ("READY", "NOT_UPDATING")
