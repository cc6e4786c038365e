"""The AIMD limiter alone, and an evaluation under a real gateway rate limit of the fake workspace."""

from __future__ import annotations

import collections
import json
import threading
from pathlib import Path

import pytest

from llmops_nb.chat.ratecontrol import AimdLimiter, Throttled
from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.endpoints.apply import deploy
from llmops_nb.evaluation.orchestrate import evaluate_endpoint


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_window_halves_once_per_burst_and_grows_back_by_one_per_window() -> None:
    clock = Clock()
    limiter = AimdLimiter(8, clock=clock)
    starts = [limiter.acquire() for _ in range(8)]
    for s in starts[:3]:  # three 429s of the same burst: one cut
        limiter.throttled(2.0, s)
        limiter.release(answered=False)
    assert limiter.window == 4.0 and limiter.hold_until == 2.0 and limiter.throttles == 3
    for _ in range(5):
        limiter.release(answered=True)
    clock.now = 2.5
    later = limiter.acquire()
    before = limiter.window
    assert 5 < before < 5.5  # five answers: +1/window each
    limiter.throttled(1.0, later)  # a call started after the cut cuts again
    assert limiter.window == before / 2 and limiter.hold_until == 3.5
    limiter.release(answered=False)
    w = limiter.window
    clock.now = 4.0  # the hold is over
    for _ in range(6):  # about +1 per window of answers
        limiter.acquire()
        limiter.release(answered=True)
    assert w + 1.5 < limiter.window < w + 2.4  # 6 answers over windows of 2.6 to 4.4: about +2


def test_a_call_is_asked_again_after_each_429_and_others_wait_out_the_hold() -> None:
    limiter = AimdLimiter(4)
    attempts = collections.Counter()
    lock = threading.Lock()

    def call(k: int) -> int:
        with lock:
            attempts[k] += 1
            first = attempts[k] == 1
        if k == 0 and first:
            raise Throttled(0.2)
        return k

    assert limiter.call(lambda: call(0)) == 0
    assert attempts[0] == 2 and limiter.stats()["throttles"] == 1
    with pytest.raises(KeyError):  # anything but a 429 is raised at once
        limiter.call(lambda: {}["x"])
    impatient = AimdLimiter(2, patience=0.0)
    with pytest.raises(Throttled, match="still throttled"):
        impatient.call(lambda: (_ for _ in ()).throw(Throttled(0.01)))


#: the fake gateway's minute in these tests, in seconds (a real one is 60)
MINUTE = 12.0


def _requests_of(ws, endpoint: str) -> list[dict]:  # noqa: ANN001
    return [r for r in ws.requests() if r["path"] == f"/serving-endpoints/{endpoint}/invocations"]


def test_an_evaluation_under_a_gateway_limit_of_60_calls_a_minute(fake_workspace, tmp_path: Path) -> None:  # noqa: ANN001
    """100 rows against 60 calls/minute: every row answered once, the limit used, few 429s.

    The fake's gateway minute lasts ``MINUTE`` seconds (the ``gateway_minute_seconds`` fault), so
    the window renews within the test's wait; the limiter's arithmetic is the same at any length.
    """
    cfg = EndpointConfig.model_validate(
        {
            "name": "limited",
            "served_entities": [{"entity_name": "m", "entity_version": "1", "scale_to_zero_enabled": False}],
            "ai_gateway": {"rate_limits": [{"calls": 60, "renewal_period": "minute", "key": "endpoint"}]},
        }
    )
    w = fake_workspace.client()  # the SDK's retry budget (30 s) is shorter than the Retry-After
    deploy(w, cfg, progress=False, poll_interval=0.1)
    fake_workspace.reset()
    fake_workspace.set_faults(gateway_minute_seconds=MINUTE)
    rows = [{"id": f"r{i}", "question": f"question {i}", "expected": "x", "aliases": []} for i in range(100)]
    result = evaluate_endpoint(
        w, "limited", rows, concurrency=8, tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", progress=False, output_dir=tmp_path
    )
    assert result.metrics["error_rate"] == 0 and result.metrics["rows"] == 100

    record = _requests_of(fake_workspace, "limited")
    answered = [r for r in record if r["status"] == 200]
    refused = [r for r in record if r["status"] == 429]
    per_row = collections.Counter(r["body"]["messages"][-1]["content"] for r in answered)
    assert sorted(per_row) == sorted(r["question"] for r in rows) and set(per_row.values()) == {1}
    assert {r["status"] for r in record} == {200, 429}
    # Server-side timestamps: never more than 60 answers in any minute (the gateway's own
    # check) and the limit used: the first window is filled before the first 429 ...
    times = sorted(r["time"] for r in answered)
    assert all(sum(1 for t in times if s <= t < s + MINUTE) <= 60 for s in times)
    first_refusal = min(r["time"] for r in refused)
    assert sum(1 for t in times if t < first_refusal) == 60
    # ... a burst of 429s is at most the calls in flight, and after the hold the window is
    # asked again at once (the rest answered within the Retry-After plus a few seconds) ...
    assert len(refused) <= 2 * 8, f"{len(refused)} 429s for 100 answers"
    assert times[-1] - times[0] < MINUTE + 5


def test_the_judge_shares_the_policy_under_a_gateway_limit_of_60_calls_a_minute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Correctness judge on an external-model endpoint limited to 60 calls a minute.

    70 answered rows: every row judged exactly once after its 429s, never more than 60 judge
    answers in a minute, and every verdict read (the provider says yes for even rows only).
    """
    import re

    from llmops_nb.testing import fake_workspace
    from llmops_nb.testing.provider import fake_provider

    with fake_provider() as provider:
        provider.reply = lambda body: (
            '{"result": "%s", "rationale": "fake judge"}'
            % ("yes" if int(re.search(r"question (\d+)", json.dumps(body)).group(1)) % 2 == 0 else "no")
        )
        monkeypatch.setenv("LLMOPS_SECRET_JUDGE_OPENAI", "sk-judge-canary-0123456789")
        with fake_workspace(tmp_path / "ws", ready_seconds=0.1) as ws:
            for key, value in ws.env().items():
                monkeypatch.setenv(key, value)  # MLflow's `endpoints:/` judge reaches the workspace from these
            w = ws.client()
            deploy(
                w,
                EndpointConfig.model_validate(
                    {
                        "name": "answers",
                        "served_entities": [{"entity_name": "m", "entity_version": "1", "scale_to_zero_enabled": False}],
                    }
                ),
                progress=False,
                poll_interval=0.1,
            )
            deploy(
                w,
                EndpointConfig.model_validate(
                    {
                        "name": "judge",
                        "served_entities": [
                            {
                                "name": "judge",
                                "external_model": {
                                    "name": "gpt-judge",
                                    "provider": "openai",
                                    "task": "llm/v1/chat",
                                    "openai_config": {
                                        "openai_api_key": "{{secrets/judge/openai}}",
                                        "openai_api_base": provider.base_url,
                                    },
                                },
                            }
                        ],
                        "ai_gateway": {"rate_limits": [{"calls": 60, "renewal_period": "minute", "key": "endpoint"}]},
                    }
                ),
                progress=False,
                poll_interval=0.1,
            )
            ws.reset()
            ws.set_faults(gateway_minute_seconds=MINUTE)
            rows = [{"id": f"r{i}", "question": f"question {i}", "expected": "x", "aliases": []} for i in range(70)]
            result = evaluate_endpoint(
                w,
                "answers",
                rows,
                concurrency=8,
                judge_endpoint="judge",
                tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
                progress=False,
                output_dir=tmp_path / "out",
            )
            record = _requests_of(ws, "judge")

    assert result.metrics["correctness/errors"] == 0
    assert result.metrics["correctness/mean"] == 0.5  # 35 of 70 verdicts "yes": each was read
    answered = [r for r in record if r["status"] == 200]
    refused = [r for r in record if r["status"] == 429]
    judged = collections.Counter(re.search(r"question (\d+)", json.dumps(r["body"])).group(1) for r in answered)
    assert sorted(judged, key=int) == [str(i) for i in range(70)] and set(judged.values()) == {1}
    assert refused, "the limit was never reached: the test proves nothing"
    times = sorted(r["time"] for r in answered)
    assert all(sum(1 for t in times if s <= t < s + MINUTE) <= 60 for s in times)
    assert sum(1 for t in times if t < min(r["time"] for r in refused)) == 60  # the window was used up first
    assert len(refused) <= 2 * 8, f"{len(refused)} 429s for 70 judge answers"
