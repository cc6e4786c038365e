"""Steps the conformance scenarios share: create and wait, ask, and the chat-answer contract."""

from __future__ import annotations

from conformance_targets import Target
from databricks.sdk.service.serving import ChatMessage, ChatMessageRole, EndpointCoreConfigInput

API = "/api/2.0/serving-endpoints"


def core(name: str, *entities: dict, routes: dict[str, int] | None = None) -> EndpointCoreConfigInput:
    """The SDK config of ``entities`` (dict bodies), with explicit routes if given."""
    body: dict = {"name": name, "served_entities": list(entities)}
    if routes:
        body["traffic_config"] = {"routes": [{"served_entity_name": k, "traffic_percentage": v} for k, v in routes.items()]}
    return EndpointCoreConfigInput.from_dict(body)


def create(target: Target, name: str, *entities: dict, **kwargs) -> dict:
    """Create through the SDK, then wait (our poll) for READY; the endpoint's GET JSON."""
    target.client().serving_endpoints.create(name=name, config=core(name, *entities), **kwargs)
    return target.wait_ready(name)


def ask(target: Target, name: str, text: str = "Say hello.") -> object:
    """One chat query through the SDK (OpenAI-style body)."""
    return target.client().serving_endpoints.query(
        name=name, messages=[ChatMessage(role=ChatMessageRole.USER, content=text)], max_tokens=16
    )


def assert_chat_answer(r) -> None:
    """Databricks' chat contract: choices with an assistant message, and token usage."""
    assert r.choices and r.choices[0].message.content.strip(), r
    assert r.choices[0].message.role.value == "assistant"
    u = r.usage
    assert u.prompt_tokens > 0 and u.completion_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens


def routes_of(config: dict) -> dict[str, int]:
    return {r["served_entity_name"]: r["traffic_percentage"] for r in config["traffic_config"]["routes"]}


def entity_names(ep: dict) -> list[str]:
    """The served entity names of an endpoint's active config."""
    return [e["name"] for e in ep["config"]["served_entities"]]


def assert_serves_only(target: Target, name: str, entity: str) -> dict:
    """Wait for READY; ``entity`` is the one served entity, gets 100% and answers."""
    ep = target.wait_ready(name)
    assert entity_names(ep) == [entity]
    assert routes_of(ep["config"]) == {entity: 100}
    r = ask(target, name)
    assert_chat_answer(r)
    assert r.served_model_name in (None, entity)
    return ep
