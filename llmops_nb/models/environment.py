"""The logged model's serving environment: pinned requirements, llama.cpp as our portable wheel.

llama-cpp-python has no binary wheel on PyPI: a requirement ``llama-cpp-python==X`` makes a
serving container compile llama.cpp (CMake and a C++ compiler, minutes, or a failed build).
So the portable wheel built by :mod:`llmops_nb.models.runtime` (``GGML_NATIVE=OFF``, no
AVX-512/AMX) is logged inside the model as an artifact (``artifacts/<wheel>``), and the
model's requirements name it by that relative path, as ``add_libraries_to_model`` names its
``wheels/<wheel>``: MLflow's environment managers install the requirements from a copy of the
model directory (mlflow/utils/virtualenv.py ``_create_virtualenv``), so the path resolves
there. ``add_libraries_to_model`` itself is not used: it downloads every dependency with
``pip wheel --only-binary=:all:``, which fails on llama-cpp-python (no binary on PyPI), and
would put all of MLflow's dependency tree (hundreds of MB) into every version.

Every third-party module the logged code imports is declared (chat_model.py: mlflow;
engine.py: numpy, llama_cpp; tests/models/test_model_env.py walks the imports).

Without a wheel in the wheelhouse (llama-cpp-python installed some other way): a model for a
Databricks registry is refused with one line saying how to build it; a local registry falls
back to the PyPI pin with a warning (the local workspace serves from this environment and
never installs the requirements).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from llmops_nb.errors import ModelError
from llmops_nb.models import runtime

WHEEL_ARTIFACT = "llama_cpp_wheel"  # the key in the pyfunc's artifacts
ARTIFACTS_FOLDER = "artifacts"  # where MLflow copies a python model's artifacts in the model
# Third-party distributions the logged code imports (besides llama-cpp-python, logged as a wheel).
IMPORTED = ("mlflow", "numpy")
BUILD_HINT = "run `python -m llmops_nb.models.runtime wheel` (or `make install`) first"


@dataclass(frozen=True)
class ServingEnvironment:
    """The model's pip requirements and the wheel logged with it (None: pinned from PyPI)."""

    requirements: list[str]
    llama_cpp_version: str
    wheel: Path | None


def llama_cpp_version() -> str:
    """The installed llama-cpp-python version; ModelError if it is not installed."""
    try:
        return version("llama-cpp-python")
    except PackageNotFoundError:
        raise ModelError("llama-cpp-python is not installed; run: pip install 'llmops-nb[local]'") from None


def find_wheel(llama_version: str) -> Path | None:
    """Our portable wheel of ``llama_version``: the one for this key, else any in the wheelhouse."""
    wheel = runtime.built_wheel()
    if wheel is not None and wheel.name.startswith(f"llama_cpp_python-{llama_version}-"):
        return wheel
    house = runtime.wheelhouse()
    found = sorted(house.rglob(f"llama_cpp_python-{llama_version}-*.whl")) if house.is_dir() else []
    return found[-1] if found else None


def serving_environment(*, require_wheel: bool) -> ServingEnvironment:
    """Requirements for the logged model; ``require_wheel``: refuse to pin llama-cpp-python from PyPI."""
    llama = llama_cpp_version()
    pins = [f"{name}=={version(name)}" for name in IMPORTED]
    wheel = find_wheel(llama)
    if wheel is not None:
        return ServingEnvironment([*pins, f"{ARTIFACTS_FOLDER}/{wheel.name}"], llama, wheel)
    where = runtime.wheelhouse() / runtime.cache_key()
    if require_wheel:
        raise ModelError(
            f"llama-cpp-python {llama}: no portable wheel in {where}, and a serving "
            f"container cannot build it without a compiler; {BUILD_HINT}"
        )
    warnings.warn(
        f"llama-cpp-python {llama}: no portable wheel in {where}; the model pins "
        f"llama-cpp-python=={llama} (a serving container must compile it); for Databricks "
        f"{BUILD_HINT}",
        UserWarning,
        stacklevel=3,
    )
    return ServingEnvironment([*pins, f"llama-cpp-python=={llama}"], llama, None)
