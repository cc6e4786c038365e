"""Streaming: time to first token at 1, 4 and 8 streaming clients, and streaming tokens/s, in one run.

Targets measured (one after another):
  ceiling TTFT  llama.cpp's batch API driven directly, in a fresh process, no HTTP: the prompt's
                prefill plus one decode step (the first two tokens), per prompt, alone
                (median over the prompts and 3 passes)
  streaming     the registered chat model behind the local workspace, ``stream: true``: N
                clients send greedy requests (max_tokens 64) back to back; the time to the
                first text delta of each request, and the aggregate completion tokens/s
  plain         the same endpoint, the same load without streaming (bench/serving.py's load)
Ratios: TTFT p50/p95 over the ceiling's TTFT at 1, 4 and 8 clients (target at 1 client <=
1.25x); streaming tokens/s over plain tokens/s at 8 clients (target >= 0.9). Streamed text is
checked against the plain answers (greedy: equal). Writes bench/results/streaming.json.

    .venv/bin/python bench/streaming.py [--clients 1 4 8] [--requests-per-client 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import serving  # noqa: E402  (bench/serving.py: prompts, load generator, workspace deploy)

MAX_TOKENS = serving.MAX_TOKENS


# ---- ceiling (own process) -----------------------------------------------------------------
def ceiling_ttft(passes: int = 3) -> dict:
    """Seconds from nothing to the second token of each prompt alone: prefill + one decode."""
    import llama_cpp as lc
    import numpy as np
    from llama_cpp import Llama, llama_chat_format

    from llmops_nb.models.gguf import bundled_gguf_path

    path = str(bundled_gguf_path())
    vocab = Llama(model_path=path, vocab_only=True, verbose=False)
    fmt = llama_chat_format.Jinja2ChatFormatter(
        template=vocab.metadata["tokenizer.chat_template"], eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    prompts = [
        vocab.tokenize(fmt(messages=serving.messages(i)).prompt.encode(), add_bos=False, special=True)
        for i in range(len(serving.PROMPTS))
    ]
    lc.llama_backend_init()
    model = lc.llama_model_load_from_file(path.encode(), lc.llama_model_default_params())
    n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(model))
    cp = lc.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max, cp.kv_unified = 4096, 1024, 1024, 8, True
    cp.n_threads = cp.n_threads_batch = os.cpu_count() or 1
    ctx = lc.llama_init_from_model(model, cp)
    mem = lc.llama_get_memory(ctx)
    batch = lc.llama_batch_init(1024, 0, 8)

    def decode(items: list[tuple[int, int, bool]]) -> None:
        batch.n_tokens = len(items)
        for i, (t, p, w) in enumerate(items):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = t, p, 1, w
            batch.seq_id[i][0] = 0
        assert lc.llama_decode(ctx, batch) == 0

    def argmax(row: int) -> int:
        return int(np.argmax(np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, row), shape=(n_vocab,))))

    times = []
    decode([(t, p, p == len(prompts[0]) - 1) for p, t in enumerate(prompts[0])])  # warm up
    for _ in range(passes):
        for toks in prompts:
            lc.llama_memory_seq_rm(mem, 0, -1, -1)
            started = time.perf_counter()
            decode([(t, p, p == len(toks) - 1) for p, t in enumerate(toks)])
            first = argmax(len(toks) - 1)
            decode([(first, len(toks), True)])
            argmax(0)
            times.append(time.perf_counter() - started)
    lc.llama_batch_free(batch)
    lc.llama_free(ctx)
    lc.llama_model_free(model)
    return {"ttft_s": statistics.median(times), "all_s": times}


def run_ceiling() -> dict:
    proc = subprocess.run([sys.executable, __file__, "--ceiling-only"], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- streaming load -------------------------------------------------------------------------
def stream_load(url: str, clients: int, per_client: int, token: str) -> dict:
    """``clients`` threads streaming ``per_client`` greedy requests each, back to back."""
    ttfts: list[float] = []
    tokens = [0]
    answers: dict[int, list[str]] = {}
    errors: list[str] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        for k in range(per_client):
            i = (c + k * clients) % len(serving.PROMPTS)
            body = {"messages": serving.messages(i), "max_tokens": MAX_TOKENS, "temperature": 0.0, "stream": True}
            started = time.perf_counter()
            first, parts, usage = None, [], {}
            try:
                with session.post(url, json=body, timeout=600, stream=True) as r:
                    r.raise_for_status()
                    for line in r.iter_lines(chunk_size=None):
                        if not line.startswith(b"data: ") or line == b"data: [DONE]":
                            continue
                        event = json.loads(line[6:])
                        usage = event.get("usage") or usage
                        delta = (event["choices"][0].get("delta") or {}).get("content") if event.get("choices") else None
                        if delta:
                            first = first or time.perf_counter() - started
                            parts.append(delta)
            except Exception as e:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(str(e)[:200])
                continue
            with lock:
                if first is not None:
                    ttfts.append(first)
                tokens[0] += int(usage.get("completion_tokens") or 0)
                answers.setdefault(i, []).append("".join(parts))

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    q = statistics.quantiles(ttfts, n=20, method="inclusive") if len(ttfts) > 1 else [0] * 19
    return {
        "clients": clients,
        "requests": len(ttfts),
        "errors": errors,
        "completion_tokens": tokens[0],
        "seconds": wall,
        "tokens_per_s": tokens[0] / wall,
        "ttft_p50_s": statistics.median(ttfts) if ttfts else None,
        "ttft_p95_s": q[18],
        "load_avg": os.getloadavg(),
        "answers": {str(k): v for k, v in sorted(answers.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--requests-per-client", type=int, default=3)
    parser.add_argument("--out", type=Path, default=serving.RESULTS / "streaming.json")
    args = parser.parse_args()

    from llmops_nb.models.registry import register_model

    print(f"load average before: {os.getloadavg()}", flush=True)
    ceil = run_ceiling()
    print(f"  ceiling TTFT (prefill + one decode step, batch API, alone): {ceil['ttft_s'] * 1000:.1f} ms", flush=True)
    rows: list[dict] = []
    plain: dict | None = None
    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as tmp_name:
        tmp = Path(tmp_name)
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        model = register_model("bench-smollm2", tracking_uri=uri)
        with serving.via_workspace(model.version, uri, tmp) as (url, token):
            warm = {"messages": serving.messages(0), "max_tokens": 8, "temperature": 0.0}
            requests.post(url, json=warm, timeout=300, headers={"Authorization": f"Bearer {token}"}).raise_for_status()
            for n in args.clients:
                per_client = max(args.requests_per_client, -(-len(serving.PROMPTS) // n))
                row = stream_load(url, n, per_client, token)
                row["ttft_p50_ratio"] = row["ttft_p50_s"] / ceil["ttft_s"]
                row["ttft_p95_ratio"] = row["ttft_p95_s"] / ceil["ttft_s"]
                rows.append(row)
                print(
                    f"  streaming {n} clients: TTFT p50 {row['ttft_p50_s'] * 1000:.0f} ms "
                    f"({row['ttft_p50_ratio']:.2f}x ceiling), p95 "
                    f"{row['ttft_p95_s'] * 1000:.0f} ms ({row['ttft_p95_ratio']:.2f}x); "
                    f"{row['tokens_per_s']:.1f} tok/s ({row['requests']} requests, "
                    f"{len(row['errors'])} errors, load {row['load_avg'][0]:.2f})",
                    flush=True,
                )
            top = max(args.clients)
            per_client = max(args.requests_per_client, -(-len(serving.PROMPTS) // top))
            plain = serving.load(url, top, per_client, token)
            print(f"  plain     {top} clients: {plain['tokens_per_s']:.1f} tok/s (load {plain['load_avg'][0]:.2f})", flush=True)

    one = next((r for r in rows if r["clients"] == 1), None)
    topr = next(r for r in rows if r["clients"] == max(args.clients))
    tps_ratio = topr["tokens_per_s"] / plain["tokens_per_s"]
    same = sum(a == b for r in rows for k, got in r["answers"].items() for a in got for b in plain["answers"].get(k, [])[:1])
    total = sum(1 for r in rows for k, got in r["answers"].items() for _ in got if plain["answers"].get(k))
    print(f"\nceiling TTFT {ceil['ttft_s'] * 1000:.1f} ms")
    print(f"{'clients':>7} {'TTFT p50':>9} {'p95':>7} {'p50/ceil':>9} {'p95/ceil':>9} {'tok/s':>7}")
    for r in rows:
        print(
            f"{r['clients']:>7} {r['ttft_p50_s'] * 1000:>7.0f}ms {r['ttft_p95_s'] * 1000:>5.0f}ms "
            f"{r['ttft_p50_ratio']:>9.2f} {r['ttft_p95_ratio']:>9.2f} {r['tokens_per_s']:>7.1f}"
        )
    if one:
        verdict = "met" if one["ttft_p50_ratio"] <= 1.25 else "MISSED"
        print(f"TTFT at 1 client: {one['ttft_p50_ratio']:.2f}x the ceiling (target <= 1.25: {verdict})")
    verdict = "met" if tps_ratio >= 0.9 else "MISSED"
    print(
        f"streaming tokens/s at {topr['clients']} clients: {tps_ratio:.3f} of non-streaming "
        f"({topr['tokens_per_s']:.1f} / {plain['tokens_per_s']:.1f}; target >= 0.9: {verdict})"
    )
    print(f"streamed answers equal to the plain greedy answers: {same}/{total}")
    print(f"load average after: {os.getloadavg()} (other processes on this machine skew figures)")
    result = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
        "max_tokens": MAX_TOKENS,
        "ceiling": ceil,
        "rows": rows,
        "plain": plain,
        "streaming_over_plain_tokens_per_s": tps_ratio,
        "identical": f"{same}/{total}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--ceiling-only"]:
        print(json.dumps(ceiling_ttft()))
    else:
        main()
