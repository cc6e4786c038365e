"""What the local workspace accepts but does not do: one warning line per field.

Databricks-shaped bodies keep every field (GET echoes it as Databricks does); what this
machine cannot apply is said at the write that sets it, in the answer's ``warnings`` list
(an extra key the SDK's dataclasses ignore; a raw client, ours included, prints it), in the
workspace log and in the served entities' build logs. Each line names the field and the
value and says what happens instead.
"""

from __future__ import annotations

from typing import Any

_PROVISIONED = (
    "min_provisioned_throughput",
    "max_provisioned_throughput",
    "provisioned_model_units",
    "min_provisioned_concurrency",
    "max_provisioned_concurrency",
    "burst_scaling_enabled",
)
#: said only when the ``deltalake`` package (the ``local`` extra) is missing: then no table is written
_NO_DELTA = (
    "accepted, not applied: the local workspace writes inference tables with the "
    "deltalake package, which is not installed (pip install 'llmops-nb[local]')"
)


def _line(field: str, value: Any, what: str) -> str:
    shown = "" if value is None else f"={value!r}"
    return f"{field}{shown}: {what}"


def entity_notices(i: int, e: dict, prefix: str = "config.served_entities") -> list[str]:
    """Lines for one served entity (registered models run in one local process each)."""
    at = f"{prefix}[{i}]"
    out = []
    wtype = e.get("workload_type")
    if wtype and wtype != "CPU":
        out.append(
            _line(f"{at}.workload_type", wtype, "accepted; the local workspace runs it on this machine's CPU (no GPU workloads)")
        )
    size = e.get("workload_size")
    if size and size != "Small" and not e.get("external_model"):
        out.append(
            _line(
                f"{at}.workload_size", size, "accepted; the local workspace runs one scoring process per entity whatever the size"
            )
        )
    if e.get("scale_to_zero_enabled") and not e.get("external_model"):
        out.append(
            _line(
                f"{at}.scale_to_zero_enabled", True, "accepted; the local entity stays running (no scale-to-zero, no cold start)"
            )
        )
    for key in _PROVISIONED:
        if e.get(key) is not None:
            out.append(_line(f"{at}.{key}", e[key], "accepted; the local workspace has no provisioned throughput or concurrency"))
    if e.get("instance_profile_arn"):
        out.append(_line(f"{at}.instance_profile_arn", None, "accepted; no AWS instance profile is attached locally"))
    return out


def config_notices(config: dict | None) -> list[str]:
    """Lines for a core config: its entities and the legacy inference table."""
    config = config or {}
    out = [line for i, e in enumerate(config.get("served_entities") or []) for line in entity_notices(i, e)]
    capture = config.get("auto_capture_config")
    if capture and capture.get("enabled") is not False and not _delta_installed():
        out.append(_line("config.auto_capture_config", None, _NO_DELTA))
    return out


def gateway_notices(gateway: dict | None, prefix: str = "ai_gateway") -> list[str]:
    """Lines for an AI gateway config."""
    gateway = gateway or {}
    out = []
    for i, limit in enumerate(gateway.get("rate_limits") or []):
        key = limit.get("key")
        if key in ("user_group", "service_principal"):
            out.append(
                _line(
                    f"{prefix}.rate_limits[{i}].key",
                    key,
                    "accepted, not enforced "
                    "locally: the local workspace cannot resolve groups or service "
                    "principals (endpoint and user limits are enforced)",
                )
            )
    if gateway.get("guardrails"):
        out.append(
            _line(
                f"{prefix}.guardrails",
                None,
                "accepted, not enforced locally: no safety, PII or topic filter runs on requests or answers",
            )
        )
    table = gateway.get("inference_table_config")
    if table and table.get("enabled") and not _delta_installed():
        out.append(_line(f"{prefix}.inference_table_config", None, _NO_DELTA))
    return out


def _delta_installed() -> bool:
    """True when inference tables can be written (workspace/inference_table.py needs deltalake)."""
    import importlib.util

    return importlib.util.find_spec("deltalake") is not None


def endpoint_notices(body: dict) -> list[str]:
    """Lines for a whole create body (stored form)."""
    out = config_notices(body.get("config"))
    out += gateway_notices(body.get("ai_gateway"))
    if body.get("route_optimized"):
        out.append(_line("route_optimized", True, "accepted; a local endpoint has one URL and no optimized route"))
    if body.get("email_notifications"):
        out.append(_line("email_notifications", None, "accepted; the local workspace sends no email"))
    if body.get("budget_policy_id"):
        out.append(_line("budget_policy_id", body["budget_policy_id"], "accepted; the local workspace has no budget policies"))
    if body.get("rate_limits"):
        out.append(_line("rate_limits", None, "accepted (deprecated), not enforced locally; use ai_gateway.rate_limits"))
    return out
