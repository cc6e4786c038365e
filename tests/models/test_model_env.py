"""The registered model's environment installs without a compiler and serves (MLflow's uv manager).

The offline proof builds the environment from the model's logged requirements alone, with
MLflow's own machinery (``mlflow models prepare-env`` / ``mlflow models serve --env-manager
uv``, as a serving container does), in a fresh environment under a temp dir, with no C/C++
compiler reachable: PATH holds only a folder with python, bash (MLflow runs its commands
with ``bash -c``) and uv, and CC/CXX name a file that does not exist, so any source build of
llama-cpp-python fails loudly. The ``virtualenv`` manager is not used: it needs pyenv, which
downloads and compiles the model's Python when it has not got it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import requests

from llmops_nb.errors import ModelError
from llmops_nb.models import environment, registry, runtime
from llmops_nb.models.gguf import bundled_gguf_path
from llmops_nb.models.pyfunc import (
    CHAT_MODEL_FILE,
    CPU_QUOTA_FILE,
    ENGINE_FILE,
    gguf_pyfunc,
    pip_requirements,
    pyfunc_kwargs,
)
from llmops_nb.util.ports import free_port

NAME = "smollm2-env-test"
COMPILERS = ("cc", "gcc", "c++", "g++", "clang", "clang++", "cmake", "make", "ninja")
LOGGED_CODE = (CHAT_MODEL_FILE, ENGINE_FILE, CPU_QUOTA_FILE)
LOCAL_MODULES = {"engine", "cpu_quota", "llmops_nb"}  # logged beside it / optional (try-import)


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _imported_modules(path: Path) -> set[str]:
    """Top-level modules a file imports, at any depth (function-level imports too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_import_of_the_logged_code_is_declared() -> None:
    modules = set().union(*(_imported_modules(path) for path in LOGGED_CODE))
    third_party = modules - set(sys.stdlib_module_names) - LOCAL_MODULES - {"__future__"}
    assert {"mlflow", "numpy", "llama_cpp"} <= third_party
    declared = {_canonical(req.split("==")[0]) for req in pip_requirements() if "==" in req}
    declared.add("llama-cpp-python")  # the wheel line: checked against the wheel below
    dists = packages_distributions()
    missing = {m: dists.get(m) for m in third_party if not {_canonical(d) for d in dists.get(m, [])} & declared}
    assert not missing, f"imported by the logged model but not declared: {missing}"


def test_requirements_name_our_wheel_never_the_pypi_sdist() -> None:
    wheel = runtime.built_wheel()
    assert wheel is not None, f"no portable wheel in {runtime.wheelhouse()}: run `make install`"
    requirements = pip_requirements(require_wheel=True)
    # the layout of mlflow.models.add_libraries_to_model (mlflow/models/wheeled_model.py)
    assert requirements[-1] == f"wheels/{wheel.name}"
    assert not any(req.startswith("llama-cpp-python") for req in requirements)
    model = gguf_pyfunc()
    assert model.wheel == wheel and model.kwargs["artifacts"] == {"gguf": str(bundled_gguf_path())}
    assert model.kwargs["code_paths"] == [str(ENGINE_FILE), str(CPU_QUOTA_FILE)]


def test_the_saved_model_holds_the_wheel_where_add_libraries_to_model_puts_it(tmp_path: Path) -> None:
    """wheels/<file> in the model directory, named so by requirements.txt and conda.yaml, and
    ``wheels`` in MLmodel: the layout mlflow/models/wheeled_model.py writes."""
    import yaml
    from mlflow.models import Model
    from mlflow.models.wheeled_model import _WHEELS_FOLDER_NAME

    model = gguf_pyfunc()
    assert model.wheel is not None
    model.save(tmp_path / "model")
    saved = tmp_path / "model"
    assert environment.WHEELS_FOLDER == _WHEELS_FOLDER_NAME
    assert (saved / "wheels" / model.wheel.name).read_bytes() == model.wheel.read_bytes()
    assert not (saved / "artifacts" / model.wheel.name).exists()  # logged once, not also as an artifact
    assert (saved / "requirements.txt").read_text().split()[-1] == f"wheels/{model.wheel.name}"
    conda = yaml.safe_load((saved / "conda.yaml").read_text())
    (pip,) = [d["pip"] for d in conda["dependencies"] if isinstance(d, dict)]
    assert pip[-1] == f"wheels/{model.wheel.name}"
    assert set(Model.load(str(saved / "MLmodel")).wheels) == {"platform"}


def test_a_wheelhouse_from_elsewhere_is_found_under_another_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = runtime.built_wheel()
    assert wheel is not None
    (tmp_path / "0123456789abcdef").mkdir()
    copied = Path(shutil.copy2(wheel, tmp_path / "0123456789abcdef" / wheel.name))
    monkeypatch.setenv("LLMOPS_WHEELHOUSE", str(tmp_path))
    assert environment.find_wheel(environment.llama_cpp_version()) == copied
    assert environment.find_wheel("0.0.1") is None


def test_no_wheel_local_registry_pins_pypi_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_WHEELHOUSE", str(tmp_path / "empty"))
    version = environment.llama_cpp_version()
    with pytest.warns(UserWarning, match="no portable wheel") as caught:
        kwargs = pyfunc_kwargs()
    assert kwargs["pip_requirements"][-1] == f"llama-cpp-python=={version}"
    assert kwargs["artifacts"] == {"gguf": str(bundled_gguf_path())}
    (line,) = [str(w.message) for w in caught]
    assert "\n" not in line and "python -m llmops_nb.models.runtime wheel" in line


def test_no_wheel_databricks_registry_refuses_in_one_line_before_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.setenv("LLMOPS_WHEELHOUSE", str(tmp_path / "empty"))
    before = mlflow.get_tracking_uri()
    with pytest.raises(ModelError, match=r"python -m llmops_nb\.models\.runtime wheel") as err:
        registry.register_model(
            "main.llmops.smollm2",
            tracking_uri="databricks",
            registry_uri="databricks-uc",
            experiment="/Users/me@example.com/llmops-nb",
        )
    assert "\n" not in str(err.value) and "no portable wheel" in str(err.value)
    assert mlflow.get_tracking_uri() == before  # refused before MLflow was pointed anywhere


# ---- the wheel's platform: what the job cluster and the serving container install ---------------
BUILT = runtime.built_wheel()  # before any test points LLMOPS_WHEELHOUSE elsewhere


def _wheel_named(folder: Path, name: str, *, libs: dict[str, bytes] | None = None) -> Path:
    """Our real wheel under another file name (its tags), or a small zip holding ``libs``."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if libs is None:
        assert BUILT is not None, f"no portable wheel in {runtime.wheelhouse()}: run `make install`"
        shutil.copy2(BUILT, target)
    else:
        with zipfile.ZipFile(target, "w") as zf:
            for member, data in libs.items():
                zf.writestr(member, data)
    return target


def test_our_wheel_fits_the_bundles_databricks_runtime() -> None:
    wheel = runtime.built_wheel()
    assert wheel is not None
    assert environment.wheel_mismatch(wheel) is None
    glibc, glibcxx = environment.linked_versions(wheel)
    assert (2, 17) <= glibc <= environment.TARGET.glibc and glibcxx <= environment.TARGET.glibcxx


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("llama_cpp_python-{v}-py3-none-macosx_14_0_arm64.whl", "is tagged py3-none-macosx_14_0_arm64"),
        ("llama_cpp_python-{v}-py3-none-linux_aarch64.whl", "is tagged py3-none-linux_aarch64"),
        ("llama_cpp_python-{v}-cp312-cp312-linux_x86_64.whl", "is tagged cp312-cp312-linux_x86_64"),
    ],
)
def test_a_wheel_built_for_another_platform_is_refused_for_databricks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, said: str
) -> None:
    """A deploy from macOS, ARM or Python 3.12 builds a wheel the cluster and serving cannot install."""
    version = environment.llama_cpp_version()
    monkeypatch.setenv("LLMOPS_WHEELHOUSE", str(tmp_path))
    _wheel_named(tmp_path / runtime.cache_key(), name.format(v=version))
    with pytest.raises(ModelError) as err:
        pip_requirements(require_wheel=True)
    message = str(err.value)
    assert "\n" not in message and said in message
    assert "Databricks Runtime 15.4 LTS ML" in message and "docker run --platform linux/amd64 python:3.11" in message
    assert runtime.main(["wheel"]) == 2  # the bundle's build step refuses it too, before the upload


def test_a_wheel_linking_a_newer_glibc_than_the_runtime_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    version = environment.llama_cpp_version()
    monkeypatch.setenv("LLMOPS_WHEELHOUSE", str(tmp_path))
    lib = b"\x7fELF...GLIBC_2.17\x00GLIBC_2.38\x00GLIBCXX_3.4.30\x00"
    _wheel_named(tmp_path / "k", f"llama_cpp_python-{version}-py3-none-linux_x86_64.whl", libs={"llama_cpp/lib/libggml.so": lib})
    with pytest.raises(ModelError, match="links GLIBC_2.38; Databricks Runtime 15.4 LTS ML .* has glibc 2.35"):
        pip_requirements(require_wheel=True)


def test_a_wheel_that_fits_is_taken_over_one_that_does_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    version = environment.llama_cpp_version()
    monkeypatch.setenv("LLMOPS_WHEELHOUSE", str(tmp_path))
    # sorted last, so the lookup that takes "any file of the right version" took it
    _wheel_named(tmp_path / "zz-mac", f"llama_cpp_python-{version}-py3-none-macosx_14_0_arm64.whl")
    fits = _wheel_named(tmp_path / "aa-linux", f"llama_cpp_python-{version}-py3-none-linux_x86_64.whl")
    assert environment.find_wheel(version, target=environment.TARGET) == fits
    assert environment.find_wheel(version) == fits  # this machine (Linux x86-64) installs it too
    assert pip_requirements(require_wheel=True)[-1].endswith(fits.name)


# ---- the offline proof ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[registry.RegisteredModel, str]]:
    """The model registered in a fresh SQLite store, as the register step does."""
    import mlflow

    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    tracking_uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    yield registry.register_model(NAME, tracking_uri=tracking_uri), tracking_uri
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    for key, value in saved.items():
        os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def _no_compiler_env(tmp: Path, tracking_uri: str) -> dict[str, str]:
    """PATH: one folder with python, bash and uv only; CC/CXX point at nothing."""
    tools = tmp / "tools"
    tools.mkdir()
    for name in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}"):
        (tools / name).symlink_to(sys._base_executable)  # the real interpreter, not our venv's
    (tools / "bash").symlink_to(shutil.which("bash"))
    (tools / "uv").symlink_to(Path(sys.executable).parent / "uv")
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "PYTHON", "VIRTUAL_ENV", "CONDA", "PIP_", "UV_"))
        and k not in ("PATH", "CC", "CXX", "CMAKE_ARGS")
    }
    return {
        **keep,
        "PATH": str(tools),
        "CC": str(tmp / "no-compiler" / "cc"),
        "CXX": str(tmp / "no-compiler" / "c++"),
        "MLFLOW_ENV_ROOT": str(tmp / "envs"),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NATIVE_TLS": "1",
    }  # the system's CA store, as pip here


def _sha256_in_wheel(wheel: Path, member: str) -> str:
    with zipfile.ZipFile(wheel) as zf:
        return hashlib.sha256(zf.read(member)).hexdigest()


@pytest.mark.model
@pytest.mark.timeout(1500)
def test_registered_model_builds_without_a_compiler_and_serves(
    registered: tuple[registry.RegisteredModel, str], tmp_path: Path
) -> None:
    import mlflow

    model, tracking_uri = registered
    wheel = runtime.built_wheel()
    assert wheel is not None
    requirements = Path(
        mlflow.artifacts.download_artifacts(
            f"{model.uri}/requirements.txt", tracking_uri=tracking_uri, dst_path=str(tmp_path / "req")
        )
    )
    print(f"\nrequirements.txt of {model.uri}:\n{requirements.read_text().strip()}")

    env = _no_compiler_env(tmp_path, tracking_uri)
    assert not [c for c in COMPILERS if shutil.which(c, path=env["PATH"])]
    work = tmp_path / "cwd"  # outside the repo: nothing of llmops_nb on the server's sys.path
    work.mkdir()
    mlflow_cli = [sys.executable, "-m", "mlflow", "models"]
    started = time.monotonic()
    prep = subprocess.run(
        [*mlflow_cli, "prepare-env", "-m", model.uri, "--env-manager", "uv"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    build_s = time.monotonic() - started
    log = prep.stdout + prep.stderr
    assert prep.returncode == 0, log[-4000:]
    assert "tar.gz" not in log and "Building llama-cpp-python" not in log, log[-4000:]

    (venv,) = (tmp_path / "envs").glob("mlflow-*")
    site = next((venv / "lib").glob("python3*/site-packages"))
    dist = site / f"llama_cpp_python-{environment.llama_cpp_version()}.dist-info"
    source = json.loads((dist / "direct_url.json").read_text())["url"]
    assert source.startswith("file://") and source.endswith(f"/wheels/{wheel.name}"), source
    for lib in ("libggml-cpu.so", "libllama.so"):  # the very binaries of our portable build
        installed = hashlib.sha256((site / "llama_cpp" / "lib" / lib).read_bytes()).hexdigest()
        assert installed == _sha256_in_wheel(wheel, f"llama_cpp/lib/{lib}")
    assert (
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import llmops_nb"], cwd=work, env=env, capture_output=True
        ).returncode
        != 0
    )

    port = free_port()
    with open(tmp_path / "serve.log", "wb") as serve_log:
        proc = subprocess.Popen(
            [*mlflow_cli, "serve", "-m", model.uri, "-p", str(port), "--env-manager", "uv"],
            cwd=work,
            env=env,
            stdout=serve_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            answer = _chat_when_up(f"http://127.0.0.1:{port}", proc, timeout=300)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    # The control: in this same environment, the PyPI requirement (an sdist) cannot be built.
    sdist = subprocess.run(
        [
            str(Path(env["PATH"]) / "uv"),
            "pip",
            "install",
            "--python",
            str(venv / "bin" / "python"),
            "--reinstall-package",
            "llama-cpp-python",
            f"llama-cpp-python=={environment.llama_cpp_version()}",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert sdist.returncode != 0 and "Could not find the compiler" in sdist.stderr, sdist.stderr[-3000:]
    served = (tmp_path / "serve.log").read_text(errors="replace")
    assert "already exists" in served  # the server ran in the environment built above
    content = answer["choices"][0]["message"]["content"]
    assert isinstance(content, str) and content.strip()
    assert answer["usage"]["completion_tokens"] > 0
    print(
        f"environment built with no compiler (uv, PATH={env['PATH']}, CC={env['CC']}) "
        f"in {build_s:.1f} s: {venv}\nllama-cpp-python from {source}\nanswer: {content!r}\n"
        f"control: llama-cpp-python from PyPI in the same environment fails: "
        f"{next(x.strip() for x in sdist.stderr.splitlines() if 'Could not find the compiler' in x)!r}"
    )


def _chat_when_up(base: str, proc: subprocess.Popen, timeout: float) -> dict:
    """POST one chat request once the scoring server answers /ping."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"mlflow models serve exited with {proc.returncode}"
        try:
            if requests.get(f"{base}/ping", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, f"no answer on {base}/ping in {timeout:.0f} s"
        time.sleep(0.5)
    body = {"messages": [{"role": "user", "content": "Say hello in five words."}], "max_tokens": 16, "temperature": 0}
    response = requests.post(f"{base}/invocations", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()
