"""The fake_workspace fixture: client, env, faults API and request record."""

from __future__ import annotations

import pytest


def test_fixture_client_env_and_admin(fake_workspace):
    ws = fake_workspace
    assert ws.env() == {"DATABRICKS_HOST": ws.host, "DATABRICKS_TOKEN": ws.token}
    assert ws.client().config.host == ws.host
    faults = ws.set_faults(rate_429=0.25, max_concurrency=4)
    assert faults["rate_429"] == 0.25 and faults["max_concurrency"] == 4
    ws.client().serving_endpoints.list()
    assert [r["path"] for r in ws.requests()] == ["/api/2.0/serving-endpoints"]
    assert ws.write_calls() == []
    ws.reset()
    assert ws.requests() == []
    assert ws.set_faults()["rate_429"] == 0.0


def test_bad_fault_is_400(fake_workspace):
    import urllib.error

    for bad in ({"rate_429": 3}, {"colour": "red"}, {"routes": ["elsewhere"]}):
        with pytest.raises(urllib.error.HTTPError) as err:
            fake_workspace.set_faults(**bad)
        assert err.value.code == 400
