"""Streamed generations: deltas as decoded, joined equal to the unstreamed answer; a stream
that is cancelled leaves the batch at once (its slot is free for the next request)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.model

PROMPTS = ["What is MLflow?", "Name three colors.", "Write a haiku about data.", "Who wrote Hamlet?"]


@pytest.fixture(scope="module")
def engine():
    from llmops_nb.models.engine import BatchEngine
    from llmops_nb.models.gguf import bundled_gguf_path

    eng = BatchEngine(str(bundled_gguf_path()), n_ctx=2048, n_seq_max=4)
    yield eng
    eng.close()


def request(engine, content: str, **kwargs):
    from llmops_nb.models.engine import GenRequest

    prompt, stops = engine.chat_prompt([{"role": "user", "content": content}])
    kwargs.setdefault("max_tokens", 24)
    return GenRequest(prompt=prompt, stop=kwargs.pop("stop", []) + stops, **kwargs)


def read(stream) -> tuple[list[str], object]:
    parts = list(stream)
    return parts, stream.result


def test_streamed_deltas_join_to_the_unstreamed_answer_in_one_batch(engine) -> None:
    plain = [engine.generate(request(engine, p)) for p in PROMPTS]
    before = engine.max_running
    with ThreadPoolExecutor(len(PROMPTS)) as pool:  # 2 streams and 2 plain requests, together
        streams = [pool.submit(read, engine.submit_stream(request(engine, p))) for p in PROMPTS[:2]]
        others = [pool.submit(engine.generate, request(engine, p)) for p in PROMPTS[2:]]
        streamed = [f.result(timeout=120) for f in streams]
        rest = [f.result(timeout=120) for f in others]
    assert engine.max_running > max(before, 1)
    for (parts, result), ref in zip(streamed, plain[:2]):
        assert len(parts) > 3  # many deltas, not one
        assert "".join(parts) == result.text == ref.text
        assert result.tokens == ref.tokens
    assert [r.text for r in rest] == [r.text for r in plain[2:]]


def test_a_stop_string_is_never_streamed(engine) -> None:
    full = engine.generate(request(engine, PROMPTS[0])).text
    stop = full.split()[len(full.split()) // 2]
    stream = engine.submit_stream(request(engine, PROMPTS[0], stop=[stop]))
    parts, result = read(stream)
    assert "".join(parts) == full[: full.index(stop)] == result.text
    assert result.finish_reason == "stop"


def test_a_cancelled_stream_frees_its_slot_at_once(engine) -> None:
    cancelled = engine.cancelled
    stream = engine.submit_stream(request(engine, "Write a very long story about a dragon.", max_tokens=1500))
    it = iter(stream)
    first = [next(it) for _ in range(3)]
    assert all(first)
    stream.cancel()
    rest = list(it)  # what was decoded before the engine saw the flag, then the end
    result = stream.result
    assert result.finish_reason == "cancelled"
    assert len(result.tokens) < 100  # nowhere near max_tokens
    assert engine.cancelled == cancelled + 1
    assert "".join(first + rest) == result.text
    # the next request runs alone: the cancelled sequence is no longer in the batch
    out = engine.generate(request(engine, PROMPTS[3], max_tokens=8))
    assert out.tokens and engine.active == 1
