"""The logged model's serving environment: pinned requirements, llama.cpp as our portable wheel.

llama-cpp-python has no binary wheel on PyPI: a requirement ``llama-cpp-python==X`` makes a
serving container compile llama.cpp (CMake and a C++ compiler, minutes, or a failed build).
So the portable wheel built by :mod:`llmops_nb.models.runtime` (``GGML_NATIVE=OFF``, no
AVX-512/AMX) is logged inside the model in the layout MLflow writes for private wheels and
Databricks documents for serving ("Use custom Python libraries with Model Serving", option 2,
``mlflow.models.add_libraries_to_model``; docs.databricks.com/aws/en/machine-learning/model-serving/
private-libraries-model-serving): the file in ``wheels/<wheel>`` of the model directory
(mlflow/models/wheeled_model.py ``_WHEELS_FOLDER_NAME = "wheels"``), ``requirements.txt`` and
``conda.yaml`` naming it by that relative path, and ``wheels: {platform: ...}`` in MLmodel
(``WheeledModel._update_mlflow_model``). MLflow's environment managers install the requirements
from the model directory (mlflow/utils/virtualenv.py ``_create_virtualenv`` runs pip there), so
the path resolves whatever the caller's working directory. ``add_libraries_to_model`` itself is
not used: it downloads every dependency with ``pip wheel --only-binary=:all:``, which fails on
llama-cpp-python (no binary on PyPI), and would put all of MLflow's dependency tree (hundreds of
MB) into every version; :class:`llmops_nb.models.pyfunc.GgufPyfunc` writes the one wheel itself.

Every third-party module the logged code imports is declared (chat_model.py: mlflow;
engine.py: numpy, llama_cpp; tests/models/test_model_env.py walks the imports).

Without a wheel in the wheelhouse (llama-cpp-python installed some other way): a model for a
Databricks registry is refused with one line saying how to build it; a local registry falls
back to the PyPI pin with a warning (the local workspace serves from this environment and
never installs the requirements).

The wheel is built wherever ``databricks bundle deploy`` runs, but installed on the job cluster
and in the serving container: a wheel for a Databricks registry must fit :data:`TARGET` (the
bundle's Databricks Runtime, chain/bundle.py ``SPARK_VERSION``), by its tags read with
``packaging.utils.parse_wheel_filename`` against the tags ``packaging.tags`` lists for that
Python and platform (as pip decides), and by the glibc / libstdc++ symbol versions its
libraries link (a ``linux_x86_64`` tag says nothing of them). A wheel that does not fit is
refused in one line with the way out; a local registry takes only a wheel this interpreter
can install (``packaging.tags.sys_tags``).
"""

from __future__ import annotations

import re
import warnings
import zipfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from llmops_nb.errors import ModelError
from llmops_nb.models import runtime

#: where the wheel goes in the model directory: mlflow/models/wheeled_model.py ``_WHEELS_FOLDER_NAME``
WHEELS_FOLDER = "wheels"
# Third-party distributions the logged code imports (besides llama-cpp-python, logged as a wheel).
IMPORTED = ("mlflow", "numpy")
BUILD_HINT = "run `python -m llmops_nb.models.runtime wheel` (or `make install`) first"


@dataclass(frozen=True)
class Target:
    """Where a logged wheel is installed: a CPython, a Linux architecture, and the newest glibc and
    libstdc++ symbol versions its system provides."""

    label: str
    python: tuple[int, int]
    arch: str
    glibc: tuple[int, int]
    glibcxx: tuple[int, int, int]

    def tags(self) -> frozenset:
        """Every wheel tag pip accepts there (``packaging.tags``: cpython, then py3-none tags)."""
        from packaging import tags

        # manylinux_2_N for every glibc up to the target's, then the legacy aliases
        # (PEP 600; packaging.tags._manylinux.platform_tags lists them newest first), then linux_<arch>
        platforms = [f"manylinux_{self.glibc[0]}_{minor}_{self.arch}" for minor in range(self.glibc[1], 4, -1)]
        platforms += [f"manylinux2014_{self.arch}", f"manylinux2010_{self.arch}", f"manylinux1_{self.arch}", f"linux_{self.arch}"]
        interpreter = f"cp{self.python[0]}{self.python[1]}"
        return frozenset(
            [
                *tags.cpython_tags(self.python, platforms=platforms),
                *tags.compatible_tags(self.python, interpreter, platforms),
            ]
        )


#: Databricks Runtime 15.4 LTS ML (the bundle's SPARK_VERSION): Python 3.11 on Ubuntu 22.04 x86-64
#: (DBR 15.4 LTS release notes, "System environment"), glibc 2.35 and GCC 12's libstdc++
#: (GLIBCXX_3.4.30) as Ubuntu 22.04 ships them; serving containers build the model's Python env
#: on Linux x86-64 as well.
TARGET = Target("Databricks Runtime 15.4 LTS ML (CPython 3.11, Linux x86-64, glibc 2.35)", (3, 11), "x86_64", (2, 35), (3, 4, 30))
#: How to get a wheel that fits the target, said with every refusal.
TARGET_HINT = (
    "build it where it runs: on Linux x86-64 with Python 3.11 (a job task on the cluster running "
    "`python -m llmops_nb.models.runtime wheel`, or `docker run --platform linux/amd64 python:3.11` "
    "on this machine), into $LLMOPS_WHEELHOUSE"
)
_SYMBOLS = re.compile(rb"GLIBC(XX)?_(\d+(?:\.\d+)+)\x00")


def linked_versions(wheel: Path) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The newest GLIBC_ and GLIBCXX_ symbol versions the wheel's shared libraries need."""
    glibc: tuple[int, ...] = ()
    glibcxx: tuple[int, ...] = ()
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if ".so" not in name.rsplit("/", 1)[-1]:
                continue
            for cxx, number in _SYMBOLS.findall(zf.read(name)):
                found = tuple(int(p) for p in number.decode().split("."))
                if cxx:
                    glibcxx = max(glibcxx, found)
                else:
                    glibc = max(glibc, found)
    return glibc, glibcxx


def wheel_mismatch(wheel: Path, target: Target = TARGET) -> str | None:
    """Why ``wheel`` cannot be installed on ``target`` (one line), or None when it fits."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        _, _, _, wheel_tags = parse_wheel_filename(wheel.name)
    except InvalidWheelFilename as exc:
        return f"{wheel.name} is not a wheel file name ({exc})"
    if not wheel_tags & target.tags():
        tagged = ", ".join(sorted(str(t) for t in wheel_tags))
        return f"{wheel.name} is tagged {tagged}; {target.label} installs cp{target.python[0]}{target.python[1]} or py3 wheels for linux/manylinux {target.arch}"
    glibc, glibcxx = linked_versions(wheel)
    if glibc > target.glibc:
        return (
            f"{wheel.name} links GLIBC_{'.'.join(map(str, glibc))}; {target.label} has glibc {'.'.join(map(str, target.glibc))}"
        )
    if glibcxx > target.glibcxx:
        return (
            f"{wheel.name} links GLIBCXX_{'.'.join(map(str, glibcxx))}; {target.label} has libstdc++ up to "
            f"GLIBCXX_{'.'.join(map(str, target.glibcxx))}"
        )
    return None


def _installable_here(wheel: Path) -> bool:
    from packaging.tags import sys_tags
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        return bool(parse_wheel_filename(wheel.name)[3] & set(sys_tags()))
    except InvalidWheelFilename:
        return False


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


def find_wheel(llama_version: str, *, target: Target | None = None) -> Path | None:
    """Our portable wheel of ``llama_version``: the one for this key, else any in the wheelhouse;
    one that fits ``target`` first (or, with no target, one this interpreter installs)."""
    wheel = runtime.built_wheel()
    house = runtime.wheelhouse()
    found = sorted(house.rglob(f"llama_cpp_python-{llama_version}-*.whl")) if house.is_dir() else []
    if wheel is not None and wheel.name.startswith(f"llama_cpp_python-{llama_version}-"):
        found = [*(f for f in found if f != wheel), wheel]  # this key's wheel is preferred
    if not found:
        return None
    fitting = [f for f in found if (wheel_mismatch(f, target) is None if target else _installable_here(f))]
    return (fitting or found)[-1]


def serving_environment(*, require_wheel: bool) -> ServingEnvironment:
    """Requirements for the logged model; ``require_wheel``: refuse to pin llama-cpp-python from PyPI,
    and refuse a wheel that does not fit :data:`TARGET` (a serving container installs it)."""
    llama = llama_cpp_version()
    pins = [f"{name}=={version(name)}" for name in IMPORTED]
    wheel = find_wheel(llama, target=TARGET if require_wheel else None)
    if wheel is not None and require_wheel and (why := wheel_mismatch(wheel)) is not None:
        raise ModelError(f"llama-cpp-python {llama}: {why}: {TARGET_HINT}")
    if wheel is not None:
        return ServingEnvironment([*pins, f"{WHEELS_FOLDER}/{wheel.name}"], llama, wheel)
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
