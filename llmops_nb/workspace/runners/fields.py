"""Which fields of an OpenAI chat-completions request a served entity honours; the rest are refused.

What an entity accepts it does (issue 29): a field it cannot honour, set to anything but its no-op
value, is a 400 INVALID_PARAMETER_VALUE naming the field and the served entity, before the model
runs. What Databricks documents per endpoint kind:

- Custom models (a registered MLflow model): the request goes to the model's ``predict``, checked
  against its signature; MLflow's scoring server drops inputs the signature does not declare
  ("Found extra inputs in the model input that are not defined in the model signature ... These
  inputs will be ignored", mlflow/models/utils.py ``_enforce_named_col_schema``). Databricks
  serves custom models with that same scoring server
  (docs.databricks.com/aws/en/machine-learning/model-serving/custom-models), so a field outside
  the signature would be ignored: it is refused here. A model logged by llmops-nb names what it
  honours in its MLmodel metadata (``llmops_nb.chat_fields``); MLflow's transformers ``llm/v1/chat``
  flavor maps only max_tokens and stop, passing the rest to ``generate``
  (mlflow/transformers/llm_inference_utils.py ``preprocess_llm_inference_input``). A model logged
  as an MLflow ChatModel (``model.interface: chat_model``) has MLflow's fixed chat signature: the
  fields its ChatParams lacks (seed, logprobs, response_format, tool_choice, ...) would be dropped
  on Databricks too, so at the top level they are refused with the way that works: in
  ``custom_inputs`` (its MLmodel metadata ``llmops_nb.custom_inputs`` names them).
- Foundation models: structured outputs (``response_format``) and function calling (``tools``) are
  features of the Foundation Model APIs (docs.databricks.com/aws/machine-learning/model-serving/
  structured-outputs, .../function-calling); the local foundation endpoint serves the bundled GGUF
  model, which honours them.
- External models: the request is forwarded to the provider (docs.databricks.com/aws/en/generative-ai/
  external-models): an OpenAI-compatible provider takes the OpenAI body as it is; Anthropic's
  messages API takes what :func:`llmops_nb.workspace.runners.external.to_anthropic` translates.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llmops_nb.protocol.streaming import WHOLE_ON_DATABRICKS, streamed_on_databricks
from llmops_nb.workspace.apierror import invalid

#: the properties of OpenAI's CreateChatCompletionRequest (openai/openai-openapi, chat/completions)
OPENAI_FIELDS = frozenset(
    {
        "messages", "model", "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
        "max_completion_tokens", "max_tokens", "metadata", "modalities", "n", "parallel_tool_calls", "prediction",
        "presence_penalty", "prompt_cache_key", "reasoning_effort", "response_format", "safety_identifier", "seed",
        "service_tier", "stop", "store", "stream", "stream_options", "temperature", "tool_choice", "tools",
        "top_logprobs", "top_p", "user", "verbosity", "web_search_options",
    }
)  # fmt: skip

#: values that ask for nothing: such a field is accepted by every entity
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "logprobs": (False,),
    "n": (1,),
    "frequency_penalty": (0,),
    "presence_penalty": (0,),
    "tools": ([],),
    "functions": ([],),
    "logit_bias": ({},),
    "metadata": ({},),
    "store": (False,),
    "parallel_tool_calls": (True, False),  # one call at most is made either way
    "modalities": (["text"],),
    "service_tier": ("auto", "default"),
    "stream": (False,),
}

#: what the workspace itself does for every entity: the stream and its usage chunk, the requester
#: fields it records with the request in the inference table, and Databricks' client_request_id
#: (its own inference-table column: docs.databricks.com/aws/en/ai-gateway/inference-tables)
WORKSPACE = frozenset({"messages", "stream", "stream_options", "user", "safety_identifier", "metadata", "client_request_id"})
#: sampling fields every generating model takes
BASIC = WORKSPACE | {"max_tokens", "temperature", "stop"}
#: the local fake responder: a deterministic echo, cut at max_tokens and at a stop string, n times
FAKE = BASIC | {"n", "seed", "top_p", "max_completion_tokens"}
#: MLflow's transformers llm/v1/chat flavor: max_tokens and stop mapped, top_p/top_k to generate
TRANSFORMERS = BASIC | {"top_p", "top_k"}
#: Anthropic's messages API through to_anthropic
ANTHROPIC = BASIC | {"top_p"}
#: the MLmodel metadata key of the fields a model logged by llmops-nb honours
METADATA_KEY = "llmops_nb.chat_fields"
#: the MLmodel metadata keys of a ChatModel logged by llmops-nb: its interface, and the fields it
#: takes in custom_inputs (models/pyfunc.py INTERFACE_KEY, CUSTOM_INPUTS_KEY)
INTERFACE_KEY = "llmops_nb.interface"
CUSTOM_INPUTS_KEY = "llmops_nb.custom_inputs"
CHAT_MODEL_KIND = "llmops-nb ChatModel"


def is_set(field: str, value: Any) -> bool:
    """True when ``value`` asks something of the model (not None, not the field's no-op value)."""
    if value is None:
        return False
    return not any((value == v and type(value) is type(v)) or (v == 0 and value == 0) for v in NEUTRAL.get(field, ()))


def check_fields(body: dict, honoured: Iterable[str] | None, entity: str, kind: str, carried: Iterable[str] = ()) -> None:
    """400 for the first field of ``body`` that ``honoured`` lacks (None: every field goes through);
    a field the entity takes in ``custom_inputs`` (``carried``) is refused with that way out."""
    if honoured is None:
        return
    allowed = frozenset(honoured)
    for key in sorted(body):
        if key not in allowed and is_set(key, body[key]) and key in carried:
            raise invalid(
                f"{key}: {_short(body[key])} is not allowed at the top level for served entity {entity} ({kind}): "
                f"MLflow's ChatParams has no {key}, so its chat signature would drop it (on Databricks too); "
                f'send it in custom_inputs: {{"custom_inputs": {{"{key}": ...}}}}'
            )
        if key not in allowed and is_set(key, body[key]):
            raise invalid(
                f"{key}: {_short(body[key])} is not allowed for served entity {entity} ({kind}), which does not "
                f"honour it; it takes {', '.join(sorted(allowed - WORKSPACE - {'messages'})) or 'no generation settings'}"
            )


def check_roles(body: dict, roles: Iterable[str], entity: str, kind: str) -> None:
    """400 for a message whose role the entity's model does not read (it would be dropped)."""
    allowed = tuple(roles)
    for i, m in enumerate(body.get("messages") or []):
        if isinstance(m, dict) and m.get("role") not in allowed:
            raise invalid(
                f"messages[{i}].role: {m.get('role')!r} is not allowed for served entity {entity} ({kind}); one of {allowed}"
            )


def model_fields(model_dir: Path | None) -> tuple[frozenset[str], str]:
    """The fields the MLflow model in ``model_dir`` honours, and what kind of model it is."""
    if model_dir is None or not (model_dir / "MLmodel").is_file():
        return BASIC, "registered model"
    import yaml

    meta = yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8")) or {}
    declared = (meta.get("metadata") or {}).get(METADATA_KEY)
    flavors = meta.get("flavors") or {}
    if isinstance(declared, list):
        chat_model = (meta.get("metadata") or {}).get(INTERFACE_KEY) == "chat_model"
        return WORKSPACE | frozenset(map(str, declared)), CHAT_MODEL_KIND if chat_model else "llmops-nb chat model"
    if "transformers" in flavors:
        return TRANSFORMERS, "transformers model"
    pyfunc = flavors.get("python_function") or {}
    if "gguf" in (pyfunc.get("artifacts") or {}):
        return BASIC, "GGUF chat model logged by an older llmops-nb"
    names = _signature_names(meta.get("signature") or {})
    if names is None:
        return frozenset(OPENAI_FIELDS), "custom model without a signature"
    return WORKSPACE | names, "custom model (its signature)"


def custom_input_fields(model_dir: Path | None) -> frozenset[str]:
    """The chat fields the MLflow model in ``model_dir`` takes in ``custom_inputs`` (a ChatModel
    logged by llmops-nb); empty for every other model."""
    if model_dir is None or not (model_dir / "MLmodel").is_file():
        return frozenset()
    import yaml

    meta = yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8")) or {}
    carried = (meta.get("metadata") or {}).get(CUSTOM_INPUTS_KEY)
    return frozenset(map(str, carried)) if isinstance(carried, list) else frozenset()


def streaming_note(model_dir: Path | None) -> str | None:
    """What the local workspace does that Databricks does not for the MLflow model in ``model_dir``:
    it streams ``stream: true`` through the model's ``predict_stream`` (scoring_app.py), which
    Databricks does only for the interfaces of :data:`STREAMED_TASKS`; None when both stream
    (or the model has no MLmodel to tell)."""
    if model_dir is None or not (model_dir / "MLmodel").is_file():
        return None
    import yaml

    meta = yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8")) or {}
    task = (meta.get("metadata") or {}).get("task")
    if streamed_on_databricks(task):
        return None
    pyfunc = (meta.get("flavors") or {}).get("python_function") or {}
    here = "streamed here through its predict_stream" if pyfunc.get("streamable") else "streamed here as one delta"
    return f"stream: true: {here}; {WHOLE_ON_DATABRICKS} (MLmodel metadata.task={task!r})"


def _signature_names(signature: dict) -> frozenset[str] | None:
    """The input and params names of an MLmodel signature (None: no named inputs)."""
    import json

    names: set[str] = set()
    for key in ("inputs", "params"):
        raw = signature.get(key)
        try:
            specs = json.loads(raw) if isinstance(raw, str) else raw or []
        except ValueError:
            specs = []
        names.update(str(s["name"]) for s in specs if isinstance(s, dict) and s.get("name"))
    return frozenset(names) if names else None


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
