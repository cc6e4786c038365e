"""Server-side rules on changing an existing endpoint, as Databricks enforces them.

- An endpoint cannot switch its served entities between kinds (registered model, external
  model, foundation model): delete it and create it again (our REFERENCE; the Terraform
  provider and the CLI recreate on such a change).
- While an inference table is enabled its location (catalog, schema, table prefix) cannot
  change: disable it first, then set the new location. databricks-sdk documents it on
  ``serving.AiGatewayInferenceTableConfig`` ("On update, you have to disable inference table
  first in order to change the catalog name") and on the legacy ``AutoCaptureConfigInput``
  ("you cannot change the catalog name if the inference table is already enabled").

Each violation is one 400 INVALID_PARAMETER_VALUE line naming the field; nothing changes.
"""

from __future__ import annotations

from llmops_nb.workspace.apierror import invalid

LOCATION = ("catalog_name", "schema_name", "table_name_prefix")


def entity_kind(entity: dict) -> str:
    if entity.get("external_model"):
        return "external model"
    if entity.get("foundation_model"):
        return "foundation model"
    return "registered model"


def check_same_kind(name: str, current: dict | None, new: dict) -> None:
    """400 if ``new`` serves another kind of entity than the endpoint's ``current`` config."""
    old = {entity_kind(e) for e in (current or {}).get("served_entities") or []}
    if not old:
        return
    for i, e in enumerate(new.get("served_entities") or []):
        kind = entity_kind(e)
        if kind not in old:
            raise invalid(
                f"config.served_entities[{i}]: a {kind} is not allowed on endpoint "
                f"{name}, which serves {' and '.join(sorted(old))}s; an endpoint "
                "cannot switch between registered and external models (delete it "
                "and create it again)"
            )


def check_table_location(field: str, current: dict | None, new: dict | None) -> None:
    """400 if ``new`` moves an inference table that ``current`` has enabled."""
    if not current or not current.get("enabled") or not new or new.get("enabled") is False:
        return
    for key in LOCATION:
        if new.get(key) != current.get(key):
            raise invalid(
                f"{field}.{key}: {new.get(key)!r} is not allowed while the inference "
                f"table is enabled at {current.get(key)!r}; disable it first "
                "(enabled: false), then set the new location"
            )


def current_config(rec: dict) -> dict | None:
    """The config a change is judged against: the served one, else the pending first one."""
    return rec.get("config") or rec.get("pending_config")
