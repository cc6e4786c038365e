"""A load generator for tests and benchmarks: chat requests to an endpoint from a few threads,
over real HTTP, until stopped; every answer kept (status, the entity that answered, the error
message), and every request that got no answer at all (a connection error, a timeout)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    """One answered request: when it ended, its status, ``served-model-name`` and error message."""

    at: float
    status: int
    entity: str
    message: str


class LoadGenerator:
    """``threads`` threads posting a chat body to ``<host>/serving-endpoints/<endpoint>/invocations``
    (a context manager: started on enter, stopped and joined on exit); ``pause`` seconds between a
    thread's requests; ``prompt(n)``: the n-th request's user message (``"hi"`` when not given)."""

    def __init__(
        self,
        host: str,
        token: str,
        endpoint: str,
        *,
        threads: int = 3,
        pause: float = 0.005,
        prompt: Callable[[int], str] | None = None,
    ) -> None:
        self.url = f"{host.rstrip('/')}/serving-endpoints/{endpoint}/invocations"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.pause = pause
        self.prompt = prompt  # the n-th request's user message (None: always "hi")
        self.sent = itertools.count()
        self.answers: list[Answer] = []
        self.dropped: list[str] = []  # no answer at all: what a rollout must never cause
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True, name=f"load-{i}") for i in range(threads)]

    def _run(self) -> None:
        import requests

        with requests.Session() as s:
            while not self.stop.is_set():
                text = self.prompt(next(self.sent)) if self.prompt else "hi"
                body = {"messages": [{"role": "user", "content": text}], "max_tokens": 8}
                try:
                    r = s.post(self.url, json=body, headers=self.headers, timeout=30)
                    message = "" if r.ok else str(r.json().get("message", ""))
                except requests.RequestException as e:
                    self.dropped.append(f"{type(e).__name__}: {e}")
                    continue
                self.answers.append(Answer(time.time(), r.status_code, r.headers.get("served-model-name", ""), message))
                time.sleep(self.pause)

    def __enter__(self) -> LoadGenerator:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)
