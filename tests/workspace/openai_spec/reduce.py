"""Reduce OpenAI's OpenAPI spec to the chat-completions operation an endpoint serves.

Source: https://github.com/openai/openai-openapi (openapi.yaml, MIT licence, see LICENSE here).
Run: ``python tests/workspace/openai_spec/reduce.py openapi.yaml COMMIT`` writes chat_completions.json
beside this file: ``POST /serving-endpoints/chat/completions`` with OpenAI's request and response
schemas and every schema they reference, reduced to what a Databricks-style endpoint serves:

- ``model`` is the served endpoint's name (an enum of the one the fuzz test creates);
- non-streamed answers only (``stream``, ``stream_options`` dropped: the SSE stream is tested in
  test_streaming.py and test_chat_contract.py), so the 200 answer is ``application/json``;
- the 400 answer is Databricks' error body ``{error_code, message}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ENDPOINT = "fuzz"


def _refs(node, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            out.add(ref.rsplit("/", 1)[1])
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)


def reduce(spec: dict, commit: str) -> dict:
    op = spec["paths"]["/chat/completions"]["post"]
    request = op["requestBody"]["content"]["application/json"]["schema"]
    answer = op["responses"]["200"]["content"]["application/json"]["schema"]
    schemas = spec["components"]["schemas"]
    keep: set[str] = set()
    todo: set[str] = set()
    _refs([request, answer], todo)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        _refs(schemas[name], todo)
    reduced = {k: json.loads(json.dumps(schemas[k])) for k in sorted(keep)}
    _drop_stream(reduced)
    return {
        "openapi": spec["openapi"],
        "info": {
            "title": "OpenAI chat completions, reduced to what a serving endpoint serves",
            "version": spec["info"]["version"],
            "description": f"From github.com/openai/openai-openapi openapi.yaml at {commit} (MIT licence).",
        },
        "paths": {
            "/serving-endpoints/chat/completions": {
                "post": {
                    "operationId": "createChatCompletion",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
                    "responses": {
                        "200": {"description": "OK", "content": {"application/json": {"schema": answer}}},
                        "400": {
                            "description": "Refused",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["error_code", "message"],
                                        "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}},
                                    }
                                }
                            },
                        },
                    },
                }
            }
        },
        "components": {
            "schemas": reduced,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _drop_stream(schemas: dict) -> None:
    """No ``stream``/``stream_options`` in the request; ``model`` is the endpoint's name."""

    def visit(node) -> None:
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict):
                if "messages" in props or "stream_options" in props:
                    props.pop("stream", None)
                    props.pop("stream_options", None)
                if "model" in props and "messages" in props:
                    props["model"] = {"type": "string", "enum": [ENDPOINT]}
            for v in node.values():
                visit(v)
        elif isinstance(node, list):
            for v in node:
                visit(v)

    visit(schemas)
    # the request's model is in a base schema it composes (allOf): pin it there too
    for name in ("CreateChatCompletionRequest", "CreateModelResponseProperties", "ModelResponseProperties"):
        props = (schemas.get(name) or {}).get("properties") or {}
        if "model" in props:
            props["model"] = {"type": "string", "enum": [ENDPOINT]}


if __name__ == "__main__":
    full = yaml.safe_load(Path(sys.argv[1]).read_text(encoding="utf-8"))
    out = Path(__file__).with_name("chat_completions.json")
    out.write_text(json.dumps(reduce(full, sys.argv[2]), indent=1) + "\n", encoding="utf-8")
    print(out, out.stat().st_size)
