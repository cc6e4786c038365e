"""What a deploy reports while it runs: one :class:`DeployEvent` per step, for a progress callback."""

from __future__ import annotations

from dataclasses import dataclass

WRITTEN, POLLED, MESSAGE, DONE = "written", "polled", "message", "done"


@dataclass(frozen=True)
class DeployEvent:
    """One step of a deploy: ``phase`` is ``written`` (the writes are made; ``action`` says
    which: created, recreated, updated or unchanged), ``polled`` (a state read while waiting),
    ``message`` (a ``warning: ...`` / ``note: ...`` line in ``message``) or ``done`` (READY)."""

    phase: str
    name: str
    ready: str = ""
    config_update: str = ""
    action: str = ""
    message: str = ""
