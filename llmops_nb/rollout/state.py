"""The rollout record and the history of configs applied to an endpoint: the :class:`Store`
interface and its local form, JSON files (the local backend; on Databricks
:mod:`.mlflow_store` keeps them where any machine finds them; :mod:`.stores` picks one).

``<root>/<endpoint>/rollout.json`` is the latest rollout (in progress, promoted or rolled back:
what ``llmops-nb rollout status`` prints); ``<root>/<endpoint>/configs.jsonl`` holds one line per
config the project applied (its hash, when, why, the whole REST body), so a rollback restores the
previous config without anybody's memory. ``<root>`` is ``$LLMOPS_HOME/rollouts`` (the project's
``.llmops`` folder by default). Files are written whole (a temporary file, then a rename): a
rollout killed while writing leaves the previous record.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from llmops_nb.util.paths import private_dir, private_file

IN_PROGRESS: Final = "in_progress"
PROMOTED: Final = "promoted"
ROLLED_BACK: Final = "rolled_back"
State = Literal["in_progress", "promoted", "rolled_back"]


@dataclass
class RolloutRecord:
    """One rollout of ``challenger`` beside ``champion`` on ``endpoint``.

    ``step``: index into ``steps`` of the step being watched (or last reached); ``points``: one
    dict per traffic read (time, step percent, per-entity requests, errors and share) for the plot.
    """

    id: str
    endpoint: str
    state: State
    steps: list[int]
    step: int
    champion: str | None
    challenger: str
    champion_config: dict[str, Any] | None
    challenger_config: dict[str, Any]
    challenger_hash: str
    reason: str = ""
    run_id: str | None = None
    started: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    entities: list[dict[str, Any]] = field(default_factory=list)
    points: list[dict[str, Any]] = field(default_factory=list)
    interval_s: float = 0.0  # the watch's read interval (how often a live rollout saves its record)

    @property
    def percent(self) -> int:
        """The challenger's traffic percent at the current step."""
        return self.steps[min(self.step, len(self.steps) - 1)]

    def status(self) -> dict[str, Any]:
        """What ``rollout status --json`` prints."""
        return {
            "state": self.state,
            "step": self.step + 1,
            "percent": self.percent,
            "steps": self.steps,
            "reason": self.reason,
            "endpoint": self.endpoint,
            "champion": self.champion,
            "challenger": self.challenger,
            "run_id": self.run_id,
            "entities": self.entities,
        }


@dataclass(frozen=True)
class AppliedConfig:
    """A config the project applied to an endpoint: its hash, when, why (``source``) and body."""

    hash: str
    at: float
    source: str
    body: dict[str, Any]
    rollout_id: str | None = None


class Store(Protocol):
    """Where rollout records and applied configs live (:class:`RolloutStore`, or
    :class:`~llmops_nb.rollout.mlflow_store.MlflowRolloutStore` on Databricks)."""

    def latest(self, endpoint: str, current: dict[str, Any] | None = None) -> RolloutRecord | None:
        """The endpoint's latest rollout (``current``: the endpoint as just read, to spare a GET)."""
        ...

    def save(self, record: RolloutRecord) -> None: ...
    def record_applied(self, endpoint: str, applied: AppliedConfig) -> None: ...
    def applied(self, endpoint: str) -> list[AppliedConfig]: ...
    def interrupted(self, record: RolloutRecord) -> bool: ...


class RolloutStore:
    """The rollout records and applied-config history of every endpoint under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _dir(self, endpoint: str) -> Path:
        private_dir(self.root)  # under $LLMOPS_HOME, private as the rest of it (mkdir's mode is the leaf's only)
        return private_dir(self.root / endpoint)

    def latest(self, endpoint: str, current: dict[str, Any] | None = None) -> RolloutRecord | None:
        """The endpoint's latest rollout, or None (``current`` is not needed here)."""
        path = self.root / endpoint / "rollout.json"
        if not path.exists():
            return None
        return RolloutRecord(**json.loads(path.read_text()))  # older records: interval_s defaults

    def save(self, record: RolloutRecord) -> None:
        record.updated = time.time()
        path = self._dir(record.endpoint) / "rollout.json"
        tmp = private_file(path.with_suffix(f".{os.getpid()}.tmp"))
        tmp.write_text(json.dumps(asdict(record), indent=1, default=str))
        os.replace(tmp, path)

    def interrupted(self, record: RolloutRecord) -> bool:
        """Whether no deploy of the endpoint holds its lock on this machine (``<root>/../locks``,
        :func:`llmops_nb.steps.deploy.deploy_lock`)."""
        from filelock import FileLock, Timeout

        path = self.root.parent / "locks" / f"deploy-{record.endpoint}.lock"
        if not path.exists():
            return True
        try:
            with FileLock(str(path)).acquire(timeout=0):
                return True
        except Timeout:
            return False

    def record_applied(self, endpoint: str, applied: AppliedConfig) -> None:
        """Append one applied config to the endpoint's history."""
        with private_file(self._dir(endpoint) / "configs.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(applied), sort_keys=True) + "\n")

    def applied(self, endpoint: str) -> list[AppliedConfig]:
        """Every config applied to the endpoint, oldest first."""
        path = self.root / endpoint / "configs.jsonl"
        if not path.exists():
            return []
        return [AppliedConfig(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def default_store() -> RolloutStore:
    """The store under ``$LLMOPS_HOME/rollouts`` (``<project>/.llmops/rollouts``)."""
    from llmops_nb.backends import local_home

    return RolloutStore(local_home() / "rollouts")
