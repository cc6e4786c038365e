"""Point 9 of issue 14: routes answer with a trailing slash, as MLflow's Databricks client sends them."""

from __future__ import annotations

import pytest
import requests

API = "/api/2.0/serving-endpoints"
BODY = {"name": "slash-raw", "config": {"served_entities": [{"entity_name": "m", "entity_version": "1"}]}}


def _headers(ws) -> dict:
    return {"Authorization": f"Bearer {ws.token}"}


def test_create_list_get_with_a_trailing_slash(ws):
    created = requests.post(f"{ws.host}{API}/", json=BODY, headers=_headers(ws), timeout=10)
    assert created.status_code == 200, created.text
    assert created.json()["name"] == "slash-raw"
    listed = requests.get(f"{ws.host}{API}/", headers=_headers(ws), timeout=10)
    assert listed.status_code == 200
    assert "slash-raw" in [e["name"] for e in listed.json()["endpoints"]]
    got = requests.get(f"{ws.host}{API}/slash-raw/", headers=_headers(ws), timeout=10)
    assert got.status_code == 200 and got.json()["name"] == "slash-raw"
    tags = requests.patch(f"{ws.host}{API}/slash-raw/tags/", json={"add_tags": [{"key": "k"}]}, headers=_headers(ws), timeout=10)
    assert tags.status_code == 200 and tags.json()["tags"] == [{"key": "k"}]
    # the request record keeps the path as it was sent
    assert [r["path"] for r in ws.requests()][:2] == [f"{API}/", f"{API}/"]


def test_unknown_route_with_a_slash_is_still_404(ws):
    r = requests.get(f"{ws.host}/api/2.0/nothing-here/", headers=_headers(ws), timeout=10)
    assert r.status_code == 404 and r.json()["error_code"] == "ENDPOINT_NOT_FOUND"


@pytest.fixture
def mlflow_client(ws, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.deployments import get_deploy_client

    monkeypatch.setenv("DATABRICKS_HOST", ws.host)
    monkeypatch.setenv("DATABRICKS_TOKEN", ws.token)
    for var in ("DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
        monkeypatch.delenv(var, raising=False)
    return get_deploy_client("databricks")


def test_mlflow_databricks_client_creates_lists_gets_and_deletes(ws, mlflow_client):
    ws.reset()
    created = mlflow_client.create_endpoint(
        name="slash-mlflow", config={"served_entities": [{"entity_name": "m", "entity_version": "1"}]}
    )
    assert created["name"] == "slash-mlflow"
    paths = [(r["method"], r["path"], r["status"]) for r in ws.requests()]
    # what MLflow sends, answered 200 (it was 404 before: issue 14, point 9)
    assert ("POST", f"{API}/", 200) in paths, paths
    body = next(r["body"] for r in ws.requests() if r["method"] == "POST")
    assert "route_optimized" in body  # MLflow's create sends it; Databricks accepts it
    names = [e["name"] for e in mlflow_client.list_endpoints()]
    assert "slash-mlflow" in names
    assert mlflow_client.get_endpoint("slash-mlflow")["name"] == "slash-mlflow"
    mlflow_client.delete_endpoint("slash-mlflow")
    assert "slash-mlflow" not in [e["name"] for e in mlflow_client.list_endpoints()]
