"""``system.serving.served_entities`` on the local workspace (workspace/serving/system_tables.py):
one row per served entity and config change, the ids the inference tables carry, no key."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops_nb.protocol import inference_table as pt
from llmops_nb.workspace.serving import system_tables
from llmops_nb.workspace.serving.inference_table import entity_facts

KEY = "sk-" + "served-entities-never-written"
REC = {"id": "e1d", "name": "chat", "creator": "me@example.com"}
CONFIG = {
    "config_version": 3,
    "served_entities": [
        {"name": "m-2", "entity_name": "m", "entity_version": "2", "workload_size": "Small"},
        {"name": "gpt", "external_model": {"name": "gpt-4o", "provider": "openai", "task": "llm/v1/chat",
                                           "openai_config": {"openai_api_key_plaintext": KEY}}},
    ],
}  # fmt: skip


def test_each_entity_is_one_row_with_the_id_its_inference_table_rows_carry() -> None:
    rows = system_tables.rows(REC, CONFIG, now=1767225600.0)
    assert [list(r) for r in rows] == [list(pt.SERVED_ENTITIES_COLUMNS)] * 2
    assert [(r["served_entity_name"], r["entity_type"], r["entity_name"], r["entity_version"]) for r in rows] == [
        ("m-2", "CUSTOM_MODEL", "m", "2"),
        ("gpt", "EXTERNAL_MODEL", "gpt-4o", None),
    ]
    rec = {**REC, "config": CONFIG}
    assert [r["served_entity_id"] for r in rows] == [entity_facts(rec, "m-2")["id"], entity_facts(rec, "gpt")["id"]]
    assert {r["endpoint_name"] for r in rows} == {"chat"} and {r["endpoint_config_version"] for r in rows} == {3}
    assert all(r["endpoint_delete_time"] is None for r in rows) and KEY not in repr(rows)
    gone = system_tables.rows(REC, CONFIG, deleted=True, now=1767225600.0)
    assert all(r["endpoint_delete_time"] == r["change_time"] for r in gone)


def test_the_rows_are_appended_to_a_delta_table(tmp_path: Path) -> None:
    deltalake = pytest.importorskip("deltalake", reason="the local extra (deltalake) is required")
    system_tables.record_change(tmp_path, REC, CONFIG)
    system_tables.record_change(tmp_path, REC, CONFIG, deleted=True)
    table = deltalake.DeltaTable(str(pt.local_path(tmp_path, pt.SERVED_ENTITIES))).to_pyarrow_table().to_pylist()
    assert len(table) == 4 and sum(r["endpoint_delete_time"] is not None for r in table) == 2
    assert KEY not in "".join(p.read_text(errors="ignore") for p in tmp_path.rglob("*.json"))
