"""Clients nobody here wrote, against the fake and the local workspace, exactly as a user calls
them against Databricks: MLflow's Databricks deployment client, databricks-sdk's waiters and
OpenAI client, and the OpenAI client on ``<host>/serving-endpoints``."""

from __future__ import annotations

import warnings
from datetime import timedelta

import pytest
import requests
from conformance_steps import API, routes_of
from conformance_targets import FAKE, LOCAL, Target
from databricks.sdk.service.serving import EndpointCoreConfigInput, ServedEntityInput, TrafficConfig

CLIENTS = pytest.mark.targets(
    FAKE,
    LOCAL,
    reason="these check third-party clients against our workspaces; against Databricks they are the vendors' own concern",
)
MESSAGES = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def databricks_env(target: Target, monkeypatch) -> None:
    """DATABRICKS_HOST/TOKEN for clients that read the environment (MLflow), nothing else."""
    for var in ("DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_AUTH_TYPE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DATABRICKS_HOST", target.host)
    monkeypatch.setenv("DATABRICKS_TOKEN", target.token())
    # MLflow retries 429/5xx up to 7 times with backoff: keep a failing call short
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")


@CLIENTS
def test_mlflow_databricks_deployment_client(target: Target, names, databricks_env) -> None:
    from mlflow.deployments import get_deploy_client

    client = get_deploy_client("databricks")
    name = names("mlflow")
    # the full request payload, as MLflow documents it
    created = client.create_endpoint(
        config={
            "name": name,
            "config": {"served_entities": [target.external_entity("a")]},
            "tags": [{"key": "client", "value": "mlflow"}],
        }
    )
    assert created["name"] == name
    target.wait_ready(name)
    got = client.get_endpoint(endpoint=name)
    assert got["name"] == name and got["state"]["ready"] == "READY"
    assert name in {e["name"] for e in client.list_endpoints()}
    client.update_endpoint_config(
        endpoint=name,
        config={
            "served_entities": [target.external_entity("a"), target.external_entity("b")],
            "traffic_config": {
                "routes": [
                    {"served_entity_name": "a", "traffic_percentage": 80},
                    {"served_entity_name": "b", "traffic_percentage": 20},
                ]
            },
        },
    )
    ep = target.wait_ready(name)
    assert routes_of(ep["config"]) == {"a": 80, "b": 20}
    answer = client.predict(endpoint=name, inputs={"messages": MESSAGES, "max_tokens": 8})
    assert answer["choices"][0]["message"]["content"]
    assert answer["usage"]["total_tokens"] > 0
    client.delete_endpoint(endpoint=name)
    with pytest.raises(requests.HTTPError) as err:  # mlflow.utils.rest_utils.augmented_raise_for_status
        client.get_endpoint(endpoint=name)
    assert err.value.response.status_code == 404 and "RESOURCE_DOES_NOT_EXIST" in str(err.value)


@CLIENTS
def test_mlflow_legacy_create_sends_route_optimized(target: Target, names, databricks_env) -> None:
    """The deprecated ``create_endpoint(name, config)`` form always sends route_optimized."""
    from mlflow.deployments import get_deploy_client

    name = names("mlflowlegacy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        get_deploy_client("databricks").create_endpoint(name=name, config={"served_entities": [target.external_entity()]})
    assert target.wait_ready(name)["name"] == name


@CLIENTS
def test_databricks_sdk_waiters_and_its_openai_client(target: Target, names) -> None:
    w = target.client()
    name = names("sdk")
    ep = w.serving_endpoints.create_and_wait(
        name=name,
        config=EndpointCoreConfigInput(name=name, served_entities=[ServedEntityInput.from_dict(target.external_entity("a"))]),
        timeout=timedelta(seconds=60),
    )
    assert ep.state.config_update.value == "NOT_UPDATING"
    ep = w.serving_endpoints.update_config_and_wait(
        name=name,
        served_entities=[
            ServedEntityInput.from_dict(target.external_entity("a")),
            ServedEntityInput.from_dict(target.external_entity("b")),
        ],
        traffic_config=TrafficConfig.from_dict(
            {
                "routes": [
                    {"served_entity_name": "a", "traffic_percentage": 50},
                    {"served_entity_name": "b", "traffic_percentage": 50},
                ]
            }
        ),
        timeout=timedelta(seconds=60),
    )
    assert ep.state.config_update.value == "NOT_UPDATING"
    assert sorted(e.name for e in ep.config.served_entities) == ["a", "b"]
    # get_open_ai_client needs the openai package and httpx (databricks-sdk[openai])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        openai_client = w.serving_endpoints.get_open_ai_client(timeout=60.0, max_retries=1)
    r = openai_client.chat.completions.create(model=name, messages=MESSAGES, max_tokens=8)
    assert r.choices[0].message.content and r.usage.total_tokens > 0


@CLIENTS
def test_openai_client_on_serving_endpoints(target: Target, names) -> None:
    from openai import OpenAI

    name = names("openai")
    target.client().serving_endpoints.create(
        name=name,
        config=EndpointCoreConfigInput(name=name, served_entities=[ServedEntityInput.from_dict(target.external_entity())]),
    )
    target.wait_ready(name)
    client = OpenAI(base_url=f"{target.host}/serving-endpoints", api_key=target.token(), timeout=300.0, max_retries=10)
    # an external model, then the workspace's foundation model (local: the real SmolLM2, which
    # answers 503 + Retry-After while it loads at the first request: the client retries)
    for model in (name, target.foundation()):
        r = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=8)
        assert r.choices[0].message.role == "assistant" and r.choices[0].message.content
        assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0
    assert target.http("GET", f"{API}/{name}").status_code == 200
