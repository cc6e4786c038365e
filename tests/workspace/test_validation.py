"""Bad bodies answer 400 INVALID_PARAMETER_VALUE with one line, and change nothing."""

from __future__ import annotations

import pytest
import requests
from ws_helpers import chat, post

API = "/api/2.0/serving-endpoints"
GOOD = {"name": "val-ok", "config": {"served_entities": [{"entity_name": "m", "entity_version": "1"}]}}
OPENAI = {
    "name": "gpt",
    "provider": "openai",
    "task": "llm/v1/chat",
    "openai_config": {"openai_api_key_plaintext": "sk-" + "thisisnotarealkey0000000"},  # split: no literal looks like a key
}
BAD_CREATES = [
    {**GOOD, "colour": "red"},
    {**GOOD, "name": "bad name!"},
    {
        "name": "val-x",
        "config": {
            "served_entities": [
                {"entity_name": "m", "entity_version": "1", "name": "a"},
                {"entity_name": "m", "entity_version": "2", "name": "b"},
            ],
            "traffic_config": {
                "routes": [
                    {"served_entity_name": "a", "traffic_percentage": 60},
                    {"served_entity_name": "b", "traffic_percentage": 30},
                ]
            },
        },
    },
    {
        "name": "val-x",
        "config": {
            "served_entities": [
                {
                    "external_model": {  # key and reference
                        **OPENAI,
                        "openai_config": {**OPENAI["openai_config"], "openai_api_key": "{{secrets/s/k}}"},
                    }
                }
            ]
        },
    },
    {"name": "val-x", "config": {"served_entities": [{"entity_name": "m"}]}},
    {"name": "val-x"},
]


def _endpoints(ws):
    import requests

    r = requests.get(ws.host + API, headers={"Authorization": f"Bearer {ws.token}"}, timeout=5)
    return r.json()["endpoints"]


@pytest.mark.parametrize("body", BAD_CREATES)
def test_bad_create_is_400_and_changes_nothing(ws, body):
    before = _endpoints(ws)
    r = post(ws, API, body)
    assert r.status_code == 400, r.text
    err = r.json()
    assert err["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "\n" not in err["message"] and err["message"]
    assert "sk-thisisnotarealkey" not in err["message"]
    assert _endpoints(ws) == before


def test_malformed_json_is_400(ws):
    r = post(ws, API, raw="{not json")
    assert r.status_code == 400 and "malformed JSON" in r.json()["message"]


def test_body_that_is_not_utf8_is_400(ws):
    # json.loads decodes bytes first: its UnicodeDecodeError is a ValueError without .msg (was a 500)
    headers = {"Authorization": f"Bearer {ws.token}", "Content-Type": "application/json"}
    r = requests.post(ws.host + API, data=b'{"name": "\xff"}', headers=headers, timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["message"] == "request body: not UTF-8 text (invalid start byte at byte 10)"


def test_alias_without_version_num_is_400(ws):
    headers = {"Authorization": f"Bearer {ws.token}"}
    url = ws.host + "/api/2.1/unity-catalog/models/main.default.m/aliases/champion"
    r = requests.put(url, json={}, headers=headers, timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith("version_num: required")


@pytest.mark.parametrize(
    "body,field",
    [
        ({"max_tokens": 5}, "messages"),
        (chat(max_tokens=0), "max_tokens"),
        (chat(temperature=2.5), "temperature"),
        (chat(n=6), "n"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "role"),
        ({"messages": "hello"}, "messages"),
    ],
)
def test_bad_chat_body_is_400(ws, body, field):
    post(ws, API, GOOD)
    r = post(ws, "/serving-endpoints/val-ok/invocations", body)
    assert r.status_code == 400
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert field in r.json()["message"]


def test_bad_update_changes_nothing(ws):
    import requests

    post(ws, API, {**GOOD, "name": "val-upd"})
    headers = {"Authorization": f"Bearer {ws.token}"}
    before = requests.get(f"{ws.host}{API}/val-upd", headers=headers, timeout=5).json()
    r = requests.put(
        f"{ws.host}{API}/val-upd/config",
        headers=headers,
        timeout=5,
        json={"served_entities": [{"entity_name": "m", "entity_version": "1"}], "bogus": 1},
    )
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    after = requests.get(f"{ws.host}{API}/val-upd", headers=headers, timeout=5).json()
    assert after["last_updated_timestamp"] == before["last_updated_timestamp"]
    assert after.get("pending_config") == before.get("pending_config")
