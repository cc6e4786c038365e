"""A transformers source served on the local workspace vs the same model in-process (issue 28).

Builds a random-weight Llama offline (llmops_nb.testing.tiny_hf, bigger than the test's so that
decoding, not HTTP, is most of a request), registers it with ``model.source: transformers``
(MLflow's transformers flavor, task llm/v1/chat) in a temporary SQLite registry, deploys it on a
temporary local workspace, and measures completion tokens/s with 1 client (greedy, requests back
to back) against ``model.generate`` called in-process (a fresh child process, warmed on one
prompt, with nothing else in its interpreter) on the same prompts with the same settings. Rounds alternate served / in-process so load on the machine hits both alike; the
ratio reported is the median over rounds of served tok/s / in-process tok/s (target >= 0.8).

    .venv/bin/python bench/transformers_serving.py [--rounds 3] [--prompts 6] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

PROMPTS = [
    "what is a model endpoint",
    "write a story about a cat and a river",
    "how do I deploy a model to a workspace",
    "tell me about the moon and the stars",
    "why is the evaluation score low today",
    "give me ten numbers and a color",
    "explain latency and throughput",
    "what happens when a server stops",
]


def _in_process(folder: Path, prompts: list[str], max_tokens: int) -> tuple[int, float, list[str]]:
    """(completion tokens, seconds, answers) of greedy generate on each prompt, one at a time."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    model.eval()
    tokens, answers = 0, []
    started = time.perf_counter()
    for p in prompts:
        text = tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False)
        new = out[0][ids["input_ids"].shape[1] :]
        tokens += int(new.shape[0])
        answers.append(tokenizer.decode(new, skip_special_tokens=True).lstrip())
    return tokens, time.perf_counter() - started, answers


def _in_fresh_process(folder: Path, prompts: list[str], max_tokens: int) -> tuple[int, float, list[str]]:
    """:func:`_in_process` in a child process of its own (warmed on one prompt first): nothing of
    this process (the SDK client, MLflow, its threads) shares its interpreter."""
    out = subprocess.run(
        [sys.executable, __file__, "--in-process", str(folder), "--max-tokens", str(max_tokens), "--", *prompts],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    row = json.loads(out.stdout.strip().splitlines()[-1])
    return row["tokens"], row["seconds"], row["answers"]


def _served(url: str, token: str, prompts: list[str], max_tokens: int) -> tuple[int, float, list[str]]:
    tokens, answers = 0, []
    session = requests.Session()
    started = time.perf_counter()
    for p in prompts:
        r = session.post(
            url,
            json={"messages": [{"role": "user", "content": p}], "max_tokens": max_tokens, "temperature": 0.0},
            headers={"Authorization": f"Bearer {token}"},
            timeout=600,
        )
        r.raise_for_status()
        body = r.json()
        tokens += int(body["usage"]["completion_tokens"])
        answers.append(body["choices"][0]["message"]["content"])
    return tokens, time.perf_counter() - started, answers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=6)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--out", default="bench/results/transformers_serving.json")
    ap.add_argument("--in-process", metavar="FOLDER", help=argparse.SUPPRESS)  # the child of _in_fresh_process
    ap.add_argument("child_prompts", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.in_process:
        _in_process(Path(args.in_process), args.child_prompts[:1], 4)  # warm
        tokens, seconds, answers = _in_process(Path(args.in_process), args.child_prompts, args.max_tokens)
        print(json.dumps({"tokens": tokens, "seconds": seconds, "answers": answers}))
        return

    from llmops_nb.backends import Backend
    from llmops_nb.config.endpoint import EndpointConfig
    from llmops_nb.config.project import ProjectConfig
    from llmops_nb.endpoints.apply import deploy
    from llmops_nb.steps.register import register
    from llmops_nb.testing.tiny_hf import build_tiny_causal_lm
    from llmops_nb.workspace import launcher

    prompts = (PROMPTS * 4)[: args.prompts]
    root = Path(tempfile.mkdtemp(prefix="bench-hf-"))
    folder = build_tiny_causal_lm(root / "bench-llama", hidden_size=args.hidden, layers=args.layers, heads=4)
    params = sum(os.path.getsize(f) for f in folder.iterdir())
    uri = f"sqlite:///{root / 'mlflow.db'}"
    project = ProjectConfig.model_validate(
        {
            "model": {"name": "bench-hf", "source": "transformers", "path": str(folder), "max_tokens": args.max_tokens},
            "endpoint": {"name": "bench-hf", "served_entities": [{"entity_name": "bench-hf"}]},
        }
    )
    reg = register(project, Backend(kind="local", host=None, token=None, tracking_uri=uri, registry_uri=uri))
    home = root / ".llmops"
    info = launcher.ensure_running(home, uri)
    rows = []
    try:
        backend = Backend(kind="local", host=info.host, token=info.token, tracking_uri=uri, registry_uri=uri)
        w = backend.workspace_client(retry_timeout_seconds=300, http_timeout_seconds=600)
        entity = {"entity_name": reg["model_name"], "entity_version": reg["model_version"], "scale_to_zero_enabled": False}
        deploy(w, EndpointConfig.model_validate({"name": "bench-hf", "served_entities": [entity]}), progress=False, timeout=900)
        url = f"{info.host}/serving-endpoints/bench-hf/invocations"
        token = info.token or "local"
        _served(url, token, prompts[:1], 4)  # warm (the child process warms itself)
        for i in range(args.rounds):
            st, ss, sa = _served(url, token, prompts, args.max_tokens)
            it, is_, ia = _in_fresh_process(folder, prompts, args.max_tokens)
            row = {
                "round": i + 1,
                "served_tokens": st,
                "served_s": round(ss, 3),
                "served_tok_s": round(st / ss, 1),
                "in_process_tokens": it,
                "in_process_s": round(is_, 3),
                "in_process_tok_s": round(it / is_, 1),
                "ratio": round((st / ss) / (it / is_), 3),
                "same_answers": sum(a == b for a, b in zip(sa, ia, strict=True)),
                "load_1min": round(os.getloadavg()[0], 2),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        launcher.stop(home)
    ratio = statistics.median(r["ratio"] for r in rows)
    summary = {
        "model": {"hidden": args.hidden, "layers": args.layers, "bytes": params},
        "prompts": len(prompts),
        "max_tokens": args.max_tokens,
        "median_ratio": ratio,
        "rounds": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    print(f"served / in-process tokens/s, median of {len(rows)} rounds: {ratio:.3f} (target >= 0.8)")


if __name__ == "__main__":
    main()
