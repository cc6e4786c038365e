"""Where the registered model comes from: resolve and check ``model.source`` before anything is logged.

:func:`prepare` turns the config's ``model:`` section (:class:`llmops_nb.config.project.ModelSpec`)
into a :class:`PreparedSource`: the file or folder to log, its sha256, what the model says about
itself (chat template, context length) and the params and tags a version carries. Every check
that can fail runs here, so a bad source creates no MLflow run, version or alias:

- ``bundled`` / ``gguf``: the file exists, starts with the GGUF magic, and llama.cpp loads it
  and decodes a token (in a subprocess: a crash is a message, not a dead kernel).
- ``transformers``: a Hugging Face model folder with a tokenizer chat template; the
  ``transformers`` extra installed.
- ``code``: a Python file that imports and calls ``mlflow.models.set_model`` (run in a
  subprocess, as MLflow's models-from-code loader runs it).
- ``uc``: an existing Unity Catalog model version (Databricks only).

``hf_repo`` sources are fetched with ``huggingface_hub`` into its cache; offline
(``HF_HUB_OFFLINE=1``, or no network) a cached copy is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops_nb.errors import ConfigError
from llmops_nb.models.gguf import DEFAULT_MODEL_NAME, GGUF_MAGIC, bundled_gguf_path
from llmops_nb.util.paths import project_root

if TYPE_CHECKING:  # pragma: no cover
    from llmops_nb.config.project import ModelSpec

#: How long a probe subprocess (load a GGUF and decode a token, import a code file) may take.
PROBE_TIMEOUT_S = 300.0
_README = "see README, 'Bring your own model'"


@dataclass(frozen=True)
class PreparedSource:
    """A checked model source, ready to log (or, for ``uc``, to serve as it is)."""

    kind: str
    #: The GGUF file, the model folder or the code file; None for ``uc``.
    location: Path | None
    #: sha256 of the file (a folder: of its files' relative paths and contents); None for ``uc``.
    sha256: str | None
    #: The ``model`` field of the answers (GGUF sources: the file's stem).
    model_label: str
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    chat_template: str | None = None
    context_length: int | None = None
    requirements: tuple[str, ...] = ()
    #: ``uc``: the Unity Catalog version served as it is.
    uc_version: str | None = None


def prepare(spec: ModelSpec, *, databricks: bool = False) -> PreparedSource:
    """Resolve and check ``spec``'s source (one ConfigError line naming the field if it is wrong)."""
    if spec.source == "bundled":
        return gguf_source(bundled_gguf_path(), "model.source", label=DEFAULT_MODEL_NAME, kind="bundled")
    if spec.source == "gguf":
        if spec.hf_repo:
            assert spec.hf_file is not None  # ModelSpec checks hf_repo and hf_file go together
            path = hf_file(spec.hf_repo, spec.hf_file, spec.revision)
            return gguf_source(path, "model.hf_file", hub=(spec.hf_repo, spec.revision))
        return gguf_source(local_path(spec.path, "model.path"), "model.path")
    if spec.source == "transformers":
        folder = hf_snapshot(spec.hf_repo, spec.revision) if spec.hf_repo else local_path(spec.path, "model.path")
        return _transformers(folder, "model.hf_repo" if spec.hf_repo else "model.path", hub=(spec.hf_repo, spec.revision))
    if spec.source == "code":
        return _code(local_path(spec.path, "model.path"), tuple(spec.requirements))
    return _uc(spec.name, str(spec.version), databricks=databricks)


def local_path(value: str | None, field_name: str) -> Path:
    """``value`` as an absolute path (relative: from the project folder); ConfigError if missing."""
    if not value:
        raise ConfigError(field_name, value, "a path to the model file or folder")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = project_root() / path
    if not path.exists():
        raise ConfigError(
            field_name, value, f"an existing file or folder (looked at {path}; a relative path is from the project folder)"
        )
    return path.resolve()


# --------------------------------------------------------------------------- the Hugging Face Hub


def _hub_failed(repo: str, what: str, e: Exception) -> ConfigError:
    why = "HF_HUB_OFFLINE is set and" if _offline() else "the Hub could not be reached or refused it, and"
    return ConfigError(
        "model.hf_repo",
        repo,
        f"{why} no cached copy of {what} was found ({type(e).__name__}); it needs the Hugging Face Hub, "
        "or give path: a local copy",
    )


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:  # pragma: no cover - a dependency of the local extra
        raise ConfigError("model.hf_repo", None, "needs huggingface_hub: pip install 'llmops-nb[local]'") from None
    return huggingface_hub


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")


def _hub_options() -> dict[str, Any]:
    """The cache and offline settings as the environment says now: huggingface_hub reads
    ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` once, when it is first imported (its ``constants``),
    and transformers imports it early. Offline, only the cache is read (no request, no retries)."""
    options: dict[str, Any] = {}
    if os.environ.get("HF_HUB_CACHE"):
        options["cache_dir"] = os.environ["HF_HUB_CACHE"]
    if _offline():
        options["local_files_only"] = True
    return options


def hf_file(repo: str, filename: str, revision: str | None = None) -> Path:
    """One file of a Hub repo, from huggingface_hub's cache (fetched if the Hub is reachable)."""
    hub = _hub()
    try:
        return Path(hub.hf_hub_download(repo, filename, revision=revision, **_hub_options()))
    except Exception as e:  # offline with no cache, no such repo or file, no network
        raise _hub_failed(repo, f"{filename}{'@' + revision if revision else ''}", e) from None


def hf_snapshot(repo: str, revision: str | None = None) -> Path:
    """A Hub repo's files, from huggingface_hub's cache (fetched if the Hub is reachable)."""
    hub = _hub()
    try:
        return Path(hub.snapshot_download(repo, revision=revision, **_hub_options()))
    except Exception as e:
        raise _hub_failed(repo, f"the repo{'@' + revision if revision else ''}", e) from None


def _hub_tags(hub: tuple[str | None, str | None]) -> dict[str, str]:
    repo, revision = hub
    return {"llmops_nb.hf_repo": repo, "llmops_nb.hf_revision": revision or "main"} if repo else {}


# --------------------------------------------------------------------------- digests


def file_sha256(path: Path) -> str:
    """sha256 of one file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def folder_sha256(folder: Path) -> str:
    """sha256 over a folder's files: each relative path, then its bytes' sha256, in path order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and ".cache" not in p.relative_to(folder).parts):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + file_sha256(path).encode() + b"\n")
    return digest.hexdigest()


def _template_params(template: str | None, context_length: int | None, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {"chat_template_source": where}
    if template is not None:
        out["chat_template_sha256"] = hashlib.sha256(template.encode()).hexdigest()
    if context_length is not None:
        out["context_length"] = context_length
    return out


# --------------------------------------------------------------------------- probes


def _probe(args: list[str], field_name: str, value: str, allowed: str) -> dict[str, Any]:
    """Run ``python -m llmops_nb.models.probe ARGS``; its last stdout line is JSON. A failure is
    one ConfigError line with the probe's own last words."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "llmops_nb.models.probe", *args],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ConfigError(field_name, value, f"{allowed} (the check did not finish in {PROBE_TIMEOUT_S:.0f} s)") from None
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode == 0 and lines:
        out = json.loads(lines[-1])
        if "error" not in out:
            return out
        said = out["error"]
    else:
        tail = [line for line in proc.stderr.splitlines() if line.strip()]
        said = tail[-1] if tail else f"exit code {proc.returncode}"
        if proc.returncode < 0:
            said = f"killed by signal {-proc.returncode}; {said}"
    raise ConfigError(field_name, value, f"{allowed} (the check said: {said[:300]})")


def _probe_cache(sha: str) -> Path:
    """Where a GGUF that passed the probe is remembered, by content and llama.cpp version."""
    from llmops_nb.models.environment import llama_cpp_version

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llmops-nb" / "probed"
    return base / f"{sha}-llama-cpp-{llama_cpp_version()}.json"


def _probed_gguf(path: Path, sha: str, field_name: str) -> dict[str, Any]:
    """The probe's answer for this file's bytes: remembered once it passed (the same file
    registered again is not loaded again), else run."""
    cache = _probe_cache(sha)
    try:
        return dict(json.loads(cache.read_text()))
    except (OSError, ValueError):
        pass
    info = _probe(["gguf", str(path)], field_name, str(path), "a GGUF that llama.cpp loads and runs, with a chat template")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, cache)
    except OSError:  # a read-only cache only costs the next probe
        pass
    return info


def gguf_source(
    path: Path,
    field_name: str,
    *,
    label: str | None = None,
    kind: str = "gguf",
    hub: tuple[str | None, str | None] = (None, None),
) -> PreparedSource:
    if not path.is_file():
        raise ConfigError(field_name, str(path), "a .gguf file (this is a folder)")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ConfigError(field_name, str(path), f"a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r})")
    sha = file_sha256(path)
    info = _probed_gguf(path, sha, field_name)
    template, context = info.get("chat_template"), info.get("context_length")
    params = {
        "source": kind,
        "gguf_architecture": info.get("architecture"),
        **_template_params(template, context, "gguf metadata (tokenizer.chat_template)"),
    }
    return PreparedSource(
        kind=kind,
        location=path,
        sha256=sha,
        model_label=label or path.stem,
        params=params,
        tags={"llmops_nb.source": kind, "llmops_nb.source_sha256": sha, **_hub_tags(hub)},
        chat_template=template,
        context_length=context,
    )


def _transformers(folder: Path, field_name: str, *, hub: tuple[str | None, str | None]) -> PreparedSource:
    value = hub[0] or str(folder)
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise ConfigError(field_name, value, "a Hugging Face model folder (config.json, weights and tokenizer files)")
    template = _chat_template(folder)
    if not template:
        raise ConfigError(
            field_name,
            value,
            "a model whose tokenizer has a chat template (tokenizer_config.json 'chat_template' or chat_template.jinja)",
        )
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise ConfigError(
            "model.source", "transformers", "needs the transformers extra: pip install 'llmops-nb[transformers]'"
        ) from None
    config = json.loads((folder / "config.json").read_text())
    context = config.get("max_position_embeddings") or config.get("n_positions")
    sha = folder_sha256(folder)
    return PreparedSource(
        kind="transformers",
        location=folder,
        sha256=sha,
        model_label=hub[0] or folder.name,
        params={
            "source": "transformers",
            "architecture": ",".join(config.get("architectures") or []) or None,
            **_template_params(template, context, "tokenizer chat_template"),
        },
        tags={"llmops_nb.source": "transformers", "llmops_nb.source_sha256": sha, **_hub_tags(hub)},
        chat_template=template,
        context_length=int(context) if context else None,
    )


def _chat_template(folder: Path) -> str | None:
    """The tokenizer's chat template: ``chat_template.jinja`` or ``tokenizer_config.json``'s."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    config = folder / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text()).get("chat_template")
        if isinstance(template, list):  # named templates: the default one
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        return template if isinstance(template, str) and template.strip() else None
    return None


def _code(path: Path, requirements: tuple[str, ...]) -> PreparedSource:
    if not path.is_file() or path.suffix != ".py":
        raise ConfigError("model.path", str(path), "a Python file (.py) that defines the model and calls mlflow.models.set_model")
    info = _probe(
        ["code", str(path)], "model.path", str(path), "a file that imports cleanly and calls mlflow.models.set_model(...)"
    )
    sha = file_sha256(path)
    return PreparedSource(
        kind="code",
        location=path,
        sha256=sha,
        model_label=path.stem,
        params={"source": "code", "model_class": info.get("class"), "model_interface": info.get("interface")},
        tags={"llmops_nb.source": "code", "llmops_nb.source_sha256": sha},
        requirements=requirements,
    )


def _uc(name: str, version: str, *, databricks: bool) -> PreparedSource:
    if not databricks:
        raise ConfigError(
            "model.source",
            "uc",
            "a Unity Catalog model serves on Databricks only (provisioned throughput); the local workspace "
            "serves bundled, gguf, transformers or code sources",
        )
    return PreparedSource(kind="uc", location=None, sha256=None, model_label=name, uc_version=version, params={"source": "uc"})
