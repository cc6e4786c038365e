"""Chat request validation (the HTTP path is covered against the fake workspace)."""

from __future__ import annotations

import pytest

from llmops_nb.chat.client import as_messages, check_generation
from llmops_nb.errors import ConfigError


def test_a_prompt_becomes_one_user_message_with_an_optional_system() -> None:
    assert as_messages("hi") == [{"role": "user", "content": "hi"}]
    assert as_messages("hi", system="be brief")[0] == {"role": "system", "content": "be brief"}


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: as_messages(""), "prompt"),
        (lambda: as_messages([{"role": "robot", "content": "x"}]), "messages[0].role"),
        (lambda: as_messages([{"role": "user", "content": 3}]), "messages[0].content"),
        (lambda: as_messages([]), "messages"),
        (lambda: check_generation(0, 0.5), "max_tokens"),
        (lambda: check_generation(16, 2.5), "temperature"),
        (lambda: check_generation(True, 0.5), "max_tokens"),
    ],
)
def test_bad_chat_input_names_the_field(call, field: str) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError) as err:
        call()
    assert str(err.value).startswith(f"{field}:") and "\n" not in str(err.value)
