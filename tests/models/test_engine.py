"""The continuous-batching engine: batched answers equal unbatched ones, stops, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.model

PROMPTS = [
    "What is MLflow?",
    "Name three colors.",
    "What is the capital of France?",
    "Explain model serving in one sentence.",
    "Write a haiku about data.",
    "Who wrote Hamlet?",
]
MAX_TOKENS = 24


@pytest.fixture(scope="module")
def engine():
    from llmops_nb.models.engine import BatchEngine
    from llmops_nb.models.gguf import bundled_gguf_path

    eng = BatchEngine(str(bundled_gguf_path()), n_ctx=2048, n_seq_max=8)
    yield eng
    eng.close()


def request(engine, content: str, **kwargs):
    from llmops_nb.models.engine import GenRequest

    prompt, stops = engine.chat_prompt([{"role": "user", "content": content}])
    kwargs.setdefault("max_tokens", MAX_TOKENS)
    return GenRequest(prompt=prompt, stop=kwargs.pop("stop", []) + stops, **kwargs)


def concurrently(engine, requests):
    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(engine.generate, requests))


@pytest.fixture(scope="module")
def unbatched(engine):
    return [engine.generate(request(engine, p)) for p in PROMPTS]


def test_batched_greedy_equals_unbatched(engine, unbatched) -> None:
    before = engine.max_running
    batched = concurrently(engine, [request(engine, p) for p in PROMPTS])
    assert engine.max_running > max(before, 1)  # they really shared decode steps
    assert [r.tokens for r in batched] == [r.tokens for r in unbatched]
    assert [r.text for r in batched] == [r.text for r in unbatched]
    assert all(r.text.strip() for r in batched)


def test_requests_joining_a_running_batch_keep_their_answers(engine, unbatched) -> None:
    futures = []
    for prompt in PROMPTS:  # each arrives while the earlier ones decode
        futures.append(engine.submit(request(engine, prompt)))
        time.sleep(0.03)
    assert [f.result(timeout=120).tokens for f in futures] == [r.tokens for r in unbatched]


def test_sequences_moved_to_close_gaps_keep_their_answers(engine, unbatched) -> None:
    lengths = [4, MAX_TOKENS, 8, MAX_TOKENS, 12, MAX_TOKENS]  # low ids finish first
    moves = engine.moves
    results = concurrently(engine, [request(engine, p, max_tokens=n) for p, n in zip(PROMPTS, lengths)])
    assert engine.moves > moves
    for ours, full, n in zip(results, unbatched, lengths):
        assert ours.tokens == full.tokens[:n]


def test_greedy_equals_llama_create_chat_completion(unbatched) -> None:
    from llama_cpp import Llama

    from llmops_nb.models.chat_model import DEFAULT_CONFIG, llama_kwargs
    from llmops_nb.models.gguf import bundled_gguf_path

    llm = Llama(model_path=str(bundled_gguf_path()), **llama_kwargs(DEFAULT_CONFIG))
    for prompt, ours in zip(PROMPTS, unbatched):
        out = llm.create_chat_completion(messages=[{"role": "user", "content": prompt}], max_tokens=MAX_TOKENS, temperature=0.0)
        assert out["choices"][0]["message"]["content"] == ours.text
        assert out["choices"][0]["finish_reason"] == ours.finish_reason
        assert out["usage"]["prompt_tokens"] == ours.prompt_tokens
        assert out["usage"]["completion_tokens"] == len(ours.tokens)


def test_max_tokens_ends_with_length(engine) -> None:
    out = engine.generate(request(engine, "Write a long story about a dragon.", max_tokens=5))
    assert len(out.tokens) == 5 and out.finish_reason == "length"


def test_stop_string_cuts_the_answer_in_a_batch(engine, unbatched) -> None:
    full = unbatched[0].text
    stop = full.split()[len(full.split()) // 2]
    requests = [request(engine, PROMPTS[0], stop=[stop])] + [request(engine, p) for p in PROMPTS[1:]]
    results = concurrently(engine, requests)
    assert results[0].text == full[: full.index(stop)] and results[0].finish_reason == "stop"
    assert [r.text for r in results[1:]] == [r.text for r in unbatched[1:]]


def test_sampling_depends_on_the_seed_not_on_the_batch(engine) -> None:
    alone = engine.generate(request(engine, PROMPTS[3], temperature=0.9, seed=7))
    mixed = concurrently(
        engine,
        [request(engine, PROMPTS[3], temperature=0.9, seed=7)]
        + [request(engine, p, temperature=0.9, seed=i) for i, p in enumerate(PROMPTS)],
    )
    assert mixed[0].tokens == alone.tokens


def test_too_long_prompt_fails_alone(engine, unbatched) -> None:
    from llmops_nb.models.engine import GenRequest

    running = [engine.submit(request(engine, p)) for p in PROMPTS[:3]]
    with pytest.raises(ValueError, match=r"Requested tokens \(3000\) exceed context window of 2048"):
        engine.submit(GenRequest(prompt=[1] * 3000, max_tokens=8))
    assert [f.result(timeout=120).text for f in running] == [r.text for r in unbatched[:3]]


def test_many_concurrent_submissions_all_complete(engine) -> None:
    requests = [request(engine, p, max_tokens=4) for p in PROMPTS * 3]  # 18 > 8 slots
    results = concurrently(engine, requests)
    assert len(results) == 18 and all(1 <= len(r.tokens) <= 4 for r in results)


def test_logged_model_serves_without_llmops_nb(tmp_path: Path) -> None:
    import mlflow

    from llmops_nb.models.pyfunc import pyfunc_kwargs

    path = tmp_path / "chat"
    mlflow.pyfunc.save_model(str(path), **pyfunc_kwargs())
    assert (path / "code" / "engine.py").is_file()
    code = (
        "import sys, json; sys.modules['llmops_nb'] = None\n"  # any llmops_nb import fails
        "import mlflow\n"
        f"m = mlflow.pyfunc.load_model({str(path)!r})\n"
        "out = m.predict({'messages': [{'role': 'user', 'content': 'Hi'}], 'max_tokens': 4,"
        " 'temperature': 0.0})\n"
        "assert 'llmops_nb.models.engine' not in sys.modules\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(out) == {"id", "object", "created", "model", "choices", "usage"}
    assert out["usage"]["completion_tokens"] <= 4 and out["choices"][0]["message"]["content"]


def test_batched_equals_unbatched_without_flash_attention_too() -> None:
    """Flash attention is a speed setting: batching keeps answers identical either way."""
    from llmops_nb.models.engine import BatchEngine
    from llmops_nb.models.gguf import bundled_gguf_path

    eng = BatchEngine(str(bundled_gguf_path()), n_ctx=2048, n_seq_max=8, flash_attn=False)
    try:
        alone = [eng.generate(request(eng, p)) for p in PROMPTS[:4]]
        together = concurrently(eng, [request(eng, p) for p in PROMPTS[:4]])
        assert eng.max_running > 1
        assert [r.tokens for r in together] == [r.tokens for r in alone]
    finally:
        eng.close()
