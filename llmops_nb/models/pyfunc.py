"""Arguments to log or save the GGUF chat model as an MLflow pyfunc (models from code)."""

from __future__ import annotations

import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops_nb.errors import ConfigError
from llmops_nb.models.environment import WHEELS_FOLDER, serving_environment
from llmops_nb.models.gguf import bundled_gguf_path

CHAT_MODEL_FILE = Path(__file__).with_name("chat_model.py")
#: the ChatModel interface of the same model (``model.interface: chat_model``), chat_model.py beside it
CHAT_INTERFACE_FILE = Path(__file__).with_name("chat_model_interface.py")
#: MLmodel metadata keys: the interface logged, and the fields a ChatModel takes in custom_inputs
INTERFACE_KEY = "llmops_nb.interface"
CUSTOM_INPUTS_KEY = "llmops_nb.custom_inputs"
ENGINE_FILE = Path(__file__).with_name("engine.py")  # logged beside it: imported as `engine`
CPU_QUOTA_FILE = Path(__file__).with_name("cpu_quota.py")  # imported by engine as `cpu_quota`
INPUT_EXAMPLE: dict[str, Any] = {
    "messages": [{"role": "user", "content": "Say hello."}],
    "max_tokens": 8,
    "temperature": 0.0,
}


def model_config(generation: dict[str, Any] | None = None) -> dict[str, Any]:
    """The recorded model_config: DEFAULT_CONFIG updated with ``generation`` (keys checked)."""
    from llmops_nb.models.chat_model import DEFAULT_CONFIG

    generation = dict(generation or {})
    for key in generation:
        if key not in DEFAULT_CONFIG:
            raise ConfigError("generation", key, f"allowed keys: {', '.join(DEFAULT_CONFIG)}")
    return {**DEFAULT_CONFIG, **generation}


def pip_requirements(*, require_wheel: bool = False) -> list[str]:
    """Pinned requirements of the serving environment (no slow requirement inference).

    llama-cpp-python is our portable wheel, logged in the model (see models/environment.py).
    """
    return serving_environment(require_wheel=require_wheel).requirements


@dataclass(frozen=True)
class GgufPyfunc:
    """The GGUF chat model's ``mlflow.pyfunc`` arguments and the llama.cpp wheel logged beside it.

    The wheel goes to ``wheels/<file>`` of the model directory, where ``add_libraries_to_model``
    puts private wheels (models/environment.py); :meth:`save_model` is the flavor
    ``mlflow.models.Model.log`` calls (the way mlflow/models/wheeled_model.py logs its wheeled
    model), so the directory is complete before it is uploaded and registered.
    """

    kwargs: dict[str, Any]
    wheel: Path | None

    def save_model(self, path: str, mlflow_model: Any = None, **kwargs: Any) -> None:
        """``mlflow.pyfunc.save_model`` of ``kwargs``, then the wheel in ``wheels/`` and ``wheels``
        in MLmodel (``{platform: ...}``, as ``WheeledModel._update_mlflow_model`` records it)."""
        import mlflow
        from mlflow.models import Model

        mlflow.pyfunc.save_model(path, mlflow_model=mlflow_model, **kwargs)
        if self.wheel is None:
            return
        folder = Path(path) / WHEELS_FOLDER
        folder.mkdir(exist_ok=True)
        shutil.copy2(self.wheel, folder / self.wheel.name)
        model: Any = mlflow_model if mlflow_model is not None else Model.load(str(Path(path) / "MLmodel"))
        model.wheels = {"platform": platform.platform()}
        model.save(str(Path(path) / "MLmodel"))

    def save(self, path: Path | str) -> None:
        """Save the model to ``path`` (a directory that does not exist yet)."""
        self.save_model(str(path), **self.kwargs)

    def log(self, name: str, registered_model_name: str | None = None) -> Any:
        """Log the model to the active run as ``name`` (and register it); the ModelInfo."""
        from mlflow.models import Model

        # the flavor name mlflow.pyfunc.log_model gives a models-from-code file
        # (mlflow/pyfunc/__init__.py _get_pyfunc_model_flavor_name)
        return Model.log(
            artifact_path=None,
            name=name,
            flavor=self,
            registered_model_name=registered_model_name,
            flavor_name="pyfunc.ModelFromCode",
            **self.kwargs,
        )


def pyfunc_kwargs(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Keyword arguments for ``mlflow.pyfunc.log_model`` / ``save_model``: :func:`gguf_pyfunc`'s,
    without the wheel file (which :class:`GgufPyfunc` writes in ``wheels/``)."""
    return gguf_pyfunc(*args, **kwargs).kwargs


def gguf_pyfunc(
    gguf_path: Path | str | None = None,
    generation: dict[str, Any] | None = None,
    *,
    require_wheel: bool = False,
    model_name: str | None = None,
    context_length: int | None = None,
    interface: str = "pyfunc",
) -> GgufPyfunc:
    """The GGUF chat model to log or save: its pyfunc arguments and its wheel.

    ``require_wheel``: refuse (ModelError) rather than pin llama-cpp-python from PyPI when the
    wheelhouse has no portable wheel (for registries whose models a serving container builds).
    ``model_name``: the ``model`` field of the answers; ``context_length``: the model's own (GGUF
    metadata), which caps the context window ``n_ctx``. ``interface``: ``pyfunc`` (a PythonModel with
    the chat signature of every field it honours) or ``chat_model`` (the same model as an
    ``mlflow.pyfunc.ChatModel``, which Databricks streams: :func:`_as_chat_model`).
    """
    from mlflow.models import ModelSignature
    from mlflow.types.llm import CHAT_MODEL_OUTPUT_SCHEMA

    from llmops_nb.models.chat_model import CHAT_FIELDS

    gguf = Path(gguf_path) if gguf_path else bundled_gguf_path()
    if not gguf.is_file():
        raise ConfigError("gguf_path", str(gguf), "an existing .gguf file")
    env = serving_environment(require_wheel=require_wheel)
    kwargs = {
        "python_model": str(CHAT_MODEL_FILE),
        "code_paths": [str(ENGINE_FILE), str(CPU_QUOTA_FILE)],
        "artifacts": {"gguf": str(gguf)},
        "model_config": _with_model(model_config(generation), model_name, context_length),
        "signature": ModelSignature(gguf_chat_input_schema(), CHAT_MODEL_OUTPUT_SCHEMA),
        "input_example": INPUT_EXAMPLE,
        "pip_requirements": env.requirements,
        # what it honours: the workspace refuses the other fields (workspace/runners/fields.py)
        "metadata": {"task": "llm/v1/chat", "llmops_nb.chat_fields": list(CHAT_FIELDS)},
    }
    if interface == "chat_model":
        kwargs = _as_chat_model(kwargs)
    elif interface != "pyfunc":
        raise ConfigError("model.interface", interface, "pyfunc or chat_model")
    return GgufPyfunc(kwargs, env.wheel)


def _as_chat_model(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` of the PythonModel turned into the ChatModel interface's: chat_model_interface.py
    as the model, chat_model.py beside it, MLflow's own chat signature (a ChatModel may not be given
    one), and the metadata: the task MLflow gives a ChatModel, which a ``metadata`` argument would
    otherwise replace (mlflow/pyfunc/__init__.py save_model: ``default_metadata | metadata``, then
    ``mlflow_model.metadata = metadata``), and what it takes at the top level and in custom_inputs."""
    from llmops_nb.models.chat_model_interface import CUSTOM_INPUTS, TOP_LEVEL

    out = {k: v for k, v in kwargs.items() if k != "signature"}
    out["python_model"] = str(CHAT_INTERFACE_FILE)
    out["code_paths"] = [str(CHAT_MODEL_FILE), *kwargs["code_paths"]]
    out["metadata"] = {
        "task": "agent/v1/chat",  # mlflow/pyfunc/model.py _DEFAULT_CHAT_MODEL_METADATA_TASK
        "llmops_nb.chat_fields": [*TOP_LEVEL, "custom_inputs"],
        CUSTOM_INPUTS_KEY: list(CUSTOM_INPUTS),
        INTERFACE_KEY: "chat_model",
    }
    # ChatParams' temperature default (1.0) applies to a request without one, not model_config's
    out["model_config"] = {**kwargs["model_config"], "temperature": 1.0}
    return out


def gguf_chat_input_schema() -> Any:
    """MLflow's chat input schema with every field the GGUF chat model honours: MLflow's scoring
    server drops inputs its signature lacks (mlflow/models/utils.py ``_enforce_named_col_schema``),
    so seed, logprobs, response_format and tool_choice are declared, and tools as any JSON (a
    function's parameters are any JSON schema, not MLflow's fixed tool-parameter shape)."""
    from mlflow.types.llm import CHAT_MODEL_INPUT_SCHEMA
    from mlflow.types.schema import AnyType, ColSpec, DataType, Schema

    from llmops_nb.models.chat_model import CHAT_FIELDS

    keep = {"messages", "temperature", "max_tokens", "stop", "n", "stream", "top_p"}
    cols = [c for c in CHAT_MODEL_INPUT_SCHEMA.inputs if c.name in keep]
    types = {
        "max_completion_tokens": DataType.long,
        "seed": DataType.long,
        "logprobs": DataType.boolean,
        "top_logprobs": DataType.long,
        "parallel_tool_calls": DataType.boolean,
    }
    have = {c.name for c in cols}
    for name in CHAT_FIELDS:
        if name not in have:
            cols.append(ColSpec(types.get(name, AnyType()), name, required=False))
    return Schema(cols)


def _with_model(config: dict[str, Any], model_name: str | None, context_length: int | None) -> dict[str, Any]:
    out = dict(config)
    if model_name:
        out["model_name"] = model_name
    if context_length:
        out["n_ctx"] = min(int(out["n_ctx"]), int(context_length))
    return out


def code_kwargs(source: Any) -> dict[str, Any]:
    """Keyword arguments for ``mlflow.pyfunc.log_model`` of a models-from-code file (``source``:
    a checked :class:`llmops_nb.models.sources.PreparedSource` of kind ``code``).

    Its requirements are the source's, with this MLflow pinned unless they name mlflow; MLflow
    infers nothing (inference would load the model once more).
    """
    import mlflow

    requirements = list(source.requirements)
    if not any(r.split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower() == "mlflow" for r in requirements):
        requirements.insert(0, f"mlflow=={mlflow.__version__}")
    kwargs: dict[str, Any] = {"python_model": str(source.location), "pip_requirements": requirements}
    if source.params.get("model_interface") in ("PythonModel", "callable"):
        # a plain pyfunc is served the chat body: say so in its signature (ChatModel, ChatAgent
        # and ResponsesAgent bring their own)
        from mlflow.models import ModelSignature
        from mlflow.types.llm import CHAT_MODEL_INPUT_SCHEMA, CHAT_MODEL_OUTPUT_SCHEMA

        kwargs["signature"] = ModelSignature(CHAT_MODEL_INPUT_SCHEMA, CHAT_MODEL_OUTPUT_SCHEMA)
        kwargs["metadata"] = {"task": "llm/v1/chat"}
    return kwargs
