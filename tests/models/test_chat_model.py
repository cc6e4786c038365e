"""The GGUF chat pyfunc, saved and loaded back with mlflow.pyfunc.load_model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llmops_nb.errors import ConfigError, ModelError

QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory):
    import mlflow

    from llmops_nb.models.pyfunc import pyfunc_kwargs

    path = tmp_path_factory.mktemp("model") / "chat"
    mlflow.pyfunc.save_model(str(path), **pyfunc_kwargs(generation={"max_tokens": 5}))
    return mlflow.pyfunc.load_model(str(path))


def test_import_is_light() -> None:
    code = "import sys, llmops_nb.models; assert not {'mlflow', 'llama_cpp'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_generation_key_is_one_line_error() -> None:
    from llmops_nb.models.pyfunc import model_config

    with pytest.raises(ConfigError, match="generation: 'max_new_tokens'") as err:
        model_config({"max_new_tokens": 5})
    assert "\n" not in str(err.value)


def test_dataframe_request_is_parsed() -> None:
    import numpy as np
    import pandas as pd

    from llmops_nb.models.chat_model import parse_request

    frame = pd.DataFrame([{"messages": np.array(QUESTION), "max_tokens": 4, "temperature": np.nan}])
    assert parse_request(frame) == {"messages": QUESTION, "max_tokens": 4}


@pytest.mark.model
def test_bundled_gguf_exists() -> None:
    from llmops_nb.models import bundled_gguf_path

    path = bundled_gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


@pytest.mark.model
def test_completion_has_choices_and_usage(chat) -> None:
    out = chat.predict({"messages": QUESTION, "max_tokens": 16, "temperature": 0.0})
    assert out["object"] == "chat.completion" and out["model"] == "smollm2-135m-instruct"
    choice = out["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"].strip()
    assert choice["finish_reason"] in ("stop", "length")
    usage = out["usage"]
    assert usage["prompt_tokens"] > 0 and 0 < usage["completion_tokens"] <= 16
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.mark.model
def test_max_tokens_default_comes_from_model_config(chat) -> None:
    out = chat.predict({"messages": [{"role": "user", "content": "Write a long story."}]})
    assert out["usage"]["completion_tokens"] == 5 and out["choices"][0]["finish_reason"] == "length"


@pytest.mark.model
def test_greedy_is_deterministic(chat) -> None:
    body = {"messages": QUESTION, "max_tokens": 24, "temperature": 0.0}
    first, second = chat.predict(body), chat.predict(body)
    assert first["choices"][0]["message"] == second["choices"][0]["message"]


@pytest.mark.model
def test_stop_string_cuts_the_answer(chat) -> None:
    body = {"messages": QUESTION, "max_tokens": 24, "temperature": 0.0}
    full = chat.predict(body)["choices"][0]["message"]["content"]
    words = full.split()
    stop = words[len(words) // 2]
    stopped = chat.predict({**body, "stop": [stop]})["choices"][0]
    assert stopped["message"]["content"] == full[: full.index(stop)]
    assert stopped["finish_reason"] == "stop"


@pytest.mark.model
def test_too_long_prompt_is_a_clear_error(chat) -> None:
    long = [{"role": "user", "content": "hello " * 3000}]
    with pytest.raises(ModelError, match="exceed context window of 2048") as err:
        chat.predict({"messages": long, "max_tokens": 8})
    assert "\n" not in str(err.value)
    # the model still answers afterwards
    assert chat.predict({"messages": QUESTION, "max_tokens": 4})["choices"]


@pytest.mark.model
def test_bad_max_tokens_is_one_line(chat) -> None:
    with pytest.raises(ModelError, match="max_tokens: 0 is not allowed"):
        chat.predict({"messages": QUESTION, "max_tokens": 0})


def test_missing_gguf_path_is_config_error(tmp_path: Path) -> None:
    from llmops_nb.models.pyfunc import pyfunc_kwargs

    with pytest.raises(ConfigError, match="gguf_path"):
        pyfunc_kwargs(tmp_path / "nope.gguf")
