"""``llmops-nb rollout status ENDPOINT`` and ``llmops-nb rollback ENDPOINT`` (issue 33), reading the
backend's rollout store (:mod:`llmops_nb.rollout.stores`): files under ``$LLMOPS_HOME`` locally, the
endpoint's tag and MLflow on Databricks, so any machine sees and undoes a rollout."""

from __future__ import annotations

import math

import click

from llmops_nb.cli.common import ErrorGroup, backend_of, backend_option, config_option, echo_json, project_and_kind


@click.group(cls=ErrorGroup)
def rollout() -> None:
    """Canary rollouts: where one stands."""


def _pct(value: object) -> str:
    return "n/a" if not isinstance(value, (int, float)) or math.isnan(value) else f"{100 * value:.1f}%"


@rollout.command("status")
@click.argument("endpoint")
@click.option("--json", "as_json", is_flag=True, help='Print {"state", "step", "reason", "entities": [...]} as JSON.')
@config_option
@backend_option
def rollout_status(endpoint: str, as_json: bool, config_path, backend: str | None) -> None:  # noqa: ANN001
    """The latest rollout of ENDPOINT: in_progress, promoted or rolled_back, its step and figures."""
    from llmops_nb.errors import EndpointError
    from llmops_nb.rollout.stores import store_of_kind

    project, kind = project_and_kind(config_path, backend)
    store = store_of_kind(kind, experiment=project.experiment)
    record = store.latest(endpoint)
    if record is None:
        raise EndpointError(f"endpoint {endpoint}: no rollout recorded")
    status = record.status()
    if record.state == "in_progress":
        status["interrupted"] = store.interrupted(record)
    if as_json:
        echo_json(status)
        return
    click.echo(
        f"{endpoint}: {status['state']} at step {status['step']}/{len(record.steps)} ({status['percent']}% to "
        f"{record.challenger}; champion {record.champion})"
    )
    for e in status["entities"]:
        rate = e["error_rate"]
        click.echo(
            f"  {e['role']} {e['name']}: {e['requests']} requests, {e['errors']} errors ({_pct(rate['value'])}, "
            f"CI {_pct(rate['ci_low'])}-{_pct(rate['ci_high'])}), p95 {e['latency_p95_ms']['value'] or float('nan'):.0f} ms"
        )
    if status.get("interrupted"):
        click.echo("  interrupted: no deploy of it is running; the next deploy resumes it (same config) or rolls it back")
    if status["reason"]:
        click.echo(f"  reason: {status['reason']}")


@click.command("rollback")
@click.argument("endpoint")
@config_option
@backend_option
@click.option("--timeout", type=float, default=1200, show_default=True, help="Seconds to wait for READY.")
def rollback(endpoint: str, config_path, backend: str | None, timeout: float) -> None:  # noqa: ANN001
    """Restore ENDPOINT's previous config: a rollout in progress goes back to its champion, else the
    config applied before the latest one (from the applied-config history)."""
    from filelock import BaseFileLock, Timeout

    from llmops_nb.errors import EndpointError
    from llmops_nb.rollout.canary import rollback as do_rollback
    from llmops_nb.rollout.stores import store_for
    from llmops_nb.steps.deploy import deploy_lock

    project, kind = project_and_kind(config_path, backend)
    target = backend_of(kind)
    w = target.workspace_client()
    lock = deploy_lock(target, endpoint)
    try:  # a deploy (a rollout) of this endpoint running now owns it: refuse rather than race it
        guard = lock.acquire(timeout=0) if isinstance(lock, BaseFileLock) else lock
    except Timeout:
        raise EndpointError(f"endpoint {endpoint}: a deploy of it is running now (its lock is held); stop it first") from None
    with guard:
        store = store_for(target, w, experiment=project.experiment)
        do_rollback(w, endpoint, store=store, timeout=timeout, log=click.echo)
