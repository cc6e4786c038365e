"""Inference (payload) tables: their name, their columns, and where the local workspace keeps them.

Shared by the local workspace, which writes them (``workspace/inference_table.py``), and the
replay of an evaluation, which reads them (``replay.py``). Imports nothing heavy.

Two schemas, as Databricks writes them:

- the AI gateway's (``ai_gateway.inference_table_config``): the columns of the table Databricks
  creates, as ``SHOW CREATE TABLE`` of a real ``<prefix>_payload`` table prints them (and the
  docs' "AI Gateway-enabled inference table schema", docs.databricks.com/aws/en/ai-gateway/
  inference-tables): ``databricks_request_id STRING, request_date DATE, client_request_id
  STRING, request_time TIMESTAMP, status_code INT, sampling_fraction DOUBLE,
  execution_duration_ms BIGINT, request STRING, response STRING, logging_error_codes
  ARRAY<STRING>, served_entity_id STRING, requester STRING``;
- the legacy one (``config.auto_capture_config``, docs.databricks.com/machine-learning/
  model-serving/inference-tables, "Unity Catalog inference table schema"):
  ``databricks_request_id STRING, client_request_id STRING, date DATE, timestamp_ms LONG,
  status_code INT, sampling_fraction DOUBLE, execution_time_ms LONG, request STRING,
  response STRING, request_metadata MAP<STRING, STRING>`` (endpoint_name, model_name,
  model_version).

The table is ``<catalog_name>.<schema_name>.<table_name_prefix>_payload``, the prefix being the
endpoint's name when not set. Locally it is the Delta table in the folder
``$LLMOPS_HOME/tables/<catalog>/<schema>/<prefix>_payload``.
"""

from __future__ import annotations

import re
from pathlib import Path

GATEWAY = "ai_gateway"
LEGACY = "auto_capture"

#: column -> Delta/Spark type, in table order
COLUMNS: dict[str, dict[str, str]] = {
    GATEWAY: {
        "databricks_request_id": "STRING",
        "request_date": "DATE",
        "client_request_id": "STRING",
        "request_time": "TIMESTAMP",
        "status_code": "INT",
        "sampling_fraction": "DOUBLE",
        "execution_duration_ms": "BIGINT",
        "request": "STRING",
        "response": "STRING",
        "logging_error_codes": "ARRAY<STRING>",
        "served_entity_id": "STRING",
        "requester": "STRING",
    },
    LEGACY: {
        "databricks_request_id": "STRING",
        "client_request_id": "STRING",
        "date": "DATE",
        "timestamp_ms": "BIGINT",
        "status_code": "INT",
        "sampling_fraction": "DOUBLE",
        "execution_time_ms": "BIGINT",
        "request": "STRING",
        "response": "STRING",
        "request_metadata": "MAP<STRING,STRING>",
    },
}

#: Which served entity a ``served_entity_id`` is: the serving system table (one row per entity and
#: config change; docs.databricks.com admin/system-tables "served entities"). The GET view of an
#: endpoint has no id (databricks-sdk ``ServedEntityOutput`` has none), so a reader joins the
#: inference table to this one on ``served_entity_id`` for ``served_entity_name``.
SERVED_ENTITIES = "system.serving.served_entities"
#: its columns, in table order (the ``*_config`` structs of Databricks are JSON text locally)
SERVED_ENTITIES_COLUMNS: dict[str, str] = {
    "served_entity_id": "STRING",
    "account_id": "STRING",
    "workspace_id": "STRING",
    "created_by": "STRING",
    "endpoint_name": "STRING",
    "endpoint_id": "STRING",
    "served_entity_name": "STRING",
    "entity_type": "STRING",
    "entity_name": "STRING",
    "entity_version": "STRING",
    "endpoint_config_version": "INT",
    "task": "STRING",
    "external_model_config": "STRING",
    "foundation_model_config": "STRING",
    "custom_model_config": "STRING",
    "feature_spec_config": "STRING",
    "change_time": "TIMESTAMP",
    "endpoint_delete_time": "TIMESTAMP",
}

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def enabled_tables(endpoint: str, rec: dict) -> list[tuple[str, str]]:
    """``(kind, full table name)`` of each enabled inference table of an endpoint record
    (a stored record or a GET answer: ``ai_gateway`` and ``config``/``pending_config``)."""
    out = []
    gateway = (rec.get("ai_gateway") or {}).get("inference_table_config") or {}
    if gateway.get("enabled"):
        out.append((GATEWAY, table_name(endpoint, gateway)))
    config = rec.get("config") or rec.get("pending_config") or {}
    capture = config.get("auto_capture_config") or {}
    if capture and capture.get("enabled") is not False and capture.get("catalog_name"):
        out.append((LEGACY, table_name(endpoint, capture)))
    return out


def table_name(endpoint: str, cfg: dict) -> str:
    """``<catalog>.<schema>.<prefix>_payload`` of an inference table config."""
    payload = (cfg.get("state") or {}).get("payload_table") or {}
    if payload.get("name") and "." in str(payload["name"]):  # Databricks' legacy GET says it
        return str(payload["name"])
    prefix = cfg.get("table_name_prefix") or endpoint
    return f"{cfg.get('catalog_name')}.{cfg.get('schema_name')}.{prefix}_payload"


def local_path(home: Path, full_name: str) -> Path:
    """The folder of the local Delta table ``catalog.schema.table`` under the workspace home."""
    parts = full_name.split(".")
    if len(parts) != 3 or not all(_NAME.match(p) for p in parts):
        raise ValueError(f"inference table {full_name!r}: expected catalog.schema.table of letters, digits, '_' or '-'")
    return Path(home) / "tables" / parts[0] / parts[1] / parts[2]
