"""The ``target`` fixture: every scenario runs on the fake, the local and the live workspace.

A scenario that makes sense on fewer targets says which, and why, with
``@pytest.mark.targets("fake", "local", reason="...")``: the other targets are not collected
for it (no silent pass). The live target is skipped, with one line saying why, unless the user
opted in (LLMOPS_LIVE_DATABRICKS=1 and credentials): the suite's only skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conformance_targets import ALL_TARGETS, FAKE, LOCAL, Target, fake_target, live_target, live_unavailable, local_target

from llmops_nb.testing import fake_provider


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "targets(*names, reason): the conformance targets a scenario runs on, and why not the others"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target" not in metafunc.fixturenames:
        return
    names = ALL_TARGETS
    marker = metafunc.definition.get_closest_marker("targets")
    if marker is not None:
        assert marker.kwargs.get("reason"), f"{metafunc.function.__name__}: targets() needs a reason"
        names = marker.args
        assert set(names) <= set(ALL_TARGETS), names
    params = [pytest.param(n, marks=pytest.mark.model) if n == LOCAL else n for n in names]
    metafunc.parametrize("target", params, indirect=True, scope="session")


@pytest.fixture(scope="session")
def conformance_provider():
    """The fake OpenAI-compatible provider the fake and local external models forward to."""
    with fake_provider() as provider:
        yield provider


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest, tmp_path_factory, conformance_provider) -> Iterator[Target]:
    """One running target per session (the workspaces start once, the model registers once)."""
    kind = request.param
    if kind == FAKE:
        with fake_target(tmp_path_factory.mktemp("fake"), conformance_provider.base_url) as t:
            yield t
    elif kind == LOCAL:
        with local_target(tmp_path_factory.mktemp("local"), conformance_provider.base_url) as t:
            yield t
    else:
        why = live_unavailable()
        if why:
            pytest.skip(why)
        with live_target() as t:
            yield t


@pytest.fixture
def names(target: Target) -> Iterator:
    """``names("label")`` -> a fresh unique endpoint name, deleted after the test whatever happens."""
    made: list[str] = []

    def make(label: str) -> str:
        made.append(target.endpoint_name(label))
        return made[-1]

    yield make
    for name in made:
        target.delete_quietly(name)
    if target.fake is not None:
        target.fake.reset()  # faults a scenario set do not leak into the next


@pytest.fixture
def provider(conformance_provider):
    """The fake provider with its request record cleared."""
    conformance_provider.requests.clear()
    conformance_provider.fail_status = None
    return conformance_provider
