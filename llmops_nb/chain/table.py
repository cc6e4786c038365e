"""The chain, declared once: one :class:`Step` record per step notebook.

Every reader of the chain takes its facts from :data:`CHAIN` (kedro's ``Node(func, inputs,
outputs)`` is the model): the runner (:mod:`llmops_nb.chain.runner`) and its parameter
checks, ``params.publish``, the bundle renderer and validator (:mod:`llmops_nb.chain.bundle`), the
kernel warmer (:mod:`llmops_nb.chain.kernels`) and the tests. The old per-module tables
(``pipeline.STEPS``, ``params.STEP_OUTPUTS``, ``bundle.TIMEOUTS``, ``kernels.PRELOAD`` ...)
are values derived here and re-exported where they used to live.

Adding a step or an output is one edit in :data:`CHAIN` (plus the notebook that publishes or
declares it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Output:
    """One value a step publishes (a job task value downstream); ``type`` as papermill names it."""

    name: str
    type: str = "str"


@dataclass(frozen=True)
class Step:
    """One step of the chain: its notebook, what it reads and publishes, how the job runs it."""

    name: str
    #: The notebook file under ``notebooks/``.
    notebook: str
    #: Outputs of earlier steps it takes as parameters (the runner injects them; the job wires task values).
    inputs: tuple[str, ...]
    #: What it publishes with ``params.publish``.
    outputs: tuple[Output, ...]
    #: Seconds the job task may run.
    timeout_seconds: int
    #: Heavy modules the step imports when it runs (measured: ``sys.modules`` after the step in a
    #: fresh process, local backend), imported ahead by the kernel warmer. Only these: a module a
    #: step does not use would cost CPU the running step needs.
    warm_imports: tuple[str, ...]
    #: Job retries of the task (0: none).
    retries: int = 0
    #: If set, the task passes ``timeout_seconds`` minus this many seconds to the notebook's own wait.
    notebook_timeout_margin: int | None = None
    #: The step mostly waits (on the network or a child process) and leaves a core idle.
    mostly_waits: bool = False

    @property
    def output_names(self) -> tuple[str, ...]:
        """The names of its outputs, in order."""
        return tuple(o.name for o in self.outputs)


CHAIN: tuple[Step, ...] = (
    Step(
        "register",
        "01_register.ipynb",
        inputs=(),
        outputs=(Output("model_name"), Output("model_version"), Output("model_uri")),
        timeout_seconds=1800,
        warm_imports=(
            "mlflow",
            "mlflow.pyfunc",
            "mlflow.store.tracking.sqlalchemy_store",
            "mlflow.store.model_registry.sqlalchemy_store",
            "alembic.runtime.migration",
            "llmops_nb.steps.register",
            "llmops_nb.models.registry",
            "llmops_nb.models.pyfunc",
            "llama_cpp",
        ),
    ),
    Step(
        "deploy",
        "02_deploy.ipynb",
        inputs=("model_version",),
        outputs=(Output("endpoint_name"), Output("endpoint_url"), Output("config_hash")),
        timeout_seconds=3600,
        retries=2,
        notebook_timeout_margin=300,
        mostly_waits=True,
        warm_imports=(
            "databricks.sdk",
            "databricks.sdk.service.serving",
            "llmops_nb.steps.deploy",
            "llmops_nb.endpoints.apply",
            "llmops_nb.endpoints.preflight",
            "filelock",
        ),
    ),
    Step(
        "serve",
        "03_serve.ipynb",
        inputs=("endpoint_name",),
        outputs=(Output("sample_latency_ms", "float"),),
        timeout_seconds=900,
        warm_imports=(
            "databricks.sdk",
            "databricks.sdk.service.serving",
            "pandas",
            "llmops_nb.steps.query",
            "llmops_nb.chat.client",
            "llmops_nb.endpoints.ops",
        ),
    ),
    Step(
        "evaluate",
        "04_evaluate.ipynb",
        inputs=("endpoint_name", "model_name", "model_version"),
        outputs=(
            Output("eval_run_id"),
            Output("metrics", "dict"),
            Output("promoted", "bool"),
            Output("decision", "dict"),
            Output("winner"),
        ),
        timeout_seconds=3600,
        warm_imports=(
            "mlflow",
            "mlflow.genai",
            "mlflow.genai.scorers",
            "mlflow.store.tracking.sqlalchemy_store",
            "databricks.sdk",
            "databricks.sdk.service.serving",
            "pandas",
            "matplotlib.pyplot",
            "llmops_nb.steps.evaluate",
            "llmops_nb.evaluation.orchestrate",
            "llmops_nb.evaluation.scorers",
            "llmops_nb.chat.client",
        ),
    ),
)

#: Parameters every step takes from the runner (and the job, as bundle variables).
COMMON_PARAMETERS: tuple[str, ...] = ("config_path", "backend")
#: What every step notebook imports first (warmed in every kernel).
COMMON_IMPORTS: tuple[str, ...] = (
    "llmops_nb.chain.params",
    "llmops_nb.backends",
    "llmops_nb.config.project",
    "tqdm.auto",
    "IPython.display",
)

BY_NAME: dict[str, Step] = {s.name: s for s in CHAIN}


def step(name: str) -> Step:
    """The step called ``name`` (KeyError if there is none)."""
    return BY_NAME[name]


def producer(output: str, before: str | None = None) -> Step | None:
    """The step that publishes ``output`` (only among the steps before ``before``, if given)."""
    for s in CHAIN:
        if s.name == before:
            return None
        if output in s.output_names:
            return s
    return None


def output_type(name: str) -> str:
    """The type of a published output (``str`` for names no step publishes)."""
    return next((o.type for s in CHAIN for o in s.outputs if o.name == name), "str")


# --------------------------------------------------------------------------- the old tables, derived

#: Step names in chain order.
STEPS: tuple[str, ...] = tuple(s.name for s in CHAIN)
#: Step -> notebook file.
NOTEBOOKS: dict[str, str] = {s.name: s.notebook for s in CHAIN}
#: Step -> outputs of earlier steps it takes as parameters (steps with inputs only).
STEP_INPUTS: dict[str, tuple[str, ...]] = {s.name: s.inputs for s in CHAIN if s.inputs}
#: Step -> what it publishes.
STEP_OUTPUTS: dict[str, tuple[str, ...]] = {s.name: s.output_names for s in CHAIN}
#: Types of published outputs that are not strings.
OUTPUT_TYPES: dict[str, str] = {o.name: o.type for s in CHAIN for o in s.outputs if o.type != "str"}
#: Step -> seconds its job task may run.
TIMEOUTS: dict[str, int] = {s.name: s.timeout_seconds for s in CHAIN}
#: Step -> modules its kernel imports ahead.
PRELOAD: dict[str, tuple[str, ...]] = {s.name: s.warm_imports for s in CHAIN}
#: Steps that mostly wait and leave a core idle.
WAITING_STEPS: frozenset[str] = frozenset(s.name for s in CHAIN if s.mostly_waits)
