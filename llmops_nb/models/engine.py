"""Continuous batching over llama.cpp's batch API: many requests, one context, one thread.

Logged next to chat_model.py (``code_paths``, with cpu_quota.py), so it depends only on
llama-cpp-python, numpy and the standard library; threads default to the container's CPU
quota. One engine thread owns the llama.cpp context (this build uses OpenMP: a thread team
per calling thread would spin on the cores). Each step is one
``llama_decode``: the prompt of a newly admitted sequence (alone), or else one token for
every running sequence; a request that arrives while others run joins after its prefill.
Prompts are not mixed into decode steps: llama.cpp then splits the prompt differently
(one token with the others, the rest after), which measurably changes greedy answers. Every
sequence has its own KV stream (``kv_unified=False``, ``n_ctx`` = per-sequence context x
``n_seq_max``), so its attention sees only its own cells laid out as in a one-sequence
context, and greedy answers are bit-identical to unbatched decoding (a unified cache
interleaves the sequences' cells, which changes float rounding in attention and, measured,
the answers). llama.cpp decodes sequences of separate streams in one ubatch only when their
ids are contiguous, so a sequence that finishes leaves no hole: the highest one moves into
it (``llama_memory_seq_cp`` across streams).
Flash attention is on by default, as llama.cpp's own default on CPU (``auto``); measured
here, it decodes faster than without, batched or not, and answers stay identical to
unbatched decoding with the same setting (``Llama(flash_attn=True)``).
Greedy when temperature is 0; otherwise top-k/top-p/min-p/temperature sampling with a
per-request RNG, so an answer does not depend on what else is in the batch.
A request may carry a GBNF grammar (JSON mode, a JSON schema, a forced tool call): llama.cpp's
grammar sampler (``llama_sampler_init_grammar``) constrains its tokens, as llama.cpp's own
sampling does it: the token drawn from the raw logits is kept when the grammar accepts it, else
the grammar masks the logits and the token is drawn again (common/sampling.cpp
``common_sampler_sample``); greedy answers are the constrained argmax either way. A request may
ask for the log-probabilities of its tokens (and of the ``top_logprobs`` likeliest), computed
from the raw logits as llama-cpp-python does (log-softmax).
"""

from __future__ import annotations

import codecs
import ctypes
import queue
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

try:
    from llmops_nb.models.cpu_quota import default_threads
except ImportError:  # served without llmops_nb: the copy logged with code_paths
    from cpu_quota import default_threads  # type: ignore[no-redef]


@dataclass
class GenRequest:
    """One generation: prompt tokens and how to sample and stop."""

    prompt: list[int]
    max_tokens: int
    temperature: float = 0.0
    stop: list[str] = field(default_factory=list)
    seed: int = 42
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    grammar: str | None = None  # GBNF (root rule ``root``): the answer must match it
    logprobs: int | None = None  # None: none; k: each token's log-probability and the top k


@dataclass
class TokenLogprob:
    """One generated token: its bytes, log-probability, and the likeliest alternatives."""

    token: int
    piece: bytes
    logprob: float
    top: list[tuple[int, bytes, float]] = field(default_factory=list)


@dataclass
class GenResult:
    """Generated tokens, text (cut before a stop string) and why generation ended."""

    tokens: list[int]
    text: str
    finish_reason: str  # "stop" (EOS or stop string) or "length"
    prompt_tokens: int
    logprobs: list[TokenLogprob] | None = None  # of the tokens of ``text`` (cut as it is)


@dataclass
class _Seq:
    req: GenRequest
    future: Future
    slot: int = -1
    fed: int = 0  # prompt tokens already in the KV cache
    out: list[int] = field(default_factory=list)
    text: bytes = b""
    rng: Any = None
    multibyte: int = 0
    sink: queue.SimpleQueue | None = None  # text deltas of a streamed request
    emitted: int = 0  # bytes of ``text`` already sent to ``sink``
    decoder: Any = None  # incremental UTF-8 decoder of what was sent
    cancelled: bool = False  # set by the consumer: leave the batch at the next step
    grammar: Any = None  # llama_sampler_p of the request's grammar
    logprobs: list[TokenLogprob] = field(default_factory=list)  # read live by a stream's consumer


_END = object()  # a stream's sink: the future is done


class TokenStream:
    """A streamed generation: iterate for text deltas as the engine decodes them; ``result``
    (the :class:`GenResult`) when done. ``cancel()`` takes the sequence out of the batch at the
    next step (its slot is free for the next request). The deltas join to ``result.text``.
    """

    def __init__(self, seq: _Seq) -> None:
        self._seq = seq
        self.result: GenResult | None = None

    def __iter__(self) -> Iterator[str]:
        sink = self._seq.sink
        assert sink is not None  # made by submit_stream
        while True:
            item = sink.get()
            if item is _END:
                self.result = self._seq.future.result()
                return
            yield item

    def cancel(self) -> None:
        """Stop generating (no effect once done)."""
        self._seq.cancelled = True

    @property
    def logprobs(self) -> list[TokenLogprob]:
        """The log-probabilities of the tokens decoded so far (a request with ``logprobs``)."""
        return self._seq.logprobs


def sample(logits: np.ndarray, req: GenRequest, rng: np.random.Generator | None) -> int:
    """Greedy at temperature 0; else top-k, top-p, min-p, temperature, draw (llama.cpp order)."""
    if req.temperature <= 0.0 or rng is None:
        return int(np.argmax(logits))
    k = min(max(req.top_k, 1), logits.shape[0])
    top = np.argpartition(logits, -k)[-k:]
    top = top[np.argsort(-logits[top], kind="stable")]
    raw = logits[top].astype(np.float64)
    p = np.exp(raw - raw[0])
    p /= p.sum()
    keep = int(np.searchsorted(np.cumsum(p), req.top_p) + 1) if req.top_p < 1.0 else k
    keep = max(1, min(keep, k, int(np.count_nonzero(p >= req.min_p * p[0]))))
    scaled = raw[:keep] / req.temperature
    q = np.exp(scaled - scaled.max())
    return int(top[rng.choice(keep, p=q / q.sum())])


class BatchEngine:
    """Serves ``GenRequest``s concurrently from one llama.cpp context (continuous batching)."""

    def __init__(
        self,
        model_path: str,
        *,
        n_ctx: int = 2048,
        n_seq_max: int = 8,
        n_batch: int = 512,
        n_threads: int | None = None,
        flash_attn: bool = True,
    ) -> None:
        from llama_cpp import Llama  # tokenizer and chat template only (no weights)

        self.model_path = model_path
        self.n_ctx = int(n_ctx)  # per sequence
        self.n_seq_max = int(n_seq_max)
        self.n_batch = int(n_batch)
        self.n_threads = int(n_threads or default_threads())  # the container's CPU quota
        self.flash_attn = bool(flash_attn)
        self.vocab = Llama(model_path=model_path, vocab_only=True, verbose=False)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._ready: Future = Future()
        self.steps = 0  # decode calls, for tests and benches
        self.max_running = 0
        self.moves = 0  # sequences moved to keep the running ids contiguous
        self.active = 0  # sequences admitted or waiting, as of the last engine step
        self.cancelled = 0  # streamed sequences stopped by their consumer
        self._thread = threading.Thread(target=self._run, name="llama-engine", daemon=True)
        self._thread.start()
        self._ready.result()

    # ---- callers' side -------------------------------------------------------------
    def chat_prompt(self, messages: list[dict[str, Any]]) -> tuple[list[int], list[str]]:
        """Prompt tokens and template stop strings, exactly as Llama.create_chat_completion."""
        from llama_cpp import llama_chat_format

        llm = self.vocab
        if not hasattr(self, "_formatter"):
            eos, bos = llm.token_eos(), llm.token_bos()
            text = llm._model.token_get_text  # noqa: SLF001
            self._formatter = llama_chat_format.Jinja2ChatFormatter(
                template=llm.metadata["tokenizer.chat_template"],
                eos_token=text(eos) if eos != -1 else "",
                bos_token=text(bos) if bos != -1 else "",
                stop_token_ids=[eos],
            )
        # llama_cpp types the messages as its TypedDicts; ours are the checked OpenAI chat dicts
        result = self._formatter(messages=cast(Any, messages))
        tokens = llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
        stops = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        return tokens, stops

    def submit(self, req: GenRequest) -> Future:
        """Queue ``req``; ValueError at once if the prompt does not fit the context."""
        n = len(req.prompt)
        if n == 0:
            raise ValueError("empty prompt")
        if n >= self.n_ctx:
            raise ValueError(f"Requested tokens ({n}) exceed context window of {self.n_ctx}")
        if req.max_tokens <= 0 or req.max_tokens + n >= self.n_ctx:
            req.max_tokens = self.n_ctx - n  # as llama-cpp-python truncates max_tokens
        seq = self._make_seq(req)
        self._queue.put(seq)
        return seq.future

    def _make_seq(self, req: GenRequest) -> _Seq:
        if not self._thread.is_alive():
            raise RuntimeError("the llama.cpp engine has stopped")
        seq = _Seq(req, Future())
        if req.grammar is not None:
            import llama_cpp as lc

            seq.grammar = lc.llama_sampler_init_grammar(self._vocab, req.grammar.encode("utf-8"), b"root")
            if not seq.grammar:
                raise ValueError("the grammar does not parse (llama.cpp's GBNF parser refused it)")
        return seq

    def submit_stream(self, req: GenRequest) -> TokenStream:
        """Queue ``req`` as a stream: its text deltas leave as the tokens are decoded, in the
        same batch as every other request. ValueError at once if the prompt does not fit."""
        seq = self._make_seq(req)
        sink: queue.SimpleQueue = queue.SimpleQueue()
        seq.sink = sink
        seq.decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        seq.future.add_done_callback(lambda _f: sink.put(_END))
        self._queue.put(seq)
        return TokenStream(seq)

    def generate(self, req: GenRequest, timeout: float | None = None) -> GenResult:
        """Submit and wait."""
        return self.submit(req).result(timeout)

    def close(self) -> None:
        """Stop the engine thread (pending requests fail) and free the context."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    # ---- engine thread ----------------------------------------------------------------
    def _load(self) -> None:
        import llama_cpp as lc

        lc.llama_backend_init()
        mparams = lc.llama_model_default_params()
        self._model = lc.llama_model_load_from_file(self.model_path.encode(), mparams)
        if not self._model:
            raise RuntimeError(f"llama.cpp could not load {self.model_path}")
        cp = lc.llama_context_default_params()
        cp.n_ctx = self.n_ctx * self.n_seq_max
        cp.n_batch = cp.n_ubatch = self.n_batch
        cp.n_seq_max = self.n_seq_max
        cp.kv_unified = False
        cp.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_ENABLED if self.flash_attn else lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
        cp.n_threads = cp.n_threads_batch = self.n_threads
        cp.no_perf = True
        self._ctx = lc.llama_init_from_model(self._model, cp)
        if not self._ctx:
            raise RuntimeError("llama.cpp could not create the context")
        self._mem = lc.llama_get_memory(self._ctx)
        vocab = self._vocab = lc.llama_model_get_vocab(self._model)
        self._n_vocab = lc.llama_vocab_n_tokens(vocab)
        self._eog = np.array([bool(lc.llama_vocab_is_eog(vocab, t)) for t in range(self._n_vocab)])
        self._batch = lc.llama_batch_init(self.n_batch, 0, 1)
        self._candidates: Any = np.zeros(
            self._n_vocab, dtype=np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)
        )
        self._one: Any = np.zeros(1, dtype=self._candidates.dtype)

    def _free(self) -> None:
        import llama_cpp as lc

        lc.llama_batch_free(self._batch)
        lc.llama_free(self._ctx)
        lc.llama_model_free(self._model)

    def _run(self) -> None:
        try:
            self._load()
        except BaseException as e:  # noqa: BLE001 - reported to the constructor
            self._ready.set_exception(e)
            return
        self._ready.set_result(None)
        pending: deque[_Seq] = deque()
        running: list[_Seq] = []
        free = list(range(self.n_seq_max))  # ascending: new sequences take the lowest id
        stopping = False
        try:
            while not stopping:
                block = not running and not pending
                while True:
                    try:
                        item = self._queue.get(block=block)
                    except queue.Empty:
                        break
                    block = False
                    if item is None:
                        stopping = True
                        break
                    if item.future.set_running_or_notify_cancel():
                        pending.append(item)
                if stopping:
                    break
                if any(s.cancelled for s in running) or any(s.cancelled for s in pending):
                    self._drop_cancelled(pending, running, free)
                self.active = len(running) + len(pending)
                while pending and free:
                    seq = pending.popleft()
                    seq.slot = free.pop(0)
                    if seq.req.temperature > 0:
                        seq.rng = np.random.default_rng(seq.req.seed)
                    running.append(seq)
                if running:
                    finished = self._step(running)
                    for seq in finished:
                        running.remove(seq)
                        self._release(seq)
                        free.append(seq.slot)
                    if finished:
                        free.sort()
                        self._compact(running, free)
        finally:
            for seq in list(pending) + running:
                if not seq.future.done():
                    seq.future.set_exception(RuntimeError("the llama.cpp engine stopped"))
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None and item.future.set_running_or_notify_cancel():
                    item.future.set_exception(RuntimeError("the llama.cpp engine stopped"))
            self._free()

    def _drop_cancelled(self, pending: deque, running: list, free: list[int]) -> None:
        """Finish the sequences whose consumer went away; their slots are free at once."""
        for seq in [s for s in pending if s.cancelled]:
            pending.remove(seq)
            seq.future.set_result(self._result(seq, seq.text, "cancelled"))
            self.cancelled += 1
        gone = [s for s in running if s.cancelled]
        for seq in gone:
            running.remove(seq)
            self._release(seq)
            free.append(seq.slot)
            seq.future.set_result(self._result(seq, seq.text, "cancelled"))
            self.cancelled += 1
        if gone:
            free.sort()
            self._compact(running, free)

    def _release(self, seq: _Seq) -> None:
        import llama_cpp as lc

        lc.llama_memory_seq_rm(self._mem, seq.slot, -1, -1)

    def _compact(self, running: list[_Seq], free: list[int]) -> None:
        """Move the highest running sequences into lower free ids until the ids are 0..n-1."""
        import llama_cpp as lc

        for seq in sorted(running, key=lambda s: -s.slot):
            if not free or free[0] > seq.slot:
                break
            dst = free.pop(0)
            lc.llama_memory_seq_cp(self._mem, seq.slot, dst, -1, -1)
            lc.llama_memory_seq_rm(self._mem, seq.slot, -1, -1)
            free.append(seq.slot)
            free.sort()
            seq.slot = dst
            self.moves += 1

    def _step(self, running: list[_Seq]) -> list[_Seq]:
        """One llama_decode over all running sequences; returns those that finished."""
        import llama_cpp as lc

        b = self._batch
        rows: list[tuple[_Seq, int]] = []  # (sequence, batch row whose logits it samples)
        n = 0

        def add(token: int, pos: int, slot: int, logits: bool) -> None:
            nonlocal n
            b.token[n], b.pos[n], b.n_seq_id[n], b.logits[n] = token, pos, 1, logits
            b.seq_id[n][0] = slot
            n += 1

        prefilling = [s for s in running if s.fed < len(s.req.prompt)]
        if prefilling:  # a prompt alone in its decode call, in chunks of n_batch (see below)
            seq = prefilling[0]
            take = min(len(seq.req.prompt) - seq.fed, self.n_batch)
            for i in range(seq.fed, seq.fed + take):
                add(seq.req.prompt[i], i, seq.slot, i == len(seq.req.prompt) - 1)
            seq.fed += take
            if seq.fed == len(seq.req.prompt):
                rows.append((seq, n - 1))
        else:
            for seq in running:
                add(seq.out[-1], seq.fed + len(seq.out) - 1, seq.slot, True)
                rows.append((seq, n - 1))
        b.n_tokens = n
        rc = lc.llama_decode(self._ctx, b)
        self.steps += 1
        self.max_running = max(self.max_running, len(running))
        if rc != 0:
            error = RuntimeError(f"llama_decode failed with code {rc}")
            for seq in running:
                seq.future.set_exception(error)
            return list(running)
        done = []
        for seq, row in rows:
            try:
                ptr = lc.llama_get_logits_ith(self._ctx, row)
                logits = np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))
                token = self._constrained(seq, logits) if seq.grammar is not None else sample(logits, seq.req, seq.rng)
                if seq.req.logprobs is not None and not self._eog[token]:
                    seq.logprobs.append(self._logprob(logits, token, seq.req.logprobs))
                result = self._advance(seq, token)
            except Exception as e:  # noqa: BLE001 - fail this request only
                seq.future.set_exception(e)
                done.append(seq)
                continue
            if result is not None:
                seq.future.set_result(result)
                done.append(seq)
            elif seq.sink is not None and not seq.multibyte:
                self._emit(seq, len(seq.text) - _held(seq.text, seq.req.stop))
        return done

    def _grammar_apply(self, seq: _Seq, data: np.ndarray) -> None:
        """Let the grammar set the logits of the tokens it refuses in ``data`` to -inf."""
        import llama_cpp as lc

        arr = lc.llama_token_data_array(
            data=data.ctypes.data_as(lc.llama_token_data_p), size=len(data), selected=-1, sorted=False
        )
        lc.llama_sampler_apply(seq.grammar, ctypes.byref(arr))

    def _constrained(self, seq: _Seq, logits: np.ndarray) -> int:
        """The token of ``seq``'s sampler that its grammar accepts (see the module docstring);
        the grammar then accepts it."""
        import llama_cpp as lc

        token = sample(logits, seq.req, seq.rng)
        one = self._one
        one["id"][0], one["logit"][0], one["p"][0] = token, logits[token], 0.0
        self._grammar_apply(seq, one)
        if not np.isfinite(one["logit"][0]):
            data = self._candidates
            data["id"] = np.arange(self._n_vocab, dtype=np.intc)
            data["logit"] = logits
            data["p"] = 0.0
            self._grammar_apply(seq, data)
            masked = data["logit"].astype(np.float32)
            if not np.isfinite(masked).any():
                raise RuntimeError("the grammar allows no further token")
            token = sample(masked, seq.req, seq.rng)
        lc.llama_sampler_accept(seq.grammar, token)
        return token

    def _logprob(self, logits: np.ndarray, token: int, k: int) -> TokenLogprob:
        """``token``'s log-probability under the raw logits, and the ``k`` likeliest tokens'."""
        raw = logits.astype(np.float64)
        peak = raw.max()
        lse = peak + np.log(np.exp(raw - peak).sum())
        piece = self.vocab._model.detokenize([token])  # noqa: SLF001
        top: list[tuple[int, bytes, float]] = []
        if k > 0:
            ids = np.argpartition(raw, -k)[-k:]
            ids = ids[np.argsort(-raw[ids], kind="stable")]
            top = [(int(t), self.vocab._model.detokenize([int(t)]), float(raw[t] - lse)) for t in ids]  # noqa: SLF001
        return TokenLogprob(int(token), piece, float(raw[token] - lse), top)

    @staticmethod
    def _emit(seq: _Seq, upto: int, final: bool = False) -> None:
        """Send ``seq.text[emitted:upto]`` (decoded) to the stream's consumer."""
        assert seq.sink is not None  # called for streamed sequences only
        if upto > seq.emitted or final:
            piece = seq.decoder.decode(seq.text[seq.emitted : upto], final)
            seq.emitted = max(seq.emitted, upto)
            if piece:
                seq.sink.put(piece)

    def _advance(self, seq: _Seq, token: int) -> GenResult | None:
        """Append ``token``; the result if the sequence is finished (as llama-cpp-python)."""
        req = seq.req
        if self._eog[token]:
            return self._result(seq, seq.text, "stop")
        seq.out.append(token)
        seq.text += self.vocab._model.detokenize([token])  # noqa: SLF001
        for k, char in enumerate(seq.text[-3:]):  # llama-cpp-python's incomplete-UTF-8 rule
            for num, pattern in ((2, 192), (3, 224), (4, 240)):
                if num > 3 - k and pattern & char == pattern:
                    seq.multibyte = num - (3 - k)
        if seq.multibyte > 0:
            seq.multibyte -= 1
            return None
        for stop in req.stop:
            at = seq.text.find(stop.encode("utf-8"))
            if at >= 0:
                return self._result(seq, seq.text[:at], "stop")
        if len(seq.out) >= req.max_tokens:
            return self._result(seq, seq.text, "length")
        return None

    def _result(self, seq: _Seq, text: bytes, reason: str) -> GenResult:
        if seq.sink is not None:  # the rest of the answer (``text`` is cut before a stop)
            self._emit(seq, len(text), final=True)
        if seq.grammar is not None:
            import llama_cpp as lc

            lc.llama_sampler_free(seq.grammar)
            seq.grammar = None
        logprobs = None
        if seq.req.logprobs is not None:  # the tokens of the text as cut
            logprobs, end = [], 0
            for entry in seq.logprobs:
                if end >= len(text) and entry.piece:
                    break
                logprobs.append(entry)
                end += len(entry.piece)
        return GenResult(list(seq.out), text.decode("utf-8", errors="ignore"), reason, len(seq.req.prompt), logprobs)


def _held(text: bytes, stops: list[str]) -> int:
    """How many bytes at the end of ``text`` could begin a stop string (not streamed yet)."""
    held = 0
    for stop in stops:
        b = stop.encode("utf-8")
        for k in range(min(len(b) - 1, len(text)), held, -1):
            if text.endswith(b[:k]):
                held = k
                break
    return held
