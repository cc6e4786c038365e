"""The local workspace's token: ``$LLMOPS_HOME/token`` (mode 0600), required on every request.

Like a Jupyter server's token: generated (``secrets.token_urlsafe``) the first time the
workspace starts in a home and kept there, so clients that exported it keep working across
restarts; ``LLMOPS_WORKSPACE_TOKEN`` sets it instead. Delete the file to get a new one at the
next start. Cheap to import (the launcher reads it).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from llmops_nb.errors import ConfigError

TOKEN_FILE = "token"
#: The requester name of the plain token (the rate-limit ``user`` key; see guard.requester).
OWNER = "local-user@localhost"


def token_path(home: Path) -> Path:
    """Where the token of the workspace in ``home`` is kept."""
    return Path(home) / TOKEN_FILE


def read_token(home: Path) -> str | None:
    """The token kept in ``home``, or None."""
    try:
        return token_path(home).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def check_token(token: str) -> str:
    """A token given by the user (``LLMOPS_WORKSPACE_TOKEN``): printable, no ``:`` and no space."""
    if not token or not token.isprintable() or any(c in token for c in ": \t") or len(token) > 512:
        raise ConfigError("LLMOPS_WORKSPACE_TOKEN", "<hidden>", "1 to 512 printable characters without ':' or spaces")
    return token


def ensure_token(home: Path, given: str | None = None) -> str:
    """The workspace's token: ``given``, else the one kept in ``home``, else a new random one.

    It is written to ``home/token`` with mode 0600 whatever the umask.
    """
    token = check_token(given) if given else (read_token(home) or secrets.token_urlsafe(32))
    path = token_path(home)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(token + "\n")
    return token
