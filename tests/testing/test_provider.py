"""The fake provider answers like OpenAI and Anthropic and records the credential header."""

from __future__ import annotations

import requests


def test_openai_route(fake_provider):
    r = requests.post(
        f"{fake_provider.base_url}/chat/completions",
        timeout=5,
        headers={"Authorization": "Bearer k1"},
        json={"model": "m", "messages": [{"role": "user", "content": "a b"}]},
    )
    body = r.json()
    assert body["choices"][0]["message"]["content"] == "[provider:m] a b"
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    assert fake_provider.authorizations() == ["Bearer k1"]


def test_anthropic_route_and_failures(fake_provider):
    r = requests.post(
        f"{fake_provider.base_url}/messages",
        timeout=5,
        headers={"x-api-key": "k2"},
        json={"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.json()["content"][0]["text"] == "[provider:c] hi"
    assert fake_provider.authorizations() == ["k2"]
    fake_provider.fail_status = 500
    assert requests.post(f"{fake_provider.base_url}/messages", json={}, timeout=5).status_code == 500
    fake_provider.fail_status = None
    assert requests.post(f"{fake_provider.base_url}/nope", json={}, timeout=5).status_code == 404
