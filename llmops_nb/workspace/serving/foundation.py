"""The pay-per-token foundation model endpoint every local workspace lists.

``databricks-smollm2-135m-instruct`` answers with the bundled SmolLM2: a scoring server of a
registered version started lazily at the first request (or the fake responder with --fake).
"""

from __future__ import annotations

import os

FOUNDATION_ENDPOINT = "databricks-smollm2-135m-instruct"
FOUNDATION_MODEL = {
    "name": FOUNDATION_ENDPOINT,
    "display_name": "SmolLM2 135M Instruct",
    "description": "SmolLM2-135M-Instruct (GGUF, llama.cpp) served locally.",
    "docs": "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
}
CANDIDATE_MODELS = ("smollm2-135m-instruct", "smollm2", "SmolLM2-135M-Instruct")


def foundation_entity() -> dict:
    return {"name": FOUNDATION_ENDPOINT, "foundation_model": dict(FOUNDATION_MODEL)}


def find_registered_model(tracking_uri: str | None) -> str | None:
    """``models:/NAME/VERSION`` of the newest registered SmolLM2 version, or None.

    The name is ``$LLMOPS_FOUNDATION_MODEL`` if set, else the first of CANDIDATE_MODELS
    that has a version in the registry.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    names = [os.environ["LLMOPS_FOUNDATION_MODEL"]] if os.environ.get("LLMOPS_FOUNDATION_MODEL") else list(CANDIDATE_MODELS)
    for name in names:
        try:
            versions = client.search_model_versions(f"name='{name}'")
        except Exception:
            continue
        if versions:
            best = max(versions, key=lambda v: int(v.version))
            return f"models:/{name}/{best.version}"
    return None
