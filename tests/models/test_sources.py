"""Model sources (issue 28): each source checked before anything is logged, then logged as what it is.

Real parts: llama.cpp loads the GGUFs (a second one requantized from the bundled file with
llama.cpp's quantize API), MLflow logs to SQLite, huggingface_hub reads its own cache offline,
and MLflow's models-from-code loader runs the code files.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmops_nb.backends import Backend
from llmops_nb.chain import runner as chain_runner
from llmops_nb.config.project import ModelSpec, ProjectConfig, with_model
from llmops_nb.errors import ConfigError
from llmops_nb.models import sources
from llmops_nb.models.gguf import bundled_gguf_path
from llmops_nb.steps.register import register
from tests.models.conftest import ECHO_MODEL


def _backend(tmp_path: Path) -> Backend:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return Backend(kind="local", host=None, token=None, tracking_uri=uri, registry_uri=uri)


def _project(**model: object) -> ProjectConfig:
    return ProjectConfig.model_validate(
        {"model": {"name": "my-llm", **model}, "endpoint": {"name": "chat", "served_entities": [{"entity_name": "my-llm"}]}}
    )


def _created(backend: Backend) -> tuple[int, int]:
    """(registered models, runs) in the backend's store."""
    from mlflow import MlflowClient

    if not Path(backend.tracking_uri.removeprefix("sqlite:///")).exists():
        return (0, 0)
    client = MlflowClient(backend.tracking_uri, backend.registry_uri)
    runs = sum(len(client.search_runs([e.experiment_id])) for e in client.search_experiments())
    return (len(client.search_registered_models()), runs)


@pytest.fixture
def code_model(tmp_path: Path) -> Path:
    path = tmp_path / "echo_model.py"
    path.write_text(ECHO_MODEL)
    return path


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty huggingface_hub cache, offline (the Hub is not reachable here anyway)."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def _cache_file(cache: Path, repo: str, filename: str, content_from: Path, revision: str = "0" * 40) -> Path:
    """A file in huggingface_hub's cache layout (models--org--name/{refs/main, snapshots/<rev>/})."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(revision)
    target = root / "snapshots" / revision / filename
    target.parent.mkdir(parents=True)
    os.symlink(content_from, target)
    return target


# --------------------------------------------------------------------------- bad input: one line, nothing created


def _truncated_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "truncated.gguf"
    with open(bundled_gguf_path(), "rb") as f:
        path.write_bytes(f.read(1 << 20))  # the GGUF magic and header, not the tensors
    return path


def _not_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "weights.gguf"
    path.write_text("not a model")
    return path


def _broken_code(tmp_path: Path) -> Path:
    path = tmp_path / "broken.py"
    path.write_text("import mlflow\nimport no_such_module_here\n")
    return path


def _no_model_code(tmp_path: Path) -> Path:
    path = tmp_path / "no_model.py"
    path.write_text("import mlflow\nVALUE = 1\n")
    return path


def _no_template_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "hf-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "max_position_embeddings": 64}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 64}))
    return folder


BAD = [
    ("missing path", lambda t: {"source": "gguf", "path": str(t / "does-not-exist.gguf")}, "model.path", "an existing file"),
    ("not gguf", lambda t: {"source": "gguf", "path": str(_not_gguf(t))}, "model.path", "not b'GGUF'"),
    ("code fails on import", lambda t: {"source": "code", "path": str(_broken_code(t))}, "model.path", "no_such_module_here"),
    ("code sets no model", lambda t: {"source": "code", "path": str(_no_model_code(t))}, "model.path", "set_model"),
    (
        "transformers without chat template",
        lambda t: {"source": "transformers", "path": str(_no_template_folder(t))},
        "model.path",
        "chat template",
    ),
    ("uc locally", lambda t: {"source": "uc", "version": "1"}, "model.source", "Databricks only"),
]


@pytest.mark.parametrize(("case", "model", "field", "says"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_source_is_one_line_and_creates_nothing(tmp_path: Path, case, model, field, says) -> None:  # noqa: ANN001
    backend = _backend(tmp_path)
    spec = model(tmp_path)
    name = "main.llmops.my_llm" if spec["source"] == "uc" else "my-llm"
    project = ProjectConfig.model_validate(
        {"model": {"name": name, **spec}, "endpoint": {"name": "chat", "served_entities": [{"entity_name": name}]}}
    )
    with pytest.raises(ConfigError) as e:
        register(project, backend)
    message = str(e.value)
    assert "\n" not in message and message.startswith(field + ":"), message
    assert says in message, message
    assert _created(backend) == (0, 0), case


@pytest.mark.model
def test_a_gguf_llama_cpp_cannot_load_is_refused_before_anything_is_logged(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    bad = _truncated_gguf(tmp_path)
    with pytest.raises(ConfigError) as e:
        register(_project(source="gguf", path=str(bad)), backend)
    assert str(e.value).startswith(f"model.path: '{bad}' is not allowed; a GGUF that llama.cpp loads"), e.value
    assert "\n" not in str(e.value)
    assert _created(backend) == (0, 0)


CONFIG_ERRORS = [
    ({"source": "smollm2"}, "model.source"),
    ({"source": "gguf", "path": "a.gguf", "hf_repo": "org/repo", "hf_file": "a.gguf"}, "model.hf_repo"),
    ({"source": "gguf"}, "model.path"),
    ({"source": "gguf", "hf_repo": "org/repo"}, "model.hf_file"),
    ({"source": "bundled", "path": "a.gguf"}, "model.path"),
    ({"source": "code", "path": "m.py", "hf_repo": "org/repo"}, "model.hf_repo"),
    ({"source": "uc", "version": "1"}, "model.name"),  # my-llm is not catalog.schema.model
    ({"source": "transformers", "path": "f", "revision": "main"}, "model.revision"),
]


@pytest.mark.parametrize(("model", "field"), CONFIG_ERRORS)
def test_the_config_names_the_wrong_field(model: dict, field: str) -> None:
    with pytest.raises(ConfigError) as e:
        _project(**model)
    assert str(e.value).startswith(field + ":"), e.value
    assert "\n" not in str(e.value)


def test_with_model_drops_the_old_sources_fields_and_validates() -> None:
    project = _project(source="gguf", path="/models/a.gguf")
    moved = with_model(project, source="code", path="/models/agent.py")
    assert moved.model.source == "code" and moved.model.path == "/models/agent.py" and moved.model.name == "my-llm"
    assert with_model(project, source="", path=None) is project  # empty values change nothing
    with pytest.raises(ConfigError, match=r"^model\.path: "):
        with_model(project, source="code")  # code needs its own path, the GGUF's is dropped


def test_with_model_keeps_the_interface_between_gguf_sources_only() -> None:
    project = _project(source="gguf", path="/models/a.gguf", interface="chat_model")
    assert with_model(project, source="bundled").model.interface == "chat_model"  # not silently back to pyfunc
    assert with_model(project, source="code", path="/models/agent.py").model.interface == "pyfunc"  # its own interface
    with pytest.raises(ConfigError, match=r"^model\.interface: 'chat_model' is not allowed; chat_model is for the bundled"):
        with_model(project, source="code", path="/models/agent.py", interface="chat_model")


# --------------------------------------------------------------------------- what each source logs


@pytest.mark.model
def test_a_gguf_source_logs_that_file_with_its_digest_template_and_context(tmp_path: Path, other_gguf: Path) -> None:
    from mlflow import MlflowClient

    backend = _backend(tmp_path)
    out = register(_project(source="gguf", path=str(other_gguf)), backend)
    client = MlflowClient(backend.tracking_uri, backend.registry_uri)
    version = client.get_model_version("my-llm", out["model_version"])
    run = client.get_run(version.run_id)
    sha = hashlib.sha256(other_gguf.read_bytes()).hexdigest()
    assert sha != hashlib.sha256(bundled_gguf_path().read_bytes()).hexdigest()
    assert run.data.tags["llmops_nb.source"] == "gguf" and run.data.tags["llmops_nb.source_sha256"] == sha
    assert run.data.params["gguf_file"] == other_gguf.name and run.data.params["model_name"] == "other-llm.Q4_0"
    assert int(run.data.params["context_length"]) == 8192  # SmolLM2's llama.context_length
    assert run.data.params["chat_template_source"].startswith("gguf metadata")
    assert len(run.data.params["chat_template_sha256"]) == 64
    logged = Path(client.download_artifacts(version.run_id, "model/artifacts", str(tmp_path / "dl")))
    (copy,) = logged.glob("*.gguf")
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == sha  # the file, not the bundled one


@pytest.mark.model
def test_the_same_file_registered_again_is_not_loaded_again(tmp_path: Path, other_gguf: Path, monkeypatch) -> None:  # noqa: ANN001
    spec = ModelSpec(name="my-llm", source="gguf", path=str(other_gguf))
    first = sources.prepare(spec)
    monkeypatch.setattr(sources, "PROBE_TIMEOUT_S", 0.001)  # a probe now would time out
    again = sources.prepare(spec)
    assert again.sha256 == first.sha256 and again.context_length == first.context_length


@pytest.mark.model
def test_a_gguf_from_the_hub_is_read_from_huggingface_hubs_cache_offline(hf_cache: Path, other_gguf: Path) -> None:
    cached = _cache_file(hf_cache, "someone/other-llm-GGUF", "other-llm.Q4_0.gguf", other_gguf)
    spec = ModelSpec(name="my-llm", source="gguf", hf_repo="someone/other-llm-GGUF", hf_file="other-llm.Q4_0.gguf")
    prepared = sources.prepare(spec)
    assert prepared.location == cached and prepared.tags["llmops_nb.hf_repo"] == "someone/other-llm-GGUF"
    assert prepared.model_label == "other-llm.Q4_0"


def test_a_hub_repo_with_no_cached_copy_offline_is_one_line(hf_cache: Path) -> None:
    spec = ModelSpec(name="my-llm", source="gguf", hf_repo="someone/not-cached", hf_file="x.gguf")
    with pytest.raises(ConfigError) as e:
        sources.prepare(spec)
    message = str(e.value)
    assert message.startswith("model.hf_repo: 'someone/not-cached'") and "HF_HUB_OFFLINE" in message, message
    assert "needs the Hugging Face Hub, or give path:" in message and "\n" not in message


def test_a_code_source_is_logged_as_models_from_code(tmp_path: Path, code_model: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    backend = _backend(tmp_path)
    out = register(_project(source="code", path=str(code_model), requirements=["pyyaml>=6"]), backend)
    client = MlflowClient(backend.tracking_uri, backend.registry_uri)
    version = client.get_model_version("my-llm", out["model_version"])
    run = client.get_run(version.run_id)
    assert run.data.params["model_interface"] == "ChatModel" and run.data.params["model_class"] == "Echo"
    assert run.data.tags["llmops_nb.source_sha256"] == hashlib.sha256(code_model.read_bytes()).hexdigest()
    mlflow.set_tracking_uri(backend.tracking_uri)
    mlflow.set_registry_uri(backend.registry_uri)
    model = mlflow.pyfunc.load_model(out["model_uri"])
    answer = model.predict({"messages": [{"role": "user", "content": "hi"}]})
    assert answer["choices"][0]["message"]["content"] == "echo: hi"
    requirements = Path(mlflow.artifacts.download_artifacts(f"{out['model_uri']}/requirements.txt")).read_text()
    assert f"mlflow=={mlflow.__version__}" in requirements and "pyyaml>=6" in requirements


def test_the_cli_registers_a_code_source_and_refuses_a_bad_one(tmp_path: Path, code_model: Path) -> None:
    env = {**os.environ, "LLMOPS_PROJECT_DIR": str(tmp_path), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    env.pop("MLFLOW_REGISTRY_URI", None)
    config = Path(__file__).resolve().parents[2] / "configs" / "local.yml"
    cli = [sys.executable, "-c", "from llmops_nb.cli.main import main; main()", "register", "-c", str(config), "--name", "echo"]
    bad = subprocess.run(
        [*cli, "--source", "gguf", "--path", str(tmp_path / "nope.gguf")], capture_output=True, text=True, env=env, check=False
    )
    assert bad.returncode != 0
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: model.path:"), bad.stderr
    ok = subprocess.run(
        [*cli, "--source", "code", "--path", str(code_model)], capture_output=True, text=True, env=env, check=False
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("registered echo version 1 ")


# --------------------------------------------------------------------------- the chain runs the steps that apply


def test_run_skips_register_and_deploy_for_a_foundation_endpoint_and_says_why(tmp_path: Path) -> None:
    cfg = tmp_path / "foundation.yml"
    cfg.write_text("backend: local\nfoundation_endpoint: databricks-meta-llama-3-3-70b-instruct\n")
    prepared = chain_runner.prepare(cfg, None, "", None)
    assert prepared.steps == ["serve", "evaluate"]
    assert set(prepared.skipped) == {"register", "deploy"}
    assert "nothing to register" in prepared.skipped["register"]
    explicit = chain_runner.prepare(cfg, "register,serve", "", None)  # asked for by name: kept
    assert explicit.steps == ["register", "serve"] and explicit.skipped == {}


def test_run_skips_register_for_an_endpoint_of_external_models_only(tmp_path: Path) -> None:
    cfg = Path(__file__).resolve().parents[1] / "configs" / "fake-external.yml"
    prepared = chain_runner.prepare(cfg, None, "", None)
    assert "register" not in prepared.steps and "deploy" in prepared.steps
    assert "serves only external models" in prepared.skipped["register"]


def test_run_refuses_a_uc_source_on_the_local_workspace_before_any_step(tmp_path: Path) -> None:
    cfg = tmp_path / "uc.yml"
    cfg.write_text(
        "backend: local\nmodel:\n  name: system.ai.llama_v3_2_1b_instruct\n  source: uc\n  version: '2'\n"
        "endpoint:\n  name: chat\n  served_entities:\n    - entity_name: system.ai.llama_v3_2_1b_instruct\n"
    )
    with pytest.raises(
        ConfigError, match=r"^model\.source: 'uc' is not allowed; a Unity Catalog model serves on Databricks only"
    ):
        chain_runner.prepare(cfg, None, "", None)
