"""Secret references (`{{secrets/<scope>/<key>}}`): parse, resolve, spot and redact secrets.

A config names a secret; the value is resolved at the last moment (environment variable
`LLMOPS_SECRET_<SCOPE>_<KEY>`, then `<home>/secrets.yml`) and never written anywhere.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from llmops_nb.errors import ConfigError, WorkspaceError

SECRET_REF = re.compile(r"^\{\{secrets/([A-Za-z0-9_.-]{1,128})/([A-Za-z0-9_.-]{1,128})\}\}$")
MASK = "***"

# Well-known credential shapes: OpenAI/Anthropic, Databricks PAT, GitHub, Slack, AWS,
# Google API key, Hugging Face, JWT, PEM private keys.
_TOKEN_PATTERNS = re.compile(
    r"sk-[A-Za-z0-9_-]{16,}|dapi[0-9a-fA-F]{20,}(?:-\d+)?|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|github_pat_[A-Za-z0-9_]{20,}|xox[abpr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}"
    r"|AIza[0-9A-Za-z_-]{35}|hf_[A-Za-z0-9]{20,}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
)
_SECRET_WORDS = {
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "credential",
    "credentials",
    "apikey",
    "pat",
    "bearer",
    "privatekey",
}
_KEY_QUALIFIERS = {"api", "access", "private", "secret", "auth", "client", "signing", "account"}


def parse_secret_ref(value: object) -> tuple[str, str] | None:
    """`{{secrets/scope/key}}` -> (scope, key); anything else -> None."""
    if not isinstance(value, str):
        return None
    match = SECRET_REF.match(value)
    return (match.group(1), match.group(2)) if match else None


def is_secret_ref(value: object) -> bool:
    """True when `value` is exactly a `{{secrets/<scope>/<key>}}` reference."""
    return parse_secret_ref(value) is not None


def secret_env_var(scope: str, key: str) -> str:
    """The environment variable that holds a secret locally: LLMOPS_SECRET_<SCOPE>_<KEY>."""
    return "LLMOPS_SECRET_" + re.sub(r"[^A-Z0-9]", "_", f"{scope}_{key}".upper())


def resolve_secret(ref: str, home: Path | None = None) -> str:
    """The value of a secret reference: the environment first, then `<home>/secrets.yml`.

    `secrets.yml` is a mapping `{scope: {key: value}}`. Raises ConfigError for a malformed
    reference and WorkspaceError when the secret is not found; no message holds a value.
    """
    parsed = parse_secret_ref(ref)
    if parsed is None:
        shown = MASK if looks_like_secret("", ref) else ref
        raise ConfigError("secret reference", shown, "must look like '{{secrets/<scope>/<key>}}'")
    scope, key = parsed
    env_name = secret_env_var(scope, key)
    if env_name in os.environ:
        return os.environ[env_name]
    where = f"set {env_name}"
    if home is not None:
        path = Path(home) / "secrets.yml"
        where += f" or add {scope}: {{{key}: ...}} to {path}"
        value = _read_secrets_file(path).get(scope, {}).get(key)
        if value is not None:
            return str(value)
    raise WorkspaceError(f"secret {ref} not found: {where}")


def _read_secrets_file(path: Path) -> dict[str, dict[str, object]]:
    """The `{scope: {key: value}}` mapping of a secrets file ({} when absent)."""
    if not path.exists():
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        # The YAML error may quote the file's content: keep only its class name.
        raise WorkspaceError(f"{path}: cannot read the secrets file ({type(exc).__name__})") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise WorkspaceError(f"{path}: must be a mapping {{scope: {{key: value}}}}")
    return data


def _name_words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def looks_like_secret(name: str, value: object) -> bool:
    """Heuristic: does this (name, value) pair look like a plaintext secret?

    True for values shaped like known credentials (`sk-...`, `dapi...`, ...), and for
    names saying token/secret/password/api_key... with a non-empty value that is not a
    secret reference. `max_tokens: 64` or `rate_limit_key: endpoint` are not secrets.
    """
    if value is None or isinstance(value, bool) or is_secret_ref(value):
        return False
    text = str(value)
    if not text.strip():
        return False
    if _TOKEN_PATTERNS.search(text):
        return True
    words = _name_words(name)
    if _SECRET_WORDS.intersection(words):
        return True
    return bool("key" in words and _KEY_QUALIFIERS.intersection(words))


def redact(text: str, values: Iterable[str] = ()) -> str:
    """`text` with every given secret value, and every credential-shaped token, as ***."""
    for value in sorted({v for v in values if v}, key=len, reverse=True):
        text = text.replace(value, MASK)
    return _TOKEN_PATTERNS.sub(MASK, text)
