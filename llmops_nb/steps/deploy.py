"""The deploy step, and :func:`deploy_endpoint`, the one deploy path of the CLI, the notebook and
the widget form: the deploy lock, then :func:`llmops_nb.endpoints.apply.deploy`, with an optional
progress callback."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmops_nb.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

    from llmops_nb.backends import Backend
    from llmops_nb.config.endpoint import EndpointConfig
    from llmops_nb.config.project import ProjectConfig
    from llmops_nb.endpoints.apply import DeployResult
    from llmops_nb.endpoints.events import DeployEvent
    from llmops_nb.rollout.state import Store


def resolved_endpoint(project: ProjectConfig, backend: Backend, *, model_version: str | None = None) -> EndpointConfig:
    """The project's endpoint config with every registered entity's version filled in.

    ``model_version`` (published by the register step) pins the project's model (a ``uc``
    source: else its ``model.version``); other entities without a version get the latest
    registered version.
    """
    from llmops_nb.models import registry

    if project.endpoint is None:
        raise ConfigError("endpoint", None, "a deploy needs an endpoint section (this config only queries)")

    def resolve(entity_name: str) -> str:
        if entity_name == project.model.name and (model_version or project.model.version):
            return str(model_version or project.model.version)
        return registry.latest_version(entity_name, tracking_uri=backend.tracking_uri, registry_uri=backend.registry_uri)

    return project.endpoint.with_resolved_versions(resolve)


def deploy(
    project: ProjectConfig,
    backend: Backend,
    *,
    model_version: str | None = None,
    timeout: float = 1200,
    progress: bool = True,
    recreate: bool = False,
    log: Callable[[str], None] | None = print,
    on_progress: Callable[[DeployEvent], None] | None = None,
    strategy: str = "",
) -> dict[str, Any]:
    """Create or update the endpoint idempotently and wait until it is READY (``recreate``:
    delete and create it again when the config changes a field that cannot change in place).
    ``strategy`` (``replace`` or ``canary``; ``""``: the config's ``rollout.strategy``) is how the
    traffic moves to the new version (02_deploy's parameter).

    Each warning (what the workspace accepts but does not apply) and note (e.g. a recovered
    failed update) goes to ``log`` as one line, ``warning: ...`` / ``note: ...``; printed by
    default, so they show in the executed notebook (``log=None``: not printed). The returned
    outputs do not include them. ``on_progress`` gets each :class:`DeployEvent` (see
    :func:`deploy_endpoint`).

    A ``uc`` model source deploys with provisioned throughput (see
    :mod:`llmops_nb.endpoints.provisioned`) and on Databricks only: on the local backend it is
    one ConfigError line, as register says it, and nothing is written.
    """
    if strategy:
        from llmops_nb.config.project import with_rollout

        project = with_rollout(project, strategy=strategy)
    if project.model.source == "uc":
        from llmops_nb.models import sources

        sources.prepare(project.model, databricks=backend.kind == "databricks")  # the local refusal
    cfg = resolved_endpoint(project, backend, model_version=model_version)
    w = backend.workspace_client()
    if project.model.source == "uc":
        from llmops_nb.endpoints.provisioned import with_throughput

        cfg = with_throughput(cfg, project.model.name, w)
    if project.rollout.canary:
        return _canary(project, backend, cfg, w, timeout=timeout, progress=progress, log=log, on_progress=on_progress)
    from llmops_nb.rollout.stores import store_for

    store = store_for(backend, w, experiment=project.experiment)
    result = deploy_endpoint(
        w,
        cfg,
        backend=backend,
        timeout=timeout,
        progress=progress,
        recreate=recreate,
        on_progress=on_progress,
        before_writes=lambda current: _refuse_over_a_rollout(store, cfg.name, current),
    )
    for line in result.messages():
        if log is not None:
            log(line)
    if result.action != "unchanged":
        _keep_applied(store, cfg, "deploy (replace)", lambda line: _say(line, cfg.name, log, on_progress))
    return _outputs(result)


def _refuse_over_a_rollout(store: Store, endpoint: str, current: dict[str, Any] | None) -> None:
    """A replace deploy does not write over a canary rollout still in progress (running, or
    interrupted: its split is owned by its record, which a replace would leave in progress and a
    later canary deploy would roll back to): one line with the ways out, nothing written.
    ``current``: the endpoint as the deploy's plan read it (its tags name the rollout on Databricks)."""
    from llmops_nb.rollout.state import IN_PROGRESS

    if current is None:
        return
    record = store.latest(endpoint, current)
    if record is not None and record.state == IN_PROGRESS:
        how = "interrupted" if store.interrupted(record) else "running"
        raise ConfigError(
            "rollout.strategy",
            "replace",
            f"endpoint {endpoint} has a canary rollout in progress ({how}, at {record.percent}% to the challenger): "
            f"deploy with strategy canary to resume it (or roll it back for another config), or run "
            f"`llmops-nb rollback {endpoint}` first",
        )


def _outputs(result: DeployResult) -> dict[str, Any]:
    """What the deploy step publishes."""
    return {
        "endpoint_name": result.name,
        "endpoint_url": result.endpoint_url,
        "config_hash": result.config_hash,
        "deploy_action": result.action,
        "served_entities": list(result.served_entities),
    }


def _say(line: str, name: str, log: Callable[[str], None] | None, on_progress: Callable[[DeployEvent], None] | None) -> None:
    """One line after the deploy: to ``log`` and, as a ``message`` event, to ``on_progress`` (the CLI's stderr)."""
    from llmops_nb.endpoints.events import MESSAGE, DeployEvent

    if log is not None:
        log(line)
    if on_progress is not None:
        on_progress(DeployEvent(MESSAGE, name, message=line))


def _keep_applied(store: Store, cfg: EndpointConfig, source: str, log: Callable[[str], None] | None = None) -> None:
    """Keep ``cfg`` in the endpoint's applied-config history (what ``llmops-nb rollback`` restores):
    the backend's store (:func:`llmops_nb.rollout.stores.store_for`; on Databricks in MLflow).

    The endpoint is already updated when this runs: a store that cannot be written (MLflow
    tracking unreachable or refusing) is one ``warning:`` line saying what rollback will not know,
    not a failed deploy."""
    import time

    from llmops_nb.rollout.state import AppliedConfig

    applied = AppliedConfig(cfg.config_hash(), time.time(), source, cfg.to_databricks_body())
    try:
        store.record_applied(cfg.name, applied)
    except Exception as exc:  # noqa: BLE001 - MLflow's and the HTTP client's errors alike: said, not raised
        said = (str(exc).splitlines() or [""])[0][:200]
        if log is not None:
            log(
                f"warning: {cfg.name}: config {applied.hash} is deployed but not kept in the rollout history "
                f"({type(exc).__name__}: {said}); `llmops-nb rollback {cfg.name}` will not restore it"
            )


def _canary(
    project: ProjectConfig,
    backend: Backend,
    cfg: EndpointConfig,
    w: WorkspaceClient,
    *,
    timeout: float,
    progress: bool,
    log: Callable[[str], None] | None,
    on_progress: Callable[[DeployEvent], None] | None = None,
) -> dict[str, Any]:
    """The deploy in canary steps (:mod:`llmops_nb.rollout.canary`) under the deploy lock, reading
    live traffic from the local workspace's usage records or, on Databricks, from the endpoint's
    inference table (:mod:`llmops_nb.rollout.inference_table`: it must be enabled, with
    ``rollout.warehouse_id``; checked, with the table and its grants, before anything changes); a
    rolled-back rollout raises :class:`~llmops_nb.errors.RolledBack` with the reason (the job's
    task fails, its alerting sees it). Each line the rollout says goes to ``log`` and, as a
    ``message`` :class:`DeployEvent`, to ``on_progress``, which gets ``done`` at the end."""
    from llmops_nb.endpoints.events import DONE, DeployEvent
    from llmops_nb.errors import RolledBack
    from llmops_nb.rollout.canary import Canary, Tracking
    from llmops_nb.rollout.state import ROLLED_BACK
    from llmops_nb.rollout.stores import store_for
    from llmops_nb.rollout.traffic import TrafficReader, UsageRecords
    from llmops_nb.tracking.uris import resolve_experiment

    reader: TrafficReader
    where: str | None = None
    if backend.home is None:  # Databricks: the endpoint's inference table, through a SQL warehouse
        from llmops_nb.config.rollout import check_on_databricks
        from llmops_nb.endpoints.ops import get_endpoint
        from llmops_nb.rollout.inference_table import InferenceTableReader, table_for

        rc = project.rollout
        check_on_databricks(rc, cfg)
        table = table_for(cfg)
        assert table is not None, "check_on_databricks requires the inference table"
        databricks = InferenceTableReader(w, rc.warehouse_id.strip(), table, lag_s=rc.inference_table_lag_s)
        if get_endpoint(w, cfg.name) is not None:  # a first deploy creates it and reads nothing
            databricks.check(cfg.name)  # warehouse, table, grants: one line now, before anything changes
            where = databricks.describe()
        reader = databricks
    else:
        usage = cfg.ai_gateway.usage_tracking_config if cfg.ai_gateway else None
        if usage is None or not usage.enabled:
            raise ConfigError(
                "endpoint.ai_gateway.usage_tracking_config.enabled",
                usage.enabled if usage else None,
                "a canary rollout reads each served entity's usage records: set it to true",
            )
        reader = UsageRecords(backend.home)
    tracking = Tracking(
        backend.tracking_uri, backend.registry_uri, resolve_experiment(project.experiment, backend.tracking_uri, w)
    )

    def say(line: str) -> None:
        _say(line, cfg.name, log, on_progress)

    if where is not None:
        say(where)
    quality = None
    if project.rollout.quality is not None:  # the pairwise judge at the end of each step (rollout/quality.py)
        from llmops_nb.rollout.quality import QualityCheck

        rc = project.rollout
        checks = sum(1 for s in rc.steps if s < 100)
        quality = QualityCheck(w, project.rollout.quality, confidence=rc.confidence, checks=checks, home=backend.home,
                               warehouse_id=rc.warehouse_id.strip())  # fmt: skip
    canary = Canary(
        w,
        cfg,
        project.rollout,
        store=store_for(backend, w, experiment=tracking.experiment),
        reader=reader,
        tracking=tracking,
        timeout=timeout,
        progress=progress,
        log=say,
        quality=quality,
    )
    with deploy_lock(backend, cfg.name):
        outcome = canary.deploy()
    if outcome.state == ROLLED_BACK:
        raise RolledBack(outcome.reason)
    result = outcome.result
    for line in result.messages():
        say(line)
    if on_progress is not None:
        on_progress(DeployEvent(DONE, cfg.name, result.ready, result.config_update, result.action))
    return _outputs(result)


def deploy_endpoint(
    w: WorkspaceClient,
    cfg: EndpointConfig,
    *,
    backend: Backend | None = None,
    timeout: float = 1200,
    poll_interval: float = 1.0,
    progress: bool = False,
    recreate: bool = False,
    on_progress: Callable[[DeployEvent], None] | None = None,
    before_writes: Callable[[dict[str, Any] | None], None] | None = None,
) -> DeployResult:
    """The one deploy path: under the deploy lock of ``backend`` (see :func:`deploy_lock`),
    :func:`llmops_nb.endpoints.deploy` with every version of ``cfg`` resolved, waiting for READY
    (``before_writes``: see there).

    ``on_progress`` gets a :class:`DeployEvent` when the writes are made (``written``, with the
    action), at each state poll (``polled``), for each warning/note line (``message``) and at
    the end (``done``, with the final state); ``progress`` shows a tqdm bar while waiting.
    """
    from llmops_nb.endpoints.apply import deploy
    from llmops_nb.endpoints.events import DeployEvent

    with deploy_lock(backend, cfg.name):
        result = deploy(
            w,
            cfg,
            timeout=timeout,
            poll_interval=poll_interval,
            progress=progress,
            recreate=recreate,
            on_event=on_progress,
            before_writes=before_writes,
        )
    if on_progress is not None:
        for line in result.messages():
            on_progress(DeployEvent("message", cfg.name, result.ready, result.config_update, result.action, line))
        on_progress(DeployEvent("done", cfg.name, result.ready, result.config_update, result.action))
    return result


def deploy_lock(backend: Backend | None, name: str) -> Any:
    """Locally, one deploy of an endpoint at a time (a file lock); on Databricks, the API's 409s
    are waited out and retried by :func:`llmops_nb.endpoints.deploy` instead."""
    import contextlib

    if backend is None or backend.kind != "local" or backend.home is None:
        return contextlib.nullcontext()
    from filelock import FileLock

    from llmops_nb.util.paths import private_dir

    return FileLock(str(private_dir(backend.home / "locks") / f"deploy-{name}.lock"), mode=0o600)


_deploy_lock = deploy_lock  # the name tests/widgets/test_deploy_form.py imports
