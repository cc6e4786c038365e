"""Legacy request forms Databricks still accepts: ``served_models`` and routes by model name.

``config.served_models`` (``ServedModelInput``: ``model_name``, ``model_version``, ...) is the
form before served entities; Databricks serves it as served entities and GET shows both
lists (the Terraform provider's ``serving/resource_model_serving.go`` drops one of the two
after every read for that reason). A route may name its entity by ``served_model_name``
(``serving.Route``). The stored form here is always ``served_entities`` with
``served_entity_name`` routes; an endpoint written with ``served_models`` is marked so its
GET also shows ``served_models``.
"""

from __future__ import annotations

from typing import Any

from llmops_nb.workspace.apierror import invalid

MARK = "legacy_served_models"
_RENAMED = {"model_name": "entity_name", "model_version": "entity_version"}


def to_entities(config: Any) -> tuple[Any, bool]:
    """``config`` with ``served_models`` turned into ``served_entities``; True if it had them."""
    if not isinstance(config, dict):
        return config, False
    config = dict(config)
    legacy = "served_models" in config
    if legacy:
        models = config.pop("served_models")
        if config.get("served_entities"):
            raise invalid(
                "config.served_models: not allowed with served_entities; give one of the two (served_models is the legacy form)"
            )
        if not isinstance(models, list):
            raise invalid(f"config.served_models: {type(models).__name__} is not allowed; a list of served models")
        config["served_entities"] = [{_RENAMED.get(k, k): v for k, v in m.items()} if isinstance(m, dict) else m for m in models]
    traffic = config.get("traffic_config")
    if isinstance(traffic, dict) and isinstance(traffic.get("routes"), list):
        routes = []
        for r in traffic["routes"]:
            if isinstance(r, dict) and "served_model_name" in r:
                r = dict(r)
                name = r.pop("served_model_name")
                r.setdefault("served_entity_name", name)
            routes.append(r)
        config["traffic_config"] = {**traffic, "routes": routes}
    return config, legacy


def legacy_message(message: str) -> str:
    """A schema error about a converted body, naming the fields the client sent."""
    message = message.replace("served_entities[", "served_models[")
    for old, new in _RENAMED.items():
        message = message.replace(f"].{new}", f"].{old}")
    return message


def served_models_view(entities: list[dict]) -> list[dict]:
    """``ServedModelOutput`` items of stored (and viewed) served entities."""
    back = {v: k for k, v in _RENAMED.items()}
    return [{back.get(k, k): v for k, v in e.items() if k != "external_model"} for e in entities if not e.get("external_model")]


def routes_view(routes: list[dict]) -> list[dict]:
    """Routes of a legacy endpoint: ``served_model_name`` beside ``served_entity_name``."""
    return [{**r, "served_model_name": r.get("served_entity_name")} for r in routes]
