"""``system.serving.served_entities`` on the local workspace: which served entity an id is.

Databricks keeps the serving change history in this system table: one row per served entity of
an endpoint each time its config changes (``change_time``), with ``served_entity_id`` (the id
every inference-table row carries), ``served_entity_name``, ``endpoint_name``, the entity's
name and version and ``endpoint_delete_time`` once the endpoint is gone (docs.databricks.com,
admin/system-tables, "served entities"; columns in
:data:`llmops_nb.protocol.inference_table.SERVED_ENTITIES_COLUMNS`). The endpoint's own GET has no
such id (databricks-sdk ``ServedEntityOutput``), so this is where a reader of an inference table
finds which entity answered.

Here the workspace appends those rows to a Delta table at
``$LLMOPS_HOME/tables/system/serving/served_entities`` when a config is applied (before the
endpoint reports it READY) and when an endpoint is deleted; the SQL statements API reads it as
it reads the inference tables. The ids are
:func:`llmops_nb.workspace.serving.inference_table.served_entity_id`. A write that fails (no
``deltalake``) is printed once on stderr; serving never fails for it.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from llmops_nb.protocol import inference_table as pt
from llmops_nb.workspace.serving.inference_table import served_entity_id

_lock = threading.Lock()
_warned: set[Path] = set()


def _entity_type(entity: dict) -> str:
    if entity.get("external_model"):
        return "EXTERNAL_MODEL"
    if entity.get("foundation_model"):
        return "FOUNDATION_MODEL"
    return "CUSTOM_MODEL"


def rows(rec: dict, config: dict, *, deleted: bool = False, now: float | None = None) -> list[dict[str, Any]]:
    """The rows of endpoint record ``rec`` with ``config`` applied (or the endpoint deleted)."""
    when = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC)
    out = []
    for entity in config.get("served_entities") or []:
        ext = entity.get("external_model")
        custom = None if ext else {k: entity.get(k) for k in ("entity_name", "entity_version", "workload_size") if entity.get(k)}
        out.append(
            {
                "served_entity_id": served_entity_id(rec.get("id"), entity),
                "account_id": None,
                "workspace_id": None,
                "created_by": rec.get("creator"),
                "endpoint_name": rec.get("name"),
                "endpoint_id": rec.get("id"),
                "served_entity_name": entity.get("name"),
                "entity_type": _entity_type(entity),
                "entity_name": entity.get("entity_name") or (ext or {}).get("name"),
                "entity_version": entity.get("entity_version"),
                "endpoint_config_version": config.get("config_version"),
                "task": (ext or {}).get("task"),
                # never a key: only the provider and the model's name of an external model
                "external_model_config": json.dumps({"provider": ext.get("provider"), "name": ext.get("name")}) if ext else None,
                "foundation_model_config": None,
                "custom_model_config": json.dumps(custom) if custom else None,
                "feature_spec_config": None,
                "change_time": when,
                "endpoint_delete_time": when if deleted else None,
            }
        )
    return out


def _arrow_schema() -> Any:
    import pyarrow as pa

    types = {"STRING": pa.string(), "INT": pa.int32(), "TIMESTAMP": pa.timestamp("us", tz="UTC")}
    return pa.schema([(name, types[t]) for name, t in pt.SERVED_ENTITIES_COLUMNS.items()])


def record_change(home: Path, rec: dict, config: dict | None, *, deleted: bool = False) -> None:
    """Append the rows of ``rec`` with ``config`` (blocking: call it off the event loop)."""
    found = rows(rec, config or {}, deleted=deleted)
    if not found:
        return
    try:
        import pyarrow as pa
        from deltalake import write_deltalake

        path = pt.local_path(home, pt.SERVED_ENTITIES)
        with _lock:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_deltalake(str(path), pa.Table.from_pylist(found, schema=_arrow_schema()), mode="append")
    except Exception as e:  # noqa: BLE001 - the system table must never fail a deploy
        if Path(home) not in _warned:
            _warned.add(Path(home))
            print(
                f"WARNING {pt.SERVED_ENTITIES}: rows not written ({type(e).__name__}: {str(e).splitlines()[0][:200]})",
                file=sys.stderr,
                flush=True,
            )
