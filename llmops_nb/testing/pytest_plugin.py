"""pytest fixtures ``fake_workspace`` and ``fake_provider`` (``pytest_plugins = [...]``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llmops_nb.testing import FakeProvider, FakeWorkspace
from llmops_nb.testing import fake_provider as _fake_provider
from llmops_nb.testing import fake_workspace as _fake_workspace


@pytest.fixture
def fake_workspace(tmp_path) -> Iterator[FakeWorkspace]:
    """A fresh fake workspace (its own home under tmp_path), stopped after the test."""
    with _fake_workspace(tmp_path / "workspace", ready_seconds=0.2) as ws:
        yield ws


@pytest.fixture
def fake_provider() -> Iterator[FakeProvider]:
    """A fake OpenAI/Anthropic-compatible provider on 127.0.0.1."""
    with _fake_provider() as provider:
        yield provider
