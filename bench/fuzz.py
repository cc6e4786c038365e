"""The long fuzz run: the chat route (OpenAI's chat-completions operation) and our control plane.

Both fuzzers of the test suite (tests/workspace/test_fuzz_chat.py, test_fuzz_control_plane.py),
with many more examples, against one fake workspace: every case is sent and checked
(not_a_server_error; for chat also response_schema_conformance); a failure is counted and the
run goes on instead of stopping at the first. Prints examples/s and the status mix per fuzzer,
and the first failures; exits 1 when any case failed.

    .venv/bin/python bench/fuzz.py [--chat 2000] [--control 2000] [--seed 0]

(FUZZ_EXAMPLES and FUZZ_CONTROL_EXAMPLES give the defaults, as in the tests.)
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from llmops_nb.testing import fake_workspace
from llmops_nb.testing.control_plane_spec import control_plane_spec

ROOT = Path(__file__).resolve().parents[1]
CHAT_SPEC = ROOT / "tests" / "workspace" / "openai_spec" / "chat_completions.json"
NAMES = ("cp-a", "cp-b")


def _run(name: str, strategy, checks, examples: int, seed_value: int, ws) -> bool:
    """Send ``examples`` cases; print rate, status mix and failures; True when none failed."""
    statuses: collections.Counter[int] = collections.Counter()
    failures: list[str] = []

    @seed(seed_value)
    @given(case=strategy)
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def send(case) -> None:
        try:
            response = case.call_and_validate(base_url=ws.host, headers={"Authorization": f"Bearer {ws.token}"}, checks=checks)
            statuses[response.status_code] += 1
        except Exception as e:  # a failed check: counted, the run goes on
            statuses["failed"] += 1  # type: ignore[index]
            failures.append(f"{case.method} {case.path}: {str(e).splitlines()[0][:200]}")

    start = time.perf_counter()
    send()
    took = time.perf_counter() - start
    total = sum(statuses.values())
    mix = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0])))
    print(f"{name}: {total} cases in {took:.1f} s = {total / took:.1f} examples/s; {mix}", flush=True)
    for line in failures[:10]:
        print(f"  FAILED {line}")
    return not failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chat", type=int, default=int(os.environ.get("FUZZ_EXAMPLES", "2000")))
    parser.add_argument("--control", type=int, default=int(os.environ.get("FUZZ_CONTROL_EXAMPLES", "2000")))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from databricks.sdk.service.serving import EndpointCoreConfigInput, ServedEntityInput

    chat = schemathesis.openapi.from_path(CHAT_SPEC)["/serving-endpoints/chat/completions"]["POST"]
    full = schemathesis.openapi.from_dict(control_plane_spec(NAMES))
    narrow = schemathesis.openapi.from_dict(control_plane_spec(NAMES, narrow=True))
    control = st.one_of(narrow.as_strategy(), full.as_strategy(), full.as_strategy(GenerationMode.NEGATIVE))
    with tempfile.TemporaryDirectory() as home, fake_workspace(Path(home), ready_seconds=0.3) as ws:
        w = ws.client()
        w.serving_endpoints.create_and_wait(
            name="fuzz",
            config=EndpointCoreConfigInput(
                name="fuzz", served_entities=[ServedEntityInput(entity_name="m", entity_version="1", name="m-1")]
            ),
        )
        ok = _run("chat", chat.as_strategy(), [not_a_server_error, response_schema_conformance], args.chat, args.seed, ws)
        ok = _run("control plane", control, [not_a_server_error], args.control, args.seed, ws) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
