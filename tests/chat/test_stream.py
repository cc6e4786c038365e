"""client.chat_stream against the fake workspace: deltas, result, close, errors, bad input."""

from __future__ import annotations

import pytest

from llmops_nb.chat.client import ChatResult, chat, chat_stream
from llmops_nb.errors import ConfigError, QueryError

FOUNDATION = "databricks-smollm2-135m-instruct"


def test_deltas_join_to_the_answer_and_result_matches_chat(fake_workspace) -> None:
    w = fake_workspace.client()
    with chat_stream(w, FOUNDATION, "red green blue", max_tokens=16, system="be brief", stop=["zzz"]) as stream:
        assert stream.result is None  # not before the end
        parts = list(stream)
    ref = chat(w, FOUNDATION, "red green blue", max_tokens=16, system="be brief", stop=["zzz"])
    assert parts == [f"[{FOUNDATION}]", " echo:", " red", " green", " blue"]
    result = stream.result
    assert isinstance(result, ChatResult) and result.content == ref.content
    assert (result.prompt_tokens, result.completion_tokens, result.total_tokens) == (
        ref.prompt_tokens,
        ref.completion_tokens,
        ref.total_tokens,
    )
    assert result.finish_reason == "stop" and result.served_entity == FOUNDATION
    assert 0 < result.ttft_ms <= result.latency_ms
    sent = next(r for r in fake_workspace.requests() if r["path"].endswith("/invocations"))
    assert sent["body"]["stream"] is True and sent["body"]["stop"] == ["zzz"]
    assert sent["body"]["messages"][0] == {"role": "system", "content": "be brief"}
    with pytest.raises(QueryError, match="a stream can be read once"):
        list(stream)


def test_close_stops_early_and_keeps_what_arrived(fake_workspace) -> None:
    stream = chat_stream(fake_workspace.client(), FOUNDATION, "a b c d e f g", max_tokens=32)
    it = iter(stream)
    first = next(it)
    stream.close()
    assert stream.result.content == first and stream.result.finish_reason is None
    assert list(it) == []  # nothing more after close


def test_errors_are_query_errors_and_bad_input_fails_before_any_call(fake_workspace) -> None:
    w = fake_workspace.client()
    with pytest.raises(QueryError, match="endpoint nope: ResourceDoesNotExist"):
        chat_stream(w, "nope", "hi")
    fake_workspace.reset()
    with pytest.raises(ConfigError, match="max_tokens: 0 is not allowed"):
        chat_stream(w, FOUNDATION, "hi", max_tokens=0)
    with pytest.raises(ConfigError, match="prompt"):
        chat_stream(w, FOUNDATION, "  ")
    assert fake_workspace.requests() == []


def test_close_from_another_thread_ends_the_reader_quietly(fake_workspace) -> None:
    import threading

    fake_workspace.set_faults(latency_ms=0)
    stream = chat_stream(fake_workspace.client(), FOUNDATION, " ".join(["w"] * 40), max_tokens=64)
    got: list[str] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for part in stream:
                got.append(part)
                if len(got) == 2:
                    threading.Thread(target=stream.close).start()
                    threading.Event().wait(0.2)
        except BaseException as e:  # noqa: BLE001 - the test's finding
            errors.append(e)

    t = threading.Thread(target=reader)
    t.start()
    t.join(30)
    assert not t.is_alive() and errors == []
    assert stream.result is not None and stream.result.content == "".join(got)
    assert 2 <= len(got) < 42


def test_a_stream_with_no_first_byte_within_the_http_timeout_is_not_sent_again(fake_workspace) -> None:
    from llmops_nb.chat.ratecontrol import NotResent

    fake_workspace.set_faults(hang_seconds=3)
    w = fake_workspace.client(http_timeout_seconds=1, retry_timeout_seconds=8)
    with pytest.raises(NotResent, match=f"endpoint {FOUNDATION}: no answer within http_timeout_seconds=1 s"):
        chat_stream(w, FOUNDATION, "hi")
    assert sum(r["path"].endswith("/invocations") for r in fake_workspace.requests()) == 1


def test_an_application_json_answer_is_read_as_the_whole_completion(fake_workspace) -> None:
    """A served model that cannot stream answers stream: true with one JSON body (Content-Type application/json)."""
    w = fake_workspace.client()
    ref = chat(w, FOUNDATION, "red green blue", max_tokens=16)
    fake_workspace.set_faults(stream_as_json=True)
    with chat_stream(w, FOUNDATION, "red green blue", max_tokens=16) as stream:
        parts = list(stream)
    assert parts == [ref.content] and ref.content.endswith("echo: red green blue")
    result = stream.result
    assert result.content == ref.content and result.finish_reason == "stop"
    assert (result.prompt_tokens, result.completion_tokens) == (ref.prompt_tokens, ref.completion_tokens)
    assert result.served_entity == FOUNDATION


def test_a_json_answer_that_is_not_a_completion_raises() -> None:
    from llmops_nb.chat.stream import completion_as_chunk

    with pytest.raises(QueryError, match=r"endpoint e: stream: true was answered with one application/json body .*no choices"):
        completion_as_chunk("e", {"predictions": ["just text"]})
    chunk = completion_as_chunk("e", {"predictions": [{"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]}]})
    assert chunk["choices"][0]["delta"]["content"] == "hi"
