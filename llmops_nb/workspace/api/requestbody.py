"""The JSON object body of a request, or a 400 INVALID_PARAMETER_VALUE line."""

from __future__ import annotations

import json

from fastapi import Request

from llmops_nb.workspace.apierror import invalid


async def json_object(request: Request) -> dict:
    """The request's body as a JSON object (``{}`` when empty)."""
    try:
        body = json.loads(await request.body() or b"{}")
    except UnicodeDecodeError as e:  # a ValueError too: json.loads decodes the bytes first
        raise invalid(f"request body: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except ValueError:
        raise invalid("request body: malformed JSON") from None
    if not isinstance(body, dict):
        raise invalid("request body: must be a JSON object")
    return body
