"""One fake workspace per test module (each test uses its own endpoint names)."""

from __future__ import annotations

import pytest

from llmops_nb.testing import fake_workspace


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    with fake_workspace(tmp_path_factory.mktemp("ws"), ready_seconds=0.3) as workspace:
        yield workspace


@pytest.fixture
def w(ws):
    ws.reset()
    return ws.client()


@pytest.fixture(autouse=True)
def _clean_faults(request):
    """Every test starts with no faults and an empty request record."""
    if "ws" in request.fixturenames:
        request.getfixturevalue("ws").reset()
