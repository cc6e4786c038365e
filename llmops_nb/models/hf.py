"""``model.source: transformers``: a Hugging Face model folder logged with MLflow's transformers
flavor as a chat model, the way Databricks serves Hugging Face LLMs.

:func:`log_transformers` logs the checked folder (:func:`llmops_nb.models.sources.prepare`) as
``mlflow.transformers.log_model(transformers_model=<folder>, task="llm/v1/chat", ...)`` does:
MLflow copies the checkpoint without loading the weights (a local checkpoint path is accepted
since MLflow 2.17, mlflow/transformers/__init__.py ``save_model``), gives it the chat signature,
and its pyfunc answers OpenAI-style chat completions (mlflow/transformers/llm_inference_utils.py:
``messages`` through the tokenizer's chat template, ``max_tokens`` as ``max_new_tokens``, the
answer as ``chat.completion`` with ``usage``). Served by MLflow's scoring server on the local
workspace; on Databricks by Model Serving (CPU or GPU workload types).

Two things differ from a bare ``log_model`` call, both in what MLflow writes, not how:

- the answers' ``model`` field: MLflow puts the flavor's ``source_model_name`` there, which for
  a local checkpoint is the folder's absolute path at log time (a cache snapshot path for a Hub
  repo). It is set to :attr:`PreparedSource.model_label` instead: the Hub repo id (what a
  pipeline loaded from the Hub carries) or the folder's name.
- the environment: pinned ``mlflow``, ``torch`` and ``transformers`` versions of this
  environment, given as ``pip_requirements`` (MLflow would otherwise infer them by loading the
  model in a subprocess).

Generation defaults (``model.max_tokens``, ``model.temperature``) are the flavor's
``model_config`` (MLflow's inference configuration, passed to the pipeline on every call and
overridden by a request's own ``max_tokens``/``temperature``).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from llmops_nb.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from mlflow.models.model import ModelInfo

    from llmops_nb.models.sources import PreparedSource

#: MLflow's chat task for the transformers flavor (mlflow/transformers/flavor_config.py).
CHAT_TASK = "llm/v1/chat"
#: The packages the served model imports, pinned to this environment's versions.
PINNED = ("mlflow", "torch", "transformers")


def pip_requirements() -> list[str]:
    """``mlflow==``, ``torch==``, ``transformers==`` as installed here (a local version label
    such as ``+cpu`` dropped: PyPI has no such file)."""
    pins = []
    for package in PINNED:
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            raise ConfigError("model.source", "transformers", f"needs {package}: pip install 'llmops-nb[transformers]'") from None
        pins.append(f"{package}=={version.split('+')[0]}")
    return pins


def generation_config(generation: dict[str, Any] | None) -> dict[str, Any]:
    """The pipeline's defaults from ``{max_tokens, temperature}``: greedy at temperature 0
    (transformers refuses ``temperature=0`` with sampling on), sampling above it."""
    generation = generation or {}
    config: dict[str, Any] = {"max_new_tokens": int(generation.get("max_tokens") or 64)}
    temperature = float(generation.get("temperature") or 0.0)
    if temperature > 0:
        config.update(do_sample=True, temperature=temperature)
    else:
        config["do_sample"] = False
    return config


def _model_card(folder: Path) -> Any:
    """The folder's README.md as a huggingface_hub ModelCard (its license goes into the
    artifacts), or None: MLflow would otherwise look the folder's path up on the Hub."""
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    try:
        from huggingface_hub import ModelCard

        return ModelCard.load(readme)
    except Exception:  # noqa: BLE001 - a card that does not parse only loses the license text
        return None


def _labelled_flavor(label: str) -> SimpleNamespace:
    """``mlflow.transformers`` with the MLmodel's ``source_model_name`` (the answers' ``model``)
    set to ``label`` once MLflow has written it. ``Model.log`` calls ``flavor.save_model(path=,
    mlflow_model=, **kwargs)`` (mlflow/models/model.py), then logs ``path`` as it is."""
    import mlflow.transformers
    from mlflow.models.model import MLMODEL_FILE_NAME

    def save_model(path: str, mlflow_model: Any, **kwargs: Any) -> None:
        mlflow.transformers.save_model(path=path, mlflow_model=mlflow_model, **kwargs)
        mlflow_model.flavors["transformers"]["source_model_name"] = label
        mlflow_model.save(str(Path(path) / MLMODEL_FILE_NAME))

    return SimpleNamespace(__name__="mlflow.transformers", save_model=save_model)


def log_transformers(name: str, source: PreparedSource, generation: dict[str, Any] | None) -> ModelInfo:
    """Log ``source`` (a checked transformers folder) as the active run's chat model and register
    it as a new version of ``name``; MLflow's ModelInfo (``registered_model_version`` set)."""
    from mlflow.models import Model

    if source.location is None or not source.location.is_dir():
        raise ConfigError("model.path", str(source.location), "a Hugging Face model folder")
    folder = source.location
    # The arguments of mlflow.transformers.log_model for a local checkpoint (it passes
    # validate_serving_input=False for a path: validating would load the model).
    return Model.log(
        artifact_path=None,
        name="model",
        flavor=_labelled_flavor(source.model_label),
        registered_model_name=name,
        transformers_model=str(folder),
        task=CHAT_TASK,
        model_card=_model_card(folder),
        model_config=generation_config(generation),
        pip_requirements=pip_requirements(),
        validate_serving_input=False,
    )
