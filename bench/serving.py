"""Completion tokens/s through an HTTP endpoint vs llama.cpp in-process, same prompts, one run.

By default it registers the bundled SmolLM2 in a temporary SQLite registry and serves it
with ``mlflow models serve``; ``--url`` points it at any invocations or chat-completions
URL instead (e.g. ``http://127.0.0.1:PORT/serving-endpoints/NAME/invocations``). Single
stream, greedy, same max_tokens; requests alternate between the two sides.

    .venv/bin/python bench/serving.py [--url URL] [--token T] [--max-tokens 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests

PROMPTS = [
    "Explain what a serving endpoint is in two sentences.",
    "Write a short poem about the sea.",
    "List three uses of a hash map.",
    "What is the difference between a list and a tuple in Python?",
    "Describe a sunrise to someone who has never seen one.",
]


def in_process_completion(llm, messages: list[dict], max_tokens: int) -> tuple[int, str]:
    out = llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0)
    return out["usage"]["completion_tokens"], out["choices"][0]["message"]["content"]


def http_completion(session: requests.Session, url: str, body: dict) -> tuple[int, str]:
    response = session.post(url, json=body, timeout=300)
    response.raise_for_status()
    out = response.json()
    return out["usage"]["completion_tokens"], out["choices"][0]["message"]["content"]


@contextlib.contextmanager
def local_scoring_server() -> Iterator[str]:
    """Register the bundled model in a temp registry and serve version 1."""
    from llmops_nb.models.serving import scoring_server
    from llmops_nb.registry import register_model

    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        started = time.perf_counter()
        model = register_model("bench-smollm2", tracking_uri=uri)
        print(f"registered {model.uri} in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        with scoring_server(model.uri, tracking_uri=uri, log_path=Path(tmp) / "serve.log") as base:
            print(f"mlflow models serve answered after {time.perf_counter() - started:.1f} s")
            yield f"{base}/invocations"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="invocations or chat-completions URL (default: own server)")
    parser.add_argument("--token", default=os.environ.get("DATABRICKS_TOKEN"))
    parser.add_argument("--model", help="'model' field for /serving-endpoints/chat/completions")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    # Two llama.cpp processes (this one and the server) share the cores: with libgomp's
    # default spin-waiting the idle team steals CPU from the busy one (both sides ~30 tok/s
    # instead of ~40 under the same load). The served model inherits this environment.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    from llama_cpp import Llama

    from llmops_nb.models.chat_model import DEFAULT_CONFIG, llama_kwargs
    from llmops_nb.models.gguf import bundled_gguf_path

    llm = Llama(model_path=str(bundled_gguf_path()), **llama_kwargs(DEFAULT_CONFIG))
    session = requests.Session()
    if args.token:
        session.headers["Authorization"] = f"Bearer {args.token}"

    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(local_scoring_server())
        totals = {"http": [0, 0.0], "in-process": [0, 0.0]}
        same, pair_ratios = 0, []
        conversations = [[{"role": "user", "content": p}] for p in PROMPTS]
        body0 = {"messages": conversations[0], "max_tokens": 8, "temperature": 0.0}
        http_completion(session, url, {**body0, **({"model": args.model} if args.model else {})})
        in_process_completion(llm, conversations[0], 8)  # warm both sides
        for _ in range(args.rounds):
            for messages in conversations:
                body = {"messages": messages, "max_tokens": args.max_tokens, "temperature": 0.0}
                if args.model:
                    body["model"] = args.model
                started = time.perf_counter()
                http_tokens, http_text = http_completion(session, url, body)
                totals["http"][0] += http_tokens
                http_s = time.perf_counter() - started
                totals["http"][1] += http_s
                started = time.perf_counter()
                local_tokens, local_text = in_process_completion(llm, messages, args.max_tokens)
                totals["in-process"][0] += local_tokens
                local_s = time.perf_counter() - started
                totals["in-process"][1] += local_s
                same += http_text == local_text
                pair_ratios.append((http_tokens / http_s) / (local_tokens / local_s))

    n = args.rounds * len(PROMPTS)
    rates = {side: tokens / seconds for side, (tokens, seconds) in totals.items()}
    print(f"url: {url}")
    print(f"{n} requests per side, single stream, greedy, max_tokens={args.max_tokens}, "
          f"n_threads={os.cpu_count()}; identical answers: {same}/{n}")
    for side, (tokens, seconds) in totals.items():
        print(f"{side:>11}: {tokens} completion tokens in {seconds:.2f} s = {rates[side]:.1f} tok/s")
    print(f"ratio http / in-process: {rates['http'] / rates['in-process']:.3f} (target >= 0.95); "
          f"median of per-request ratios: {statistics.median(pair_ratios):.3f}")
    print(f"load average 1/5/15 min at the end: {os.getloadavg()} (other processes skew it)")


if __name__ == "__main__":
    main()
