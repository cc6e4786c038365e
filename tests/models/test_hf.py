"""``model.source: transformers`` (issue 28): a tiny random-weight Hugging Face causal LM, built
offline, registered with MLflow's transformers flavor as an ``llm/v1/chat`` model, deployed on
the local workspace (MLflow's scoring server on CPU) and answering a chat request over HTTP.

Real parts: transformers and torch build, save and run the model; MLflow logs it to SQLite and
serves it; the local workspace proxies the databricks-sdk's query to the scoring server.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from llmops_nb.backends import Backend
from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.config.project import ProjectConfig
from llmops_nb.errors import ConfigError
from llmops_nb.models import hf, sources
from llmops_nb.steps.register import register
from llmops_nb.testing.tiny_hf import CHAT_TEMPLATE
from llmops_nb.workspace import launcher

MAX_TOKENS = 8


def _project(folder: Path, name: str = "tiny-hf") -> ProjectConfig:
    return ProjectConfig.model_validate(
        {
            "model": {"name": name, "source": "transformers", "path": str(folder), "max_tokens": MAX_TOKENS},
            "endpoint": {"name": "hf-chat", "served_entities": [{"entity_name": name}]},
        }
    )


def _store(root: Path) -> Backend:
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return Backend(kind="local", host=None, token=None, tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def registered(tiny_hf_model: Path, tmp_path_factory) -> dict:  # noqa: ANN001
    """The tiny model registered once through the register step (source transformers)."""
    backend = _store(tmp_path_factory.mktemp("hf-store"))
    return {"backend": backend, **register(_project(tiny_hf_model), backend)}


@pytest.fixture(scope="module")
def served(registered: dict, tmp_path_factory) -> Iterator[dict]:  # noqa: ANN001
    """The registered version deployed on a local workspace of its own."""
    from llmops_nb.endpoints.apply import deploy

    store: Backend = registered["backend"]
    home = tmp_path_factory.mktemp("hf-ws") / ".llmops"
    info = launcher.ensure_running(home, store.tracking_uri)
    backend = Backend(
        kind="local", host=info.host, token=info.token, tracking_uri=store.tracking_uri, registry_uri=store.registry_uri
    )
    w = backend.workspace_client(retry_timeout_seconds=300, http_timeout_seconds=300)
    entity = {"entity_name": registered["model_name"], "entity_version": registered["model_version"]}
    cfg = EndpointConfig.model_validate({"name": "hf-chat", "served_entities": [{**entity, "scale_to_zero_enabled": False}]})
    try:
        deploy(w, cfg, progress=False, poll_interval=0.5, timeout=600)
        yield {"w": w, "info": info, "backend": backend}
    finally:
        launcher.stop(home)


def test_the_version_says_what_it_serves(registered: dict, tiny_hf_model: Path) -> None:
    from mlflow import MlflowClient
    from mlflow.models import Model

    store: Backend = registered["backend"]
    client = MlflowClient(store.tracking_uri, store.registry_uri)
    version = client.get_model_version(registered["model_name"], registered["model_version"])
    run = client.get_run(version.run_id)
    assert run.data.params["source"] == "transformers"
    assert run.data.params["context_length"] == "512"  # config.json's max_position_embeddings
    assert run.data.params["chat_template_sha256"] == hashlib.sha256(CHAT_TEMPLATE.encode()).hexdigest()
    assert run.data.params["architecture"] == "LlamaForCausalLM"
    assert run.data.tags["llmops_nb.source"] == "transformers"
    assert run.data.tags["llmops_nb.source_sha256"] == sources.folder_sha256(tiny_hf_model)

    model = Model.load(registered["model_uri"])
    flavor = model.flavors["transformers"]
    assert flavor["inference_task"] == "llm/v1/chat" and flavor["task"] == "text-generation"
    assert flavor["source_model_name"] == "tiny-llama"  # the answers' `model`, not the folder's path
    assert model.flavors["python_function"]["config"] == {"max_new_tokens": MAX_TOKENS, "do_sample": False}
    assert str(client.get_model_version_by_alias(registered["model_name"], "challenger").version) == registered["model_version"]


def test_the_environment_pins_this_one(registered: dict) -> None:
    import mlflow.artifacts
    import torch
    import transformers

    reqs = Path(mlflow.artifacts.download_artifacts(f"{registered['model_uri']}/requirements.txt")).read_text().split()
    assert f"torch=={torch.__version__.split('+')[0]}" in reqs
    assert f"transformers=={transformers.__version__}" in reqs
    assert any(r.startswith("mlflow==") for r in reqs)


def test_generation_defaults_are_the_pipeline_config() -> None:
    assert hf.generation_config({"max_tokens": 32, "temperature": 0.0}) == {"max_new_tokens": 32, "do_sample": False}
    assert hf.generation_config({"max_tokens": 5, "temperature": 0.7}) == {
        "max_new_tokens": 5,
        "do_sample": True,
        "temperature": 0.7,
    }


def _greedy(folder: Path, messages: list[dict], max_new_tokens: int) -> str:
    """The same model called in-process: chat template, greedy generate, the new tokens decoded."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0][ids["input_ids"].shape[1] :], skip_special_tokens=True)


def test_deployed_it_answers_a_chat_request_over_http(served: dict, tiny_hf_model: Path) -> None:
    from llmops_nb.chat.client import chat

    messages = [{"role": "user", "content": "what is a model endpoint"}]
    info = served["info"]
    r = requests.post(
        f"{info.host}/serving-endpoints/hf-chat/invocations",
        json={"messages": messages, "max_tokens": 6, "temperature": 0.0},
        headers={"Authorization": f"Bearer {info.token}"},
        timeout=300,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "tiny-llama"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["logprobs"] is None and choice["message"]["refusal"] is None  # OpenAI's nullable fields (issue 29)
    assert body["usage"]["completion_tokens"] == 6 and choice["finish_reason"] == "length"
    # the served answer is the model's own greedy continuation (MLflow strips leading blanks)
    assert choice["message"]["content"] == _greedy(tiny_hf_model, messages, 6).lstrip()

    # streamed: MLflow's transformers pyfunc has no predict_stream, so the whole answer as chunks
    with requests.post(
        f"{info.host}/serving-endpoints/hf-chat/invocations",
        json={"messages": messages, "max_tokens": 6, "temperature": 0.0, "stream": True},
        headers={"Authorization": f"Bearer {info.token}"},
        timeout=300,
        stream=True,
    ) as s:
        assert s.status_code == 200
        events = [line[len(b"data: ") :] for line in s.iter_lines() if line.startswith(b"data: ")]
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["model"] for c in chunks} == {"tiny-llama"}
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert streamed.split() == choice["message"]["content"].split()

    # through the databricks-sdk's query (llmops_nb.chat.client.chat)
    result = chat(served["w"], "hf-chat", "what is a model endpoint", max_tokens=MAX_TOKENS)
    assert result.completion_tokens == MAX_TOKENS
    assert result.content == _greedy(tiny_hf_model, messages, MAX_TOKENS).lstrip()


def test_a_folder_without_a_chat_template_is_one_line_and_creates_nothing(tiny_hf_model: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    folder = tmp_path / "no-template"
    shutil.copytree(tiny_hf_model, folder)
    (folder / "chat_template.jinja").unlink()
    backend = _store(tmp_path)
    with pytest.raises(ConfigError) as e:
        register(_project(folder, "no-template-llm"), backend)
    message = str(e.value)
    assert "\n" not in message
    assert "model.path" in message and str(folder) in message and "chat template" in message
    if (tmp_path / "mlflow.db").exists():
        client = MlflowClient(backend.tracking_uri, backend.registry_uri)
        assert client.search_registered_models() == []
        assert all(not client.search_runs([x.experiment_id]) for x in client.search_experiments())
