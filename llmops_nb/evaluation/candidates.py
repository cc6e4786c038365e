"""What an evaluation compares: ``evaluation.candidates`` resolved to what answers, and what each costs.

:func:`resolve` turns each :class:`~llmops_nb.config.project.CandidateConfig` into a
:class:`Target` (endpoint, served entity, registered version) and checks that it exists before
any row is sent: the endpoint, the served entity, the version or alias and an entity serving
it. :func:`cost_per_1k` prices 1,000 requests from the user's price table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmops_nb.config.project import NEW_CANDIDATE, PriceConfig
from llmops_nb.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from databricks.sdk import WorkspaceClient

    from llmops_nb.config.project import CandidateConfig


@dataclass(frozen=True)
class Target:
    """One candidate: where it answers, and the registered version of the model it is (if any)."""

    name: str
    endpoint: str
    served_entity: str | None = None
    version: str | None = None

    @property
    def label(self) -> str:
        return f"{self.endpoint}/{self.served_entity}" if self.served_entity else self.endpoint


def _entities(found: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    return list(((found or {}).get("config") or {}).get("served_entities") or [])


def resolve(
    w: WorkspaceClient,
    candidates: list[CandidateConfig],
    *,
    endpoint: str,
    model_name: str | None,
    model_version: str | None,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
) -> list[Target]:
    """Each candidate as a :class:`Target`; one ConfigError line naming the candidate when it does not exist.

    ``endpoint``: the config's endpoint (a candidate without its own); ``model_version``: the
    version the chain just registered (a candidate with no target).
    """
    from llmops_nb.endpoints.ops import get_endpoint

    seen: dict[str, dict[str, Any] | None] = {}

    def endpoint_view(name: str, field: str) -> dict[str, Any]:
        if name not in seen:
            seen[name] = get_endpoint(w, name)
        found = seen[name]
        if found is None:
            raise ConfigError(field, name, "an existing serving endpoint (deploy it first, or fix the name)")
        return found

    targets = []
    for i, c in enumerate(candidates):
        where = f"evaluation.candidates[{i}]"
        name = c.endpoint or endpoint
        found = endpoint_view(name, f"{where}.endpoint")
        entities = _entities(found)
        if c.served_entity is not None:
            entity = next((e for e in entities if e.get("name") == c.served_entity), None)
            if entity is None:
                names = ", ".join(str(e.get("name")) for e in entities) or "(none)"
                raise ConfigError(f"{where}.served_entity", c.served_entity, f"a served entity of {name}: {names}")
            version = str(entity.get("entity_version")) if model_name and entity.get("entity_name") == model_name else None
            targets.append(Target(c.name, name, c.served_entity, version))
            continue
        wanted = c.version if c.version is not None else (model_version if c.endpoint is None else None)
        if c.version is not None and not c.version.isdigit():
            from llmops_nb.models.registry import get_version_by_alias

            wanted = get_version_by_alias(str(model_name), c.version, tracking_uri=tracking_uri, registry_uri=registry_uri)
            if wanted is None:
                raise ConfigError(f"{where}.version", c.version, f"a version number or an alias of {model_name} that is set")
        if wanted is None:  # any endpoint through its traffic split
            targets.append(Target(c.name, name))
            continue
        serving = [e for e in entities if e.get("entity_name") == model_name and str(e.get("entity_version")) == str(wanted)]
        if not serving:
            if c.version is None and c.endpoint is None:  # the new version, served through the split
                targets.append(Target(c.name, name, None, str(wanted)))
                continue
            raise ConfigError(
                f"{where}.version",
                c.version,
                f"a version {name} serves (version {wanted} of {model_name} is not a served entity of it: "
                "deploy it beside the others, traffic 0 is fine)",
            )
        targets.append(Target(c.name, name, str(serving[0].get("name")), str(wanted)))
    return targets


def default_targets(endpoint: str, model_version: str | None) -> list[Target]:
    """No candidates listed: the new version through the endpoint's traffic split."""
    return [Target(NEW_CANDIDATE, endpoint, None, model_version)]


def cost_per_1k(price: PriceConfig | None, table: pd.DataFrame, query_seconds: float) -> float | None:
    """What 1,000 requests like these rows cost at ``price``: tokens in and out at their prices per
    million (answered rows' mean), or ``per_hour`` over the evaluation's own throughput
    (rows per second of ``query_seconds``, at its concurrency). None without a price."""
    if price is None:
        return None
    ok = table[table["error"].isna()]
    total = 0.0
    if price.input_per_million is not None or price.output_per_million is not None:
        if not len(ok):
            return None
        prompt = float(ok["prompt_tokens"].astype(float).mean())
        completion = float(ok["completion_tokens"].astype(float).mean())
        total += 1000 * (prompt * (price.input_per_million or 0) + completion * (price.output_per_million or 0)) / 1e6
    if price.per_hour is not None:
        if not len(table) or query_seconds <= 0:
            return None
        total += price.per_hour * (query_seconds / len(table)) * 1000 / 3600
    return total if math.isfinite(total) else None
