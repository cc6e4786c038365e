"""The optional quality check of a canary step (``rollout.quality``): a pairwise LLM judge.

Live requests have no reference answers, so a step is not scored against one: at its end (before
it advances) the first ``quality.requests`` distinct chat requests of the step, read back from
the endpoint's inference table (:mod:`llmops_nb.evaluation.replay`: the local Delta table, or on
Databricks the Unity Catalog table through the SQL warehouse), are asked again of the champion and
of the challenger entity directly (``served-models/{entity}/invocations``, the evaluation's
``served_entity`` path through :func:`llmops_nb.chat.client.chat_iter`), and ``judge_endpoint``
says which answer is better, twice, the two answers in both orders (LLM judges favour a position:
Zheng et al., "Judging LLM-as-a-Judge", 2023, swap the positions and count a win only when both
orders agree). A comparison is a challenger win when both orders prefer its answer, a loss when
both prefer the champion's, a tie otherwise (and when the judge's answer is neither A, B nor a
tie, or its call fails). An entity that fails to answer where the other answers loses that
comparison without the judge; both failing is a tie.

The evaluation's own judge (:func:`llmops_nb.evaluation.scorers.judge_rows`) is MLflow's
Correctness scorer, which needs an expected answer; a pairwise verdict needs none, so the judge
is asked here with the project's one chat call (its 429s under the same AIMD limiter).

The decision: a one-sided sign test of losses against wins, ties dropped
(:func:`llmops_nb.evaluation.statistics.sign_test`); the step rolls back when the challenger
loses significantly at ``1 - confidence``, split over the steps checked (Bonferroni: one test per
step before 100%), and may advance otherwise.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops_nb.errors import ConfigError, LlmopsError

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

    from llmops_nb.config.rollout import QualitySample

JUDGE_SYSTEM = (
    "You compare two answers to the same request. Judge which answer serves the request better: "
    "correct, helpful, relevant, clear. Reply with one letter only: A if answer A is better, B if "
    "answer B is better, T if they are equally good."
)
JUDGE_MAX_TOKENS = 8
DEFAULT_MAX_TOKENS = 256
_ANSWER = re.compile(r"\bANSWER ([AB])\b")


@dataclass(frozen=True)
class QualityResult:
    """The comparisons of one step: challenger ``wins``, ``losses``, ``ties`` (of which
    ``judge_errors`` the judge did not decide), the one-sided p-value and the limit it met."""

    sampled: int
    wins: int
    losses: int
    ties: int
    judge_errors: int
    p_value: float
    alpha: float
    judge: str

    @property
    def rollback(self) -> bool:
        return self.p_value <= self.alpha

    @property
    def decided(self) -> int:
        return self.wins + self.losses

    def line(self) -> str:
        """The figures in one line (the rollback reason when the challenger lost)."""
        if self.rollback:
            return (
                f"quality: the challenger lost {self.losses} of {self.decided} decided comparisons to the champion, "
                f"p = {self.p_value:.3g} (limit {self.alpha:.3g}; won {self.wins}, tied {self.ties} of {self.sampled} "
                f"live requests, judge {self.judge}, both orders)"
            )
        if not self.sampled:
            return f"quality: no answered live request of the step in the inference table yet; nothing judged by {self.judge}"
        return (
            f"quality: the challenger won {self.wins}, lost {self.losses}, tied {self.ties} of {self.sampled} live "
            f"requests (judge {self.judge}, both orders; {self.judge_errors} undecided by the judge), "
            f"p = {self.p_value:.3g} for a loss (limit {self.alpha:.3g}): no significant loss"
        )

    def metrics(self, percent: int) -> dict[str, float]:
        return {
            "quality_step_percent": float(percent),
            "quality_sampled": float(self.sampled),
            "quality_wins": float(self.wins),
            "quality_losses": float(self.losses),
            "quality_ties": float(self.ties),
            "quality_judge_errors": float(self.judge_errors),
            "quality_p_value": self.p_value,
        }


def verdict_of(text: str) -> str | None:
    """``"A"``, ``"B"`` or ``"T"`` from the judge's answer: its first word when that is A, B, T or
    TIE, else ``answer A``/``answer B`` in it, else a tie when it says tie or equal; None otherwise."""
    words = re.sub(r"[^A-Z]+", " ", str(text or "").upper()).split()
    if not words:
        return None
    if words[0] in ("A", "B", "T", "TIE"):
        return words[0][0]
    found = _ANSWER.search(" ".join(words))
    if found is not None:
        return found.group(1)
    return "T" if {"TIE", "EQUAL", "EQUALLY"} & set(words) else None


def judge_prompt(messages: list[dict[str, str]], a: str, b: str) -> list[dict[str, str]]:
    """The judge's chat messages comparing answer ``a`` with answer ``b`` to ``messages``."""
    request = "\n".join(f"{m['role']}: {m['content']}" for m in messages)
    user = f"Request:\n{request}\n\nAnswer A:\n{a}\n\nAnswer B:\n{b}\n\nWhich answer is better? Reply A, B or T."
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def sample(records: list[dict[str, Any]], since: float, n: int) -> list[list[dict[str, str]]]:
    """The messages of the first ``n`` distinct answered chat requests at or after ``since`` (epoch
    seconds), oldest first: what Databricks' replay query returns (:func:`replay_sql`'s rule)."""
    from llmops_nb.chat.client import as_messages
    from llmops_nb.evaluation.replay import answer_text

    start = dt.datetime.fromtimestamp(since, dt.UTC)
    seen: set[str] = set()
    out: list[list[dict[str, str]]] = []
    for rec in sorted((r for r in records if r["time"] is not None and r["time"] >= start), key=lambda r: r["time"]):
        if not answer_text(rec["response"]):
            continue
        try:
            messages = as_messages(json.loads(rec["request"] or "")["messages"])
        except (ValueError, TypeError, KeyError, ConfigError):
            continue  # not a chat request of text messages
        key = json.dumps(messages, sort_keys=True, ensure_ascii=False)
        if key not in seen:
            seen.add(key)
            out.append(messages)
        if len(out) >= n:
            break
    return out


class QualityCheck:
    """The step's quality check on endpoint ``endpoint`` of workspace ``w`` (module docstring):
    its inference table read locally from ``home``, else through SQL warehouse ``warehouse_id``."""

    def __init__(
        self,
        w: WorkspaceClient,
        quality: QualitySample,
        *,
        confidence: float,
        checks: int,
        home: Path | None,
        warehouse_id: str = "",
        concurrency: int = 4,
    ) -> None:
        self.w, self.quality, self.home, self.warehouse_id = w, quality, home, warehouse_id
        self.alpha = (1.0 - confidence) / max(1, checks)
        self.concurrency = concurrency

    def preflight(self, endpoint: str) -> None:
        """Before a rollout changes anything: the judge is an existing endpoint of the workspace
        (one ConfigError line), so a missing judge is not found only after the first split."""
        from llmops_nb.endpoints.ops import get_endpoint

        judge = str(self.quality.judge_endpoint)
        if get_endpoint(self.w, judge) is None:
            raise ConfigError(
                "rollout.quality.judge_endpoint", judge, f"an existing chat endpoint of this workspace (for {endpoint}'s steps)"
            )

    def requests(self, endpoint: str, since: float) -> list[list[dict[str, str]]]:
        """The step's sampled requests (their messages) from the endpoint's inference table."""
        from llmops_nb.evaluation import replay

        kind, name = replay.table_of(self.w, endpoint)
        n = self.quality.requests
        if self.home is not None:
            records = replay.read_local(self.home, kind, name)
        else:
            start = dt.datetime.fromtimestamp(since, dt.UTC)
            records = replay.read_databricks(self.w, self.warehouse_id, kind, name, start, 0, max_rows=n)
        return sample(records, since, n)

    def _ask(self, endpoint: str, prompts: list[list[dict[str, str]]], **generation: Any) -> tuple[list[str | None], str]:
        """Each prompt's answer (None when it failed), in order, and the first failure's message."""
        from llmops_nb.chat.client import chat_iter

        answers: list[str | None] = [None] * len(prompts)
        failure = ""
        for i, result in chat_iter(self.w, endpoint, prompts, concurrency=self.concurrency, **generation):
            if isinstance(result, Exception):
                if not failure:
                    failure = str(result).splitlines()[0][:240] if str(result) else type(result).__name__
            else:
                answers[i] = result.content
        return answers, failure

    def check(
        self, endpoint: str, champion: str, challenger: str, since: float, *, until: float = 0.0, interval_s: float = 1.0
    ) -> QualityResult:
        """Sample, ask both entities, judge both orders, and test (see the module docstring). Rows
        land in the table after their request (locally within about a second, on Databricks within
        the hour): a short sample is read again every ``interval_s`` (at least 2 s: the local writer
        flushes about every second) while it grows, until it is full or ``until`` (epoch seconds)
        has passed, then judged as it is (traffic with few distinct requests gives a small sample)."""
        from llmops_nb.evaluation.statistics import sign_test

        judge = str(self.quality.judge_endpoint)
        pause = max(interval_s, 2.0)

        def read() -> list[list[dict[str, str]]]:
            try:
                return self.requests(endpoint, since)
            except ConfigError as exc:
                if "TABLE_OR_VIEW_NOT_FOUND" in str(exc) and time.time() + pause <= until:
                    return []  # the table is made at its first flush (the fake's writer): nothing landed yet
                raise LlmopsError(f"quality check: the inference table of {endpoint} is not readable: {exc}") from None

        asked = read()
        while len(asked) < self.quality.requests and time.time() + pause <= until:
            time.sleep(pause)
            before, asked = asked, read()
            if asked and len(asked) <= len(before):
                break  # nothing new landed: the step's traffic holds no more distinct requests
        if not asked:
            raise LlmopsError(f"quality check: no request of the step landed in the inference table of {endpoint} in time")
        generation = {"max_tokens": DEFAULT_MAX_TOKENS, "temperature": 0.0}
        ours = {e: self._ask(endpoint, asked, served_entity=e, **generation)[0] for e in (champion, challenger)}
        pairs = list(zip(asked, ours[champion], ours[challenger], strict=True))
        to_judge = [i for i, (_, old, new) in enumerate(pairs) if old is not None and new is not None]
        prompts = [judge_prompt(pairs[i][0], str(pairs[i][1]), str(pairs[i][2])) for i in to_judge]  # A champion
        prompts += [judge_prompt(pairs[i][0], str(pairs[i][2]), str(pairs[i][1])) for i in to_judge]  # A challenger
        replies, failure = self._ask(judge, prompts, max_tokens=JUDGE_MAX_TOKENS)
        if prompts and all(r is None for r in replies):  # a judge that never answers is no evidence of quality
            raise LlmopsError(f"the judge endpoint {judge} answered none of {len(prompts)} comparisons ({failure})")
        said = [verdict_of(r) if r is not None else None for r in replies]
        wins = losses = ties = undecided = 0
        for _, old, new in pairs:  # one entity failing where the other answered: its loss, no judge
            if old is None and new is not None:
                wins += 1
            elif new is None and old is not None:
                losses += 1
            elif new is None and old is None:
                ties += 1
        k = len(to_judge)
        for first, second in zip(said[:k], said[k:], strict=True):
            if first == "B" and second == "A":
                wins += 1
            elif first == "A" and second == "B":
                losses += 1
            else:
                ties += 1
                undecided += first is None or second is None
        p = sign_test(wins, losses, "less")
        return QualityResult(len(asked), wins, losses, ties, undecided, p, self.alpha, judge)
