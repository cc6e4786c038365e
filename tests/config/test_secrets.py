"""Tests for llmops_nb.config.secrets: references, resolution, the secret heuristic, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops_nb.config.secrets import (
    is_secret_ref,
    looks_like_secret,
    parse_secret_ref,
    redact,
    resolve_secret,
    secret_env_var,
)
from llmops_nb.errors import ConfigError, WorkspaceError

OPENAI_KEY = "sk-proj-" + "abcdefghijklmnopqrstuvwxyz0123456789"  # split: not a real key
DATABRICKS_PAT = "dapi" + "0123456789abcdef0123456789abcdef"  # split: not a real token


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("{{secrets/llmops/openai_api_key}}", ("llmops", "openai_api_key")),
        ("{{secrets/my-scope.v2/KEY-1}}", ("my-scope.v2", "KEY-1")),
        ("{{secrets/llmops}}", None),
        ("secrets/llmops/key", None),
        ("{{ secrets/llmops/key }}", None),
        ("{{secrets/a/b/c}}", None),
        ("x{{secrets/a/b}}", None),
        (None, None),
        (42, None),
    ],
)
def test_parse_secret_ref(text: object, parsed: tuple[str, str] | None) -> None:
    assert parse_secret_ref(text) == parsed
    assert is_secret_ref(text) is (parsed is not None)


def test_env_var_name() -> None:
    assert secret_env_var("my-scope", "openai.key") == "LLMOPS_SECRET_MY_SCOPE_OPENAI_KEY"


def test_resolve_from_environment_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "secrets.yml").write_text("llmops:\n  openai_api_key: from-file\n")
    ref = "{{secrets/llmops/openai_api_key}}"
    assert resolve_secret(ref, tmp_path) == "from-file"
    monkeypatch.setenv("LLMOPS_SECRET_LLMOPS_OPENAI_API_KEY", "from-env")
    assert resolve_secret(ref, tmp_path) == "from-env"
    assert resolve_secret(ref) == "from-env"


def test_missing_secret_names_the_ref_and_where_to_put_it(tmp_path: Path) -> None:
    (tmp_path / "secrets.yml").write_text(f"llmops:\n  other: {OPENAI_KEY}\n")
    with pytest.raises(WorkspaceError) as info:
        resolve_secret("{{secrets/llmops/nokey}}", tmp_path)
    message = str(info.value)
    assert "{{secrets/llmops/nokey}}" in message and "LLMOPS_SECRET_LLMOPS_NOKEY" in message
    assert "secrets.yml" in message and OPENAI_KEY not in message
    with pytest.raises(WorkspaceError, match="LLMOPS_SECRET_A_B"):
        resolve_secret("{{secrets/a/b}}", None)


def test_malformed_ref_never_echoes_a_plaintext_value() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_secret(OPENAI_KEY)
    assert OPENAI_KEY not in str(info.value) and "***" in str(info.value)
    with pytest.raises(ConfigError, match="secrets/a"):
        resolve_secret("{{secrets/a}}")


@pytest.mark.parametrize("content", ["llmops: [unclosed\n  key: " + OPENAI_KEY, "- a\n- b\n"])
def test_bad_secrets_file_is_reported_without_its_content(tmp_path: Path, content: str) -> None:
    (tmp_path / "secrets.yml").write_text(content)
    with pytest.raises(WorkspaceError) as info:
        resolve_secret("{{secrets/llmops/key}}", tmp_path)
    assert "secrets.yml" in str(info.value) and OPENAI_KEY not in str(info.value)


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [
        ("openai_api_key", "abc123", True),
        ("api_token", "x", True),
        ("db_password", "hunter2", True),
        ("clientSecret", "s3cr3t", True),
        ("anything", OPENAI_KEY, True),
        ("host", DATABRICKS_PAT, True),
        ("note", "token is ghp_abcdefghijklmnopqrstuvwxyz0123", True),
        ("openai_api_key", "{{secrets/llmops/openai_api_key}}", False),
        ("api_token", "", False),
        ("api_token", None, False),
        ("max_tokens", 64, False),
        ("rate_limit_key", "endpoint", False),
        ("endpoint_name", "smollm2-chat", False),
        ("model_uri", "models:/smollm2@champion", False),
    ],
)
def test_looks_like_secret(name: str, value: object, secret: bool) -> None:
    assert looks_like_secret(name, value) is secret


def test_redact_given_values_and_known_token_shapes() -> None:
    text = f"key={OPENAI_KEY} pat={DATABRICKS_PAT} pw=hunter2 hunter2"
    out = redact(text, ["hunter2", ""])
    assert OPENAI_KEY not in out and DATABRICKS_PAT not in out and "hunter2" not in out
    assert out == "key=*** pat=*** pw=*** ***"
    assert redact("nothing here") == "nothing here"
