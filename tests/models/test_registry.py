"""Register the chat model in a temporary SQLite registry, set aliases, serve it over HTTP."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from llmops_nb.errors import ConfigError
from llmops_nb.models import registry

NAME = "smollm2-test"


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh SQLite store; mlflow's process-wide URIs are restored afterwards."""
    import mlflow

    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    yield f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    for key, value in saved.items():
        os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


@pytest.fixture(scope="module")
def registered(tracking_uri: str) -> list[registry.RegisteredModel]:
    """Versions 1 and 2 of NAME (2 with a different generation default)."""
    first = registry.register_model(NAME, tracking_uri=tracking_uri)
    second = registry.register_model(NAME, tracking_uri=tracking_uri, alias="champion", generation={"max_tokens": 32})
    return [first, second]


def test_uc_name_must_have_three_parts() -> None:
    with pytest.raises(ConfigError, match="catalog.schema.model") as err:
        registry.register_model("smollm2", registry_uri="databricks-uc", tracking_uri="databricks")
    assert "\n" not in str(err.value)


def test_reserved_alias_is_refused() -> None:
    with pytest.raises(ConfigError, match="alias: 'v3'"):
        registry.set_alias(NAME, "v3", "1", tracking_uri="sqlite:///unused.db")


def test_model_uri() -> None:
    assert registry.model_uri("a.b.c", 3) == "models:/a.b.c/3"


def test_latest_version_of_unknown_model_is_one_line(tracking_uri: str) -> None:
    with pytest.raises(ConfigError, match="'no-such-model'") as err:
        registry.latest_version("no-such-model", tracking_uri=tracking_uri)
    assert "\n" not in str(err.value)
    assert registry.get_version_by_alias("no-such-model", "champion", tracking_uri=tracking_uri) is None


@pytest.mark.model
def test_register_twice_makes_versions_and_aliases(registered: list[registry.RegisteredModel], tracking_uri: str) -> None:
    import mlflow

    first, second = registered
    assert (first.version, second.version) == ("1", "2")
    assert first.uri == f"models:/{NAME}/1" and first.alias == "challenger"
    assert registry.latest_version(NAME, tracking_uri=tracking_uri) == "2"
    assert registry.get_version_by_alias(NAME, "challenger", tracking_uri=tracking_uri) == "1"
    assert registry.get_version_by_alias(NAME, "champion", tracking_uri=tracking_uri) == "2"
    assert registry.get_version_by_alias(NAME, "nobody", tracking_uri=tracking_uri) is None
    registry.set_alias(NAME, "challenger", "2", tracking_uri=tracking_uri)
    assert registry.get_version_by_alias(NAME, "challenger", tracking_uri=tracking_uri) == "2"

    run = mlflow.MlflowClient(tracking_uri).get_run(second.run_id)
    assert run.data.params["max_tokens"] == "32" and run.data.params["n_ctx"] == "2048"
    assert run.data.tags["llmops_nb.version"]
    experiment = mlflow.MlflowClient(tracking_uri).get_experiment(run.info.experiment_id)
    assert experiment.artifact_location.startswith("file:///")


@pytest.mark.model
def test_registered_version_serves_chat_over_http(
    registered: list[registry.RegisteredModel], tracking_uri: str, tmp_path: Path
) -> None:
    from llmops_nb.models.serving import scoring_server

    body = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8, "temperature": 0}
    with scoring_server(registered[0].uri, tracking_uri=tracking_uri, log_path=tmp_path / "serve.log") as base:
        answer = requests.post(f"{base}/invocations", json=body, timeout=60)
        too_long = requests.post(
            f"{base}/invocations",
            json={"messages": [{"role": "user", "content": "hello " * 3000}]},
            timeout=60,
        )
    assert answer.status_code == 200, answer.text
    out = answer.json()
    assert out["choices"][0]["message"]["content"]
    assert 0 < out["usage"]["completion_tokens"] <= 8
    assert too_long.status_code == 400 and "context window" in too_long.json()["message"]


@pytest.mark.model
def test_registered_version_carries_the_portable_wheel(
    registered: list[registry.RegisteredModel], tracking_uri: str, tmp_path: Path
) -> None:
    import mlflow

    from llmops_nb.models import runtime

    wheel = runtime.built_wheel()
    assert wheel is not None, f"no portable wheel in {runtime.wheelhouse()}: run `make install`"
    local = Path(mlflow.artifacts.download_artifacts(registered[0].uri, tracking_uri=tracking_uri, dst_path=str(tmp_path)))
    requirements = (local / "requirements.txt").read_text().split()
    assert requirements[-1] == f"wheels/{wheel.name}"
    assert {r.split("==")[0] for r in requirements[:-1]} == {"mlflow", "numpy"}
    assert (local / "wheels" / wheel.name).read_bytes() == wheel.read_bytes()
    assert f"wheels/{wheel.name}" in (local / "conda.yaml").read_text()
    assert "wheels" in mlflow.models.Model.load(str(local / "MLmodel")).__dict__
    assert sorted(p.name for p in (local / "code").iterdir()) == ["cpu_quota.py", "engine.py"]
    run = mlflow.MlflowClient(tracking_uri).get_run(registered[0].run_id)
    assert run.data.tags["llama_cpp.wheel"] == wheel.name
    assert run.data.params["n_threads"] == "0"


ALIASES = [
    "champion",
    "challenger-2",
    "a_b",
    "é-x",
    "١٢",
    "v3a",
    "x" * 255,
    "x" * 256,
    "",
    "a b",
    "a.b",
    "a/b",
    "V3",
    "v12",
    "latest",
    "Latest",
    "LATEST",
]


def _mlflow_takes(alias: str) -> bool:
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_alias_name, _validate_model_alias_name_reserved

    try:
        _validate_model_alias_name(alias)
        _validate_model_alias_name_reserved(alias)
    except MlflowException:
        return False
    return True


def _takes(check: Callable[[], object]) -> bool:
    try:
        check()
    except ConfigError as err:
        assert "\n" not in str(err)
        return False
    return True


@pytest.mark.parametrize("alias", ALIASES)
def test_one_alias_rule_the_one_mlflow_has(alias: str) -> None:
    """registry.check_alias and the project config take exactly the aliases MLflow's registry takes."""
    from llmops_nb.config.project import ProjectConfig

    expected = _mlflow_takes(alias)
    assert _takes(lambda: registry.check_alias(alias)) is expected
    assert (
        _takes(
            lambda: ProjectConfig.model_validate(
                {"foundation_endpoint": "f", "model": {"alias": alias}, "evaluation": {"promote_alias": alias}}
            )
        )
        is expected
    )


def test_an_alias_with_a_trailing_newline_is_refused_in_both_places() -> None:
    from llmops_nb.config.project import ProjectConfig

    assert not _takes(lambda: registry.check_alias("champion\n"))  # MLflow's ^...$ would let it through
    assert not _takes(lambda: ProjectConfig.model_validate({"foundation_endpoint": "f", "model": {"alias": "champion\n"}}))


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("main.llmops.m", True),
        ("main.llmops.smollm2_135m-instruct", True),
        ("c.s." + "m" * 255, True),
        ("c.s." + "m" * 256, False),
        ("smollm2", False),
        ("a.b", False),
        ("a.b.c.d", False),
        ("a..c", False),
        ("a.b/x.c", False),
        ("a.b c.d", False),
        ("a.b.c\n", False),
        ("a.b.c\t", False),
        ("a.b.c\x7f", False),
    ],
)
def test_one_uc_name_rule_in_registry_and_config(name: str, ok: bool) -> None:
    """Unity Catalog names: three parts, no '.', space, '/' or control character in a part."""
    from llmops_nb.config.project import ProjectConfig

    assert _takes(lambda: registry.check_model_name(name, "databricks-uc")) is ok
    assert (
        _takes(
            lambda: ProjectConfig.model_validate({"backend": "databricks", "foundation_endpoint": "f", "model": {"name": name}})
        )
        is ok
    )
