"""The three targets of the conformance suite: the fake workspace, the local workspace with the
real SmolLM2 model, and (opt-in) a real Databricks workspace.

Every scenario talks to a target through the same small surface: a databricks-sdk client, raw
HTTP for status codes, unique endpoint names that are always deleted, and served-entity bodies
for each endpoint kind that cost nothing on the target.
"""

from __future__ import annotations

import contextlib
import os
import secrets as pysecrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

FAKE, LOCAL, LIVE = "fake", "local", "live"
ALL_TARGETS = (FAKE, LOCAL, LIVE)

# Fake and local: the external model goes to llmops_nb.testing's fake provider with this key,
# named by a secret reference the workspace resolves from <home>/secrets.yml.
SECRET_REF = "{{secrets/conformance/openai}}"
SECRET_VALUE = "sk-conformance-" + "0123456789abcdef"
LOCAL_MODEL = "smollm2-135m-instruct"

# Live: what the user names (README, "conformance").
LIVE_FLAG = "LLMOPS_LIVE_DATABRICKS"
LIVE_SECRET = "LLMOPS_LIVE_SECRET"  # {{secrets/<scope>/<key>}} of an OpenAI key
LIVE_OPENAI_MODEL = "LLMOPS_LIVE_OPENAI_MODEL"  # default gpt-4o-mini
LIVE_FOUNDATION = "LLMOPS_LIVE_FOUNDATION_ENDPOINT"  # a pay-per-token endpoint of the workspace
DEFAULT_LIVE_FOUNDATION = "databricks-meta-llama-3-3-70b-instruct"


@dataclass
class Target:
    """One workspace the scenarios run against."""

    kind: str
    host: str
    config_kwargs: dict[str, Any]
    secret_ref: str
    external_model: str
    foundation_endpoint: str
    provider_base: str | None = None  # fake provider's /v1 (fake, local); None: the real one
    fake: Any = None  # llmops_nb.testing.FakeWorkspace (fake only)
    register: Callable[[], tuple[str, str]] | None = None  # (entity_name, version), lazily
    poll_seconds: float = 0.05
    ready_timeout: float = 30.0
    _registered: tuple[str, str] | None = field(default=None, repr=False)
    _prefix: str = field(default_factory=lambda: pysecrets.token_hex(3))

    # ---- clients -----------------------------------------------------------------------
    def sdk_config(self, **overrides: Any):
        """A databricks-sdk Config for this target (low retry timeout: tests must not hang)."""
        from databricks.sdk.config import Config

        return Config(**{**self.config_kwargs, **overrides})

    def client(self, **overrides: Any):
        """A databricks-sdk WorkspaceClient for this target."""
        from databricks.sdk import WorkspaceClient

        return WorkspaceClient(config=self.sdk_config(**overrides))

    def headers(self) -> dict[str, str]:
        """Authorization (as the SDK would send it) and JSON content type."""
        return {**self.sdk_config().authenticate(), "Content-Type": "application/json"}

    def http(self, method: str, path: str, body: Any = None, *, timeout: float = 60) -> requests.Response:
        """One raw request, no retries: the status code and error body exactly as sent."""
        return requests.request(method, self.host + path, json=body, headers=self.headers(), timeout=timeout)

    def token(self) -> str:
        """The bearer token the SDK sends (for clients that take a key: OpenAI)."""
        return self.headers()["Authorization"].split(" ", 1)[1]

    # ---- names -------------------------------------------------------------------------
    def endpoint_name(self, label: str) -> str:
        """A unique endpoint name (letters, digits, '-'; at most 63 characters)."""
        prefix = "llmops-conformance" if self.kind == LIVE else "conf"
        name = f"{prefix}-{self._prefix}-{label}-{pysecrets.token_hex(2)}"
        assert len(name) <= 63, name
        return name

    # ---- served entities ---------------------------------------------------------------
    def external_entity(self, name: str | None = None, model: str | None = None) -> dict:
        """An external-model served entity (chat): the fake provider, or OpenAI on live."""
        openai_config: dict[str, str] = {"openai_api_key": self.secret_ref}
        if self.provider_base:
            openai_config["openai_api_base"] = self.provider_base
        entity: dict[str, Any] = {
            "external_model": {
                "name": model or self.external_model,
                "provider": "openai",
                "task": "llm/v1/chat",
                "openai_config": openai_config,
            }
        }
        if name:
            entity["name"] = name
        return entity

    def registered_entity(self, name: str | None = None) -> dict:
        """A custom-model served entity of a registered version (Small, scale to zero)."""
        if self._registered is None:
            assert self.register is not None, f"{self.kind}: no registered model"
            self._registered = self.register()
        model, version = self._registered
        entity: dict[str, Any] = {
            "entity_name": model,
            "entity_version": version,
            "workload_size": "Small",
            "scale_to_zero_enabled": True,
        }
        if name:
            entity["name"] = name
        return entity

    def foundation(self) -> str:
        """The workspace's pay-per-token endpoint; locally it serves the registered SmolLM2."""
        if self.kind == LOCAL:
            self.registered_entity()  # the local foundation endpoint needs the model registered
        return self.foundation_endpoint

    def entity(self, kind: str, name: str | None = None) -> dict:
        return self.registered_entity(name) if kind == "registered" else self.external_entity(name)

    # ---- waiting -----------------------------------------------------------------------
    def wait(self, name: str, predicate: Callable[[dict], bool], what: str, timeout: float | None = None) -> dict:
        """GET ``name`` until ``predicate(json)``; AssertionError with the last state if not."""
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        while True:
            r = self.http("GET", f"/api/2.0/serving-endpoints/{name}")
            assert r.status_code == 200, r.text
            ep = r.json()
            if predicate(ep):
                return ep
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}: not {what} after {timeout or self.ready_timeout} s; state {ep.get('state')}")
            time.sleep(self.poll_seconds)

    def wait_ready(self, name: str, timeout: float | None = None) -> dict:
        """READY and NOT_UPDATING (an UPDATE_FAILED fails at once)."""

        def done(ep: dict) -> bool:
            state = ep.get("state") or {}
            assert state.get("config_update") != "UPDATE_FAILED", f"{name}: {ep}"
            return state.get("ready") == "READY" and state.get("config_update") == "NOT_UPDATING"

        return self.wait(name, done, "READY and NOT_UPDATING", timeout)

    def wait_not_updating(self, name: str, timeout: float | None = None) -> dict:
        return self.wait(name, lambda ep: ep["state"]["config_update"] != "IN_PROGRESS", "done updating", timeout)

    def delete_quietly(self, name: str) -> None:
        """Delete ``name`` if it exists (finalizers: never raises)."""
        with contextlib.suppress(Exception):
            self.http("DELETE", f"/api/2.0/serving-endpoints/{name}")


# ---- starting targets ----------------------------------------------------------------------
def _write_secret(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "secrets.yml").write_text(f"conformance:\n  openai: {SECRET_VALUE}\n", encoding="utf-8")


@contextlib.contextmanager
def fake_target(root: Path, provider_base: str) -> Iterator[Target]:
    """The fake workspace (deterministic responder, fault injection) over real HTTP."""
    from llmops_nb.testing import fake_workspace
    from llmops_nb.workspace.serving.foundation import FOUNDATION_ENDPOINT

    home = root / "fake-ws"
    _write_secret(home)
    with fake_workspace(home, ready_seconds=0.2) as ws:
        yield Target(
            kind=FAKE,
            host=ws.host,
            fake=ws,
            provider_base=provider_base,
            config_kwargs=dict(host=ws.host, token=ws.token, auth_type="pat", retry_timeout_seconds=10, http_timeout_seconds=10),
            secret_ref=SECRET_REF,
            external_model="gpt-4o-mini",
            foundation_endpoint=FOUNDATION_ENDPOINT,
            # the fake does not look into a registry: any UC name serves
            register=lambda: ("main.conformance.chat", "1"),
        )


@contextlib.contextmanager
def local_target(root: Path, provider_base: str) -> Iterator[Target]:
    """The local workspace serving the real SmolLM2 (registered once, when first needed)."""
    from llmops_nb.workspace import launcher
    from llmops_nb.workspace.serving.foundation import FOUNDATION_ENDPOINT

    uri = f"sqlite:///{root / 'mlflow.db'}"
    home = root / "local-ws"
    _write_secret(home)

    def register() -> tuple[str, str]:
        from llmops_nb.models.registry import register_model

        model = register_model(LOCAL_MODEL, tracking_uri=uri, registry_uri=uri)
        return model.name, str(model.version)

    info = launcher.ensure_running(home, uri)
    try:
        yield Target(
            kind=LOCAL,
            host=info.host,
            provider_base=provider_base,
            config_kwargs=dict(
                host=info.host, token=info.token or "local", auth_type="pat", retry_timeout_seconds=120, http_timeout_seconds=300
            ),
            secret_ref=SECRET_REF,
            external_model="gpt-4o-mini",
            foundation_endpoint=FOUNDATION_ENDPOINT,
            register=register,
            poll_seconds=0.2,
            ready_timeout=600.0,
        )
    finally:
        launcher.stop(home)


def live_unavailable() -> str | None:
    """Why the live target cannot run (one line), or None when it can."""
    if os.environ.get(LIVE_FLAG) != "1":
        return (
            f"live Databricks target: set {LIVE_FLAG}=1 with DATABRICKS_HOST/DATABRICKS_TOKEN "
            f"(or a profile) and {LIVE_SECRET}={{{{secrets/<scope>/<key>}}}} to run it"
        )
    try:
        from databricks.sdk.config import Config

        cfg = Config()
        cfg.authenticate()
    except Exception as e:  # noqa: BLE001 - any auth failure means: not configured
        return f"live Databricks target: {LIVE_FLAG}=1 but no credentials resolve ({type(e).__name__})"
    if not os.environ.get(LIVE_SECRET):
        return (
            f"live Databricks target: set {LIVE_SECRET} to the {{{{secrets/<scope>/<key>}}}} "
            "of an OpenAI key for the external-model endpoints"
        )
    return None


@contextlib.contextmanager
def live_target() -> Iterator[Target]:
    """A real workspace: endpoints are external models (no compute) named llmops-conformance-*."""
    from databricks.sdk.config import Config

    cfg = Config(retry_timeout_seconds=60, http_timeout_seconds=60)
    target = Target(
        kind=LIVE,
        host=cfg.host.rstrip("/"),
        config_kwargs=dict(retry_timeout_seconds=60, http_timeout_seconds=60),
        secret_ref=os.environ[LIVE_SECRET],
        external_model=os.environ.get(LIVE_OPENAI_MODEL, "gpt-4o-mini"),
        foundation_endpoint=os.environ.get(LIVE_FOUNDATION, DEFAULT_LIVE_FOUNDATION),
        poll_seconds=3.0,
        ready_timeout=900.0,
    )
    try:
        yield target
    finally:
        _sweep_live(target)


def _sweep_live(target: Target) -> None:
    """Delete any endpoint this session created that a finalizer missed."""
    with contextlib.suppress(Exception):
        r = target.http("GET", "/api/2.0/serving-endpoints")
        mine = f"llmops-conformance-{target._prefix}-"
        for ep in r.json().get("endpoints", []):
            if ep.get("name", "").startswith(mine):
                target.delete_quietly(ep["name"])
