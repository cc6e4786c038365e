"""Provisioned throughput for a Unity Catalog model (``model.source: uc``) served on Databricks.

Databricks serves a Unity Catalog LLM (``system.ai.*`` or one of yours) with provisioned
throughput: ``GET /api/2.0/serving-endpoints/get-model-optimization-info/{name}/{version}``
answers ``{optimizable, model_type, throughput_chunk_size, dbus}``, and the served entity sets
``min_provisioned_throughput`` / ``max_provisioned_throughput`` (tokens per second, databricks-sdk
``ServedEntityInput``) in multiples of ``throughput_chunk_size`` (docs.databricks.com
machine-learning/foundation-models/deploy-prov-throughput-foundation-model-apis, "Create your
provisioned throughput endpoint using the REST API": it refuses a model that is not
``optimizable``, then sets ``min = k * chunk_size``, ``max = m * chunk_size``).
databricks-sdk-py (0.167) has no method for this route, so it is called with ``w.api_client.do``.

:func:`with_throughput` fills those fields in on every served entity of the model, from the
config's own values when given, else one chunk: min 0 (scale to zero), max one chunk. A model
that is not optimizable, or a value that is not a multiple of the chunk size, is one ConfigError
line before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmops_nb.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

    from llmops_nb.config.endpoint import EndpointConfig

OPTIMIZATION_INFO = "/api/2.0/serving-endpoints/get-model-optimization-info/{name}/{version}"
_FIELDS = ("min_provisioned_throughput", "max_provisioned_throughput")


@dataclass(frozen=True)
class OptimizationInfo:
    """The optimization-info answer for one model version."""

    name: str
    version: str
    optimizable: bool
    model_type: str | None = None
    #: Tokens per second one unit of provisioned throughput adds; None when not optimizable.
    chunk_size: int | None = None
    dbus: float | None = None


@dataclass(frozen=True)
class Throughput:
    """The provisioned throughput one served entity gets (tokens per second)."""

    #: The served entity's index in ``served_entities`` and its name.
    index: int
    entity: str
    minimum: int
    maximum: int
    info: OptimizationInfo

    def describe(self) -> str:
        chunk = self.info.chunk_size or 1
        return (
            f"{self.info.name} v{self.info.version} ({self.info.model_type or 'model'}) serves "
            f"{self.minimum}-{self.maximum} tokens/s ({self.minimum // chunk}-{self.maximum // chunk} "
            f"chunks of {chunk})"
        )


def optimization_info(w: WorkspaceClient, name: str, version: str) -> OptimizationInfo:
    """Ask the workspace; a model or version it does not have is one ConfigError line."""
    from databricks.sdk.errors import NotFound

    try:
        raw: Any = w.api_client.do("GET", OPTIMIZATION_INFO.format(name=name, version=version))
    except NotFound as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError("model.version", version, f"an existing version of {name} in Unity Catalog ({first})") from None
    raw = raw if isinstance(raw, dict) else {}
    chunk = raw.get("throughput_chunk_size")
    return OptimizationInfo(
        name=name,
        version=str(version),
        optimizable=bool(raw.get("optimizable")),
        model_type=raw.get("model_type"),
        chunk_size=int(chunk) if isinstance(chunk, int | float) and chunk > 0 else None,
        dbus=raw.get("dbus"),
    )


def throughput(info: OptimizationInfo, minimum: int | None, maximum: int | None, *, at: str) -> tuple[int, int]:
    """(min, max) for ``info`` from the config's values (None: min 0, max one chunk).

    ``at`` is the served entity's field path for the error line.
    """
    if not info.optimizable or info.chunk_size is None:
        raise ConfigError(
            "model.name",
            info.name,
            f"a model Databricks can serve with provisioned throughput: get-model-optimization-info says version "
            f"{info.version} is not optimizable (serve a supported model, e.g. from system.ai, or register it with "
            "another source and a workload_size)",
        )
    chunk = info.chunk_size
    low = 0 if minimum is None else minimum
    high = max(chunk, low) if maximum is None else maximum
    for field, value in zip(_FIELDS, (low, high), strict=True):
        if value < 0 or value % chunk:
            raise ConfigError(
                f"{at}.{field}",
                value,
                f"a multiple of {info.name}'s throughput_chunk_size {chunk} tokens/s (0, {chunk}, {2 * chunk}, ...)",
            )
    if high < max(low, chunk):
        raise ConfigError(
            f"{at}.max_provisioned_throughput", high, f"at least min_provisioned_throughput ({low}) and one chunk ({chunk})"
        )
    return low, high


def plan(cfg: EndpointConfig, model: str, w: WorkspaceClient, *, version: str | None = None) -> list[Throughput]:
    """The provisioned throughput of every served entity of ``model`` in ``cfg``; an entity with
    no ``entity_version`` serves ``version``."""
    found = []
    infos: dict[str, OptimizationInfo] = {}
    for i, entity in enumerate(cfg.served_entities):
        if entity.entity_name != model:
            continue
        at = f"endpoint.served_entities[{i}]"
        served = entity.entity_version or version
        if served is None:
            raise ConfigError(f"{at}.entity_version", None, "the Unity Catalog version to serve (model.version)")
        if served not in infos:
            infos[served] = optimization_info(w, model, served)
        info = infos[served]
        low, high = throughput(info, entity.min_provisioned_throughput, entity.max_provisioned_throughput, at=at)
        found.append(Throughput(i, entity.name or f"{model.replace('.', '-')}-{served}", low, high, info))
    return found


def with_throughput(cfg: EndpointConfig, model: str, w: WorkspaceClient) -> EndpointConfig:
    """``cfg`` with ``min/max_provisioned_throughput`` set on every served entity of ``model``."""
    planned = plan(cfg, model, w)
    if not planned:
        return cfg
    data = cfg.model_dump(exclude_unset=True)
    for t in planned:
        data["served_entities"][t.index].update(min_provisioned_throughput=t.minimum, max_provisioned_throughput=t.maximum)
    return type(cfg).model_validate(data)
