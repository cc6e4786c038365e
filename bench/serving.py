"""Serving under concurrency: tokens/s and latency at 1, 4 and 8 clients, in one run.

Targets measured (one after another, nothing else of ours running meanwhile):
  ceiling     llama.cpp's batch API driven directly (greedy, 64 new tokens per sequence,
              no HTTP, no early stop) at batch 1, 4, 8, in a subprocess
  ours        the registered chat model (continuous batching) behind the local workspace
              (``--ours-via serve`` serves it with plain ``mlflow models serve`` instead)
  baseline-wN a straightforward pyfunc around Llama.create_chat_completion with
              llama-cpp-python's defaults, ``mlflow models serve --workers N`` (N = 1, 2)
Each client sends greedy requests (max_tokens 64) back to back. Our endpoint is loaded
``--rounds`` (5) times per client count, each time between two ceiling runs at that batch,
each ceiling run warmed (a discarded first run in the same process). Every side is divided
by the same statistic, the median of those ceiling runs: ours is the median tokens/s of its
rounds over it (median over median), with the spread (min, max) of its rounds.
Prints a table and the ratios to the ceiling, checks that our answers under load equal unbatched greedy answers
(the baseline at 1 client), writes bench/results/serving.json and serving.png.

    .venv/bin/python bench/serving.py [--clients 1 4 8] [--requests-per-client 3] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MAX_TOKENS = int(os.environ.get("BENCH_MAX_TOKENS", "64"))  # smaller only for smoke runs
# Prompts that make SmolLM2 write at least 64 tokens, so requests end by length as in the ceiling.
PROMPTS = [
    "Write a long story about a dragon who learns to cook.",
    "Explain in detail how a car engine works.",
    "Describe a walk through a busy city market, in many sentences.",
    "Write a long letter to a friend about your summer holidays.",
    "Explain step by step how to bake bread at home.",
    "Describe the history of the printing press in detail.",
    "Write a long poem about the sea and the wind.",
    "Explain how the internet works to a ten year old, at length.",
]


def messages(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]


# ---- ceiling (own process) -----------------------------------------------------------------
def ceiling(batches: list[int]) -> dict[int, float]:
    """Aggregate generated tokens/s (prefill included) of llama.cpp's batch API, per batch."""
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
        vocab.tokenize(fmt(messages=messages(i)).prompt.encode(), add_bos=False, special=True) for i in range(max(batches))
    ]
    lc.llama_backend_init()
    model = lc.llama_model_load_from_file(path.encode(), lc.llama_model_default_params())
    n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(model))
    out: dict[int, float] = {}
    for bsz in batches:
        cp = lc.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max, cp.kv_unified = 4096, 1024, 1024, 8, True
        cp.n_threads = cp.n_threads_batch = os.cpu_count() or 1
        ctx = lc.llama_init_from_model(model, cp)
        batch = lc.llama_batch_init(1024, 0, 8)

        def decode(items: list[tuple[int, int, int, bool]]) -> None:
            batch.n_tokens = len(items)
            for i, (t, p, s, w) in enumerate(items):
                batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = t, p, 1, w
                batch.seq_id[i][0] = s
            assert lc.llama_decode(ctx, batch) == 0

        def argmax(row: int) -> int:
            return int(np.argmax(np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, row), shape=(n_vocab,))))

        seqs = prompts[:bsz]
        started = time.perf_counter()
        decode([(t, p, s, p == len(toks) - 1) for s, toks in enumerate(seqs) for p, t in enumerate(toks)])
        rows = list(np.cumsum([len(t) for t in seqs]) - 1)
        last = [argmax(int(r)) for r in rows]
        pos = [len(t) for t in seqs]
        for _ in range(MAX_TOKENS - 1):
            decode([(last[s], pos[s], s, True) for s in range(bsz)])
            last = [argmax(s) for s in range(bsz)]
            pos = [p + 1 for p in pos]
        out[bsz] = bsz * MAX_TOKENS / (time.perf_counter() - started)
        lc.llama_batch_free(batch)
        lc.llama_free(ctx)
    lc.llama_model_free(model)
    return out


def reference_answers() -> dict[str, str]:
    """Unbatched greedy answers: Llama.create_chat_completion, our llama settings, in-process."""
    from llama_cpp import Llama

    from llmops_nb.models.chat_model import DEFAULT_CONFIG, llama_kwargs
    from llmops_nb.models.gguf import bundled_gguf_path

    llm = Llama(model_path=str(bundled_gguf_path()), **llama_kwargs(DEFAULT_CONFIG))
    return {
        str(i): llm.create_chat_completion(messages=messages(i), max_tokens=MAX_TOKENS, temperature=0.0)["choices"][0]["message"][
            "content"
        ]
        for i in range(len(PROMPTS))
    }


def run_ceiling(batches: list[int], reference: bool = False) -> tuple[dict[int, float], dict]:
    """The ceiling (and the reference answers), measured in a fresh process."""
    flag = ["--ceiling-and-reference"] if reference else ["--ceiling-only"]
    proc = subprocess.run([sys.executable, __file__, *flag, *map(str, batches)], capture_output=True, text=True, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {int(k): v for k, v in out["ceiling"].items()}, out.get("reference", {})


# ---- load generator -------------------------------------------------------------------------
def load(url: str, clients: int, per_client: int, token: str | None) -> dict:
    """``clients`` threads sending ``per_client`` greedy requests each, back to back."""
    latencies: list[float] = []
    tokens = [0]
    answers: dict[int, list[str]] = {}
    errors: list[str] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        session = requests.Session()
        if token:
            session.headers["Authorization"] = f"Bearer {token}"
        for k in range(per_client):
            i = (c + k * clients) % len(PROMPTS)
            body = {"messages": messages(i), "max_tokens": MAX_TOKENS, "temperature": 0.0}
            started = time.perf_counter()
            try:
                r = session.post(url, json=body, timeout=600)
                r.raise_for_status()
                out = r.json()
            except Exception as e:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(str(e)[:200])
                continue
            with lock:
                latencies.append(time.perf_counter() - started)
                tokens[0] += out["usage"]["completion_tokens"]
                answers.setdefault(i, []).append(out["choices"][0]["message"]["content"])

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=20, method="inclusive") if len(latencies) > 1 else [0] * 19
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "completion_tokens": tokens[0],
        "seconds": wall,
        "tokens_per_s": tokens[0] / wall,
        "p50_s": statistics.median(latencies) if latencies else None,
        "p95_s": q[18],
        "mean_completion_tokens": tokens[0] / max(len(latencies), 1),
        "load_avg": os.getloadavg(),
        "answers": {str(k): v for k, v in sorted(answers.items())},
    }


def measure(name: str, url: str, args: argparse.Namespace, token: str | None = None, paired: bool = False) -> list[dict]:
    """Each client count in turn; ``paired``: the ceiling at that batch just before and after
    (the machine is shared: a ratio to a ceiling measured minutes apart would drift)."""
    warm = {"messages": messages(0), "max_tokens": 8, "temperature": 0.0}
    requests.post(url, json=warm, timeout=300, headers={"Authorization": f"Bearer {token}"} if token else {}).raise_for_status()
    rows = []
    for n in args.clients:
        per_client = max(args.requests_per_client, -(-len(PROMPTS) // n))  # every prompt asked
        if paired:
            row = paired_rounds(url, n, per_client, token, args.rounds)
        else:
            row = load(url, n, per_client, token)
        row["target"] = name
        rows.append(row)
        print(
            f"  {name:<12} {n} clients: {row['tokens_per_s']:6.1f} tok/s  p50 {row['p50_s']:.2f} s"
            f"  p95 {row['p95_s']:.2f} s  ({row['requests']} requests, "
            f"{row['mean_completion_tokens']:.1f} tokens each, load {row['load_avg'][0]:.2f})"
            + (f"; paired ceiling {row['paired_ceiling']:.1f} (median of {len(row['round_ratios'])} rounds)" if paired else ""),
            flush=True,
        )
    return rows


def paired_rounds(url: str, n: int, per_client: int, token: str | None, rounds: int) -> dict:
    """``rounds`` loads at ``n`` clients, each between two (warmed) ceiling runs at batch ``n``.

    The ceiling statistic is the median of all those ceiling runs; the row's ratio is the
    median tokens/s of the rounds over it (median over median), with the spread of the
    rounds (min, max) over the same statistic. The row keeps the median round's latencies."""
    ceilings = [run_ceiling([n])[0][n]]
    runs = []
    for _ in range(rounds):
        runs.append(load(url, n, per_client, token))
        ceilings.append(run_ceiling([n])[0][n])
    stat = statistics.median(ceilings)
    tps = [r["tokens_per_s"] for r in runs]
    mid = sorted(range(rounds), key=tps.__getitem__)[rounds // 2]
    row = dict(runs[mid])
    answers: dict[str, list[str]] = {}
    for r in runs:
        for k, got in r["answers"].items():
            answers.setdefault(k, []).extend(got)
    row.update(
        answers=answers,
        errors=[e for r in runs for e in r["errors"]],
        tokens_per_s=statistics.median(tps),
        paired_ceiling=stat,
        paired_ceilings=ceilings,
        round_ratios=[t / stat for t in tps],
        round_tokens_per_s=tps,
    )
    return row


# ---- servers ------------------------------------------------------------------------------------
@contextlib.contextmanager
def served(model_uri: str, tracking_uri: str, tmp: Path, workers: int = 1) -> Iterator[str]:
    from llmops_nb.models.serving import scoring_server

    log = tmp / f"serve-{abs(hash((model_uri, workers)))}.log"
    with scoring_server(model_uri, tracking_uri=tracking_uri, log_path=log, workers=workers, timeout=300) as base:
        yield f"{base}/invocations"


@contextlib.contextmanager
def via_workspace(version: str, tracking_uri: str, tmp: Path) -> Iterator[tuple[str, str]]:
    """Start a local workspace, deploy the registered version, yield (invocations URL, token)."""
    from llmops_nb.backends import Backend
    from llmops_nb.config.endpoint import EndpointConfig
    from llmops_nb.endpoints.apply import deploy
    from llmops_nb.workspace.launcher import ensure_running, stop

    home = tmp / "workspace"
    info = ensure_running(home, tracking_uri)
    try:
        token = info.token or "local"  # the workspace's token (kept in its home)
        backend = Backend("local", info.host, token, tracking_uri, tracking_uri, home)
        cfg = EndpointConfig.model_validate(
            {
                "name": "bench-chat",
                "served_entities": [
                    {
                        "entity_name": "bench-smollm2",
                        "entity_version": version,
                        "workload_size": "Small",
                        "scale_to_zero_enabled": False,
                    }
                ],
            }
        )
        deploy(backend.workspace_client(), cfg, timeout=600, progress=False)
        yield f"{info.host}/serving-endpoints/bench-chat/invocations", token
    finally:
        stop(home)


def save_baseline(tmp: Path) -> str:
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types.llm import CHAT_MODEL_INPUT_SCHEMA, CHAT_MODEL_OUTPUT_SCHEMA

    from llmops_nb.models.gguf import bundled_gguf_path

    path = tmp / "baseline"
    mlflow.pyfunc.save_model(
        str(path),
        python_model=str(HERE / "baseline_chat_model.py"),
        artifacts={"gguf": str(bundled_gguf_path())},
        signature=ModelSignature(CHAT_MODEL_INPUT_SCHEMA, CHAT_MODEL_OUTPUT_SCHEMA),
    )
    return str(path)


# ---- report -------------------------------------------------------------------------------------
def plot(rows: list[dict], ceil: dict[int, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(list(ceil), list(ceil.values()), "k--o", label="ceiling (batch API, no HTTP), first")
    paired = [(r["clients"], r["paired_ceiling"]) for r in rows if r.get("paired_ceiling")]
    if paired:
        ax.plot(*zip(*paired), "kx", markersize=9, linestyle="none", label="ceiling around ours (the ratio's baseline)")
    for target in dict.fromkeys(r["target"] for r in rows):
        pts = [(r["clients"], r["tokens_per_s"]) for r in rows if r["target"] == target]
        ax.plot(*zip(*pts), "-o", label=target)
    ax.set_xlabel("concurrent clients (ceiling: batch size)")
    ax.set_ylabel("completion tokens/s (aggregate)")
    ax.set_title(f"SmolLM2-135M Q4_1, {os.cpu_count()} cores, greedy, {MAX_TOKENS} tokens")
    ax.set_xticks(sorted(ceil))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--requests-per-client", type=int, default=3)
    parser.add_argument("--ours-via", choices=["workspace", "serve"], default="workspace")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="loads of our endpoint per client count, each between two warmed "
        "ceiling runs; median tok/s over the median ceiling is reported",
    )
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "serving.json")
    args = parser.parse_args()

    from llmops_nb.models.registry import register_model

    print(f"load average before: {os.getloadavg()}", flush=True)
    ceil, reference = run_ceiling(sorted(set(args.clients)), reference=True)
    for b, v in ceil.items():
        print(f"  {'ceiling':<12} batch {b}: {v:6.1f} tok/s", flush=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp_name:
        tmp = Path(tmp_name)
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        model = register_model("bench-smollm2", tracking_uri=uri)
        if args.ours_via == "workspace":
            with via_workspace(model.version, uri, tmp) as (url, token):
                rows += measure("ours", url, args, token, paired=True)
        else:
            with served(model.uri, uri, tmp) as url:
                rows += measure("ours", url, args, paired=True)
        if not args.skip_baseline:
            baseline = save_baseline(tmp)
            for workers in (1, 2):
                with served(baseline, uri, tmp, workers=workers) as url:
                    rows += measure(f"baseline-w{workers}", url, args)

    ours = {r["clients"]: r for r in rows if r["target"] == "ours"}
    print(f"\n{'target':<12} {'clients':>7} {'tok/s':>7} {'p50 s':>6} {'p95 s':>6} {'/ceiling':>8}")
    # One ceiling statistic per batch for every side: the median of the warmed ceiling runs
    # around our rounds (the first ceiling only where ours did not run at that count).
    stat = {n: ours[n]["paired_ceiling"] if n in ours else ceil.get(n, float("nan")) for n in set(args.clients)}
    for r in rows:
        ratio = r["tokens_per_s"] / stat[r["clients"]]
        r["ratio_to_ceiling"] = ratio
        print(
            f"{r['target']:<12} {r['clients']:>7} {r['tokens_per_s']:>7.1f} {r['p50_s']:>6.2f} {r['p95_s']:>6.2f} {ratio:>8.3f}"
        )
    targets = {1: 0.9, 8: 0.9}
    for n, goal in targets.items():
        if n in ours and n in ceil:
            paired = ours[n]["tokens_per_s"] / ours[n]["paired_ceiling"]
            ours[n]["ratio_to_paired_ceiling"] = paired
            spread = ours[n]["round_ratios"]
            verdict = "met" if paired >= goal else "MISSED"
            print(
                f"ours at {n} client(s): {paired:.3f} of the batch-{n} ceiling (median tok/s of "
                f"{len(spread)} rounds over the median of {len(ours[n]['paired_ceilings'])} warmed ceiling "
                f"runs; spread {min(spread):.3f}-{max(spread):.3f}; target >= {goal}: {verdict})"
            )
    identical: dict[str, dict[int, str]] = {}
    for r in rows:
        pairs = [(a, reference[k]) for k, got in r["answers"].items() for a in got]
        same = sum(a == b for a, b in pairs)
        identical.setdefault(r["target"], {})[r["clients"]] = f"{same}/{len(pairs)}"
    print(
        "answers equal to unbatched greedy decoding (Llama.create_chat_completion in-process, "
        f"n_threads={os.cpu_count()}), requests per target and clients: {identical}"
    )
    print(f"load average after: {os.getloadavg()} (other processes on this machine skew figures)")
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "cpu_model": _cpu_model(),
            "python": platform.python_version(),
        },
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "max_tokens": MAX_TOKENS,
        "ours_via": args.ours_via,
        "ceiling": ceil,
        "rows": rows,
        "identical": identical,
        "reference_answers": reference,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    plot(rows, ceil, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    if sys.argv[1:2] in (["--ceiling-only"], ["--ceiling-and-reference"]):
        batches = [int(b) for b in sys.argv[2:]]
        ceiling(batches)  # warm-up run, discarded (page cache, CPU clocks, OpenMP team)
        found = {"ceiling": ceiling(batches)}
        if sys.argv[1] == "--ceiling-and-reference":
            found["reference"] = reference_answers()
        print(json.dumps(found))
    else:
        main()
