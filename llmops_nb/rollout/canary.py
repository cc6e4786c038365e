"""Canary steps on a serving endpoint: traffic moved by ``traffic_config`` updates, each step
watched on live traffic and judged (:mod:`.judge`), then advanced, held, or rolled back.

Databricks ground truth: ``PUT /api/2.0/serving-endpoints/{name}/config`` (databricks-sdk
``ServingEndpointsAPI.update_config``: "Updates any combination of the serving endpoint's served
entities, the compute configuration of those served entities, and the endpoint's traffic
config") replaces the served entities and routes whole, so a step sends both entities and both
routes (``Route.traffic_percentage``: "an integer between 0 and 100 inclusive"), and the last
step (100) sends the challenger alone, which removes the champion; a served entity's name
"defaults to entity_name-entity_version" (``ServedEntityInput.name``), and with more than one
entity "the backend requires an explicit traffic_config" (CLI ``libs/testserver/serving_endpoints.go``,
``defaultTrafficConfig``). An update while another is in progress is a 409: every write goes
through :func:`llmops_nb.endpoints.apply.deploy`, which waits it out and waits for READY.

The sequence of config updates for ``steps: [10, 50, 100]`` and a champion A, challenger B:
``{A: 90, B: 10}``, ``{A: 50, B: 50}``, ``{B}`` (promoted); a rollback at any step writes the
champion's previous config back (``{A}``: B removed, aliases untouched). Every config applied is
kept (the backend's store, :mod:`.stores`: local files, or on Databricks MLflow with the endpoint's
tag naming the rollout's run, so another machine finds it) and logged on the rollout's MLflow run
with its hash. A rollout found in progress when a deploy starts (the notebook killed at step 2) is resumed at its step when the
deploy brings the same config, and rolled back first otherwise: no split is left unowned.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from llmops_nb.errors import EndpointError, LlmopsError
from llmops_nb.rollout import judge as judging
from llmops_nb.rollout.state import IN_PROGRESS, PROMOTED, ROLLED_BACK, AppliedConfig, RolloutRecord, Store

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

    from llmops_nb.config.endpoint import EndpointConfig
    from llmops_nb.config.rollout import RolloutConfig
    from llmops_nb.endpoints.apply import DeployResult
    from llmops_nb.rollout.quality import QualityCheck
    from llmops_nb.rollout.traffic import Call, TrafficReader


@dataclass(frozen=True)
class Tracking:
    """Where the rollout's MLflow run goes."""

    tracking_uri: str
    registry_uri: str
    experiment: str


@dataclass(frozen=True)
class RolloutOutcome:
    """How a deploy with ``strategy: canary`` ended: ``state`` promoted or rolled_back (or
    ``unchanged``/``replaced``/``created`` when there was nothing to canary), the reason, the
    record and the last deploy result."""

    state: str
    endpoint: str
    reason: str
    result: DeployResult
    record: RolloutRecord | None = None


class _Run:
    """The rollout's MLflow run (a no-op without tracking)."""

    def __init__(self, tracking: Tracking | None, run_id: str | None, tags: dict[str, str]) -> None:
        self.client: Any = None
        self.run_id = run_id
        self.step = 0
        if tracking is None:
            return
        from llmops_nb.tracking.client import mlflow_client
        from llmops_nb.tracking.uris import experiment_id, tracking_setup

        setup = tracking_setup(tracking.tracking_uri, tracking.registry_uri)
        self.client = mlflow_client(setup.tracking_uri, setup.registry_uri)
        if run_id is None:
            exp = experiment_id(tracking.experiment, setup.tracking_uri, setup.artifact_root)
            self.run_id = self.client.create_run(exp, tags=tags, run_name=tags.get("mlflow.runName")).info.run_id
        else:
            self.client.update_run(run_id, status="RUNNING")
            self.step = len(self.client.get_metric_history(run_id, "challenger_requests"))

    def params(self, values: dict[str, Any]) -> None:
        if self.client is not None:
            for key, value in values.items():
                self.client.log_param(self.run_id, key, value)

    def metrics(self, values: dict[str, float]) -> None:
        if self.client is None:
            return
        now = int(time.time() * 1000)
        for key, value in values.items():
            if value is not None and math.isfinite(value):
                self.client.log_metric(self.run_id, key, float(value), timestamp=now, step=self.step)
        self.step += 1

    def artifact(self, value: dict[str, Any], name: str) -> None:
        if self.client is not None:
            self.client.log_dict(self.run_id, value, name)

    def figure(self, fig: Any, name: str) -> None:
        if self.client is not None:
            self.client.log_figure(self.run_id, fig, name)

    def end(self, state: str, reason: str) -> None:
        if self.client is not None:
            self.client.set_tag(self.run_id, "rollout_state", state)
            self.client.set_tag(self.run_id, "rollout_reason", reason[:5000])
            self.client.set_terminated(self.run_id, "FAILED" if state == ROLLED_BACK else "FINISHED")


def served_name(entity: dict[str, Any]) -> str:
    """A served entity's name: its own, else ``entity_name-entity_version`` (``ServedEntityInput.name``)."""
    if entity.get("name"):
        return str(entity["name"])
    return f"{entity.get('entity_name')}-{entity.get('entity_version')}"


def _entity_input(entity: dict[str, Any]) -> dict[str, Any]:
    """A served entity of a GET view as an input (``ServedEntityInput``'s fields, named)."""
    from llmops_nb.endpoints.normalize import input_fields

    keep = input_fields("ServedEntityInput")
    return {**{k: v for k, v in entity.items() if k in keep and v is not None}, "name": served_name(entity)}


def step_config(cfg: EndpointConfig, champion: dict[str, Any], percent: int) -> EndpointConfig:
    """``cfg`` with the champion entity beside its challenger, ``percent`` of traffic to the challenger."""
    from llmops_nb.config.endpoint import EndpointConfig

    body = cfg.to_databricks_body()
    challenger = {**body["config"]["served_entities"][0]}
    challenger["name"] = served_name(challenger)
    body["config"]["served_entities"] = [champion, challenger]
    body["config"]["traffic_config"] = {
        "routes": [
            {"served_entity_name": champion["name"], "traffic_percentage": 100 - percent},
            {"served_entity_name": challenger["name"], "traffic_percentage": percent},
        ]
    }
    return EndpointConfig.from_databricks_body(body)


class Canary:
    """One deploy of ``cfg`` in canary steps on workspace ``w`` (see the module docstring)."""

    def __init__(
        self,
        w: WorkspaceClient,
        cfg: EndpointConfig,
        rollout: RolloutConfig,
        *,
        store: Store,
        reader: TrafficReader,
        tracking: Tracking | None = None,
        timeout: float = 1200,
        poll_interval: float = 1.0,
        progress: bool = True,
        log: Callable[[str], None] | None = print,
        quality: QualityCheck | None = None,
    ) -> None:
        self.w, self.cfg, self.rc = w, cfg, rollout
        self.quality = quality  # rollout.quality: the pairwise judge at the end of each step (:mod:`.quality`)
        self.store, self.reader, self.tracking = store, reader, tracking
        self.timeout, self.poll_interval, self.progress = timeout, poll_interval, progress
        self.say = log or (lambda line: None)
        self.run: _Run | None = None

    # ------------------------------------------------------------------ writes

    def apply(self, cfg: EndpointConfig, source: str, record: RolloutRecord | None = None) -> DeployResult:
        """Deploy ``cfg`` (waiting for READY) and keep it in the history and on the run."""
        from llmops_nb.endpoints.apply import deploy

        def beat(_event: object) -> None:  # a live rollout's record stays fresh while the update waits for READY
            if record is not None and record.state == IN_PROGRESS and time.time() - record.updated >= record.interval_s:
                self.store.save(record)

        result = deploy(self.w, cfg, timeout=self.timeout, poll_interval=self.poll_interval, progress=False, on_event=beat)
        body = cfg.to_databricks_body()
        applied = AppliedConfig(cfg.config_hash(), time.time(), source, body, record.id if record else None)
        if result.action != "unchanged" or not self.store.applied(cfg.name):
            self.store.record_applied(cfg.name, applied)
        if self.run is not None:
            index = len(self.store.applied(cfg.name))
            self.run.artifact(
                {"hash": applied.hash, "source": source, "body": body}, f"applied_configs/{index:03d}-{applied.hash}.json"
            )
        return result

    # ------------------------------------------------------------------ entry

    def deploy(self) -> RolloutOutcome:
        """Create, resume, or run a new rollout; returns how it ended."""
        from llmops_nb.endpoints.ops import get_endpoint

        name = self.cfg.name
        if len(self.cfg.served_entities) != 1:
            raise EndpointError(
                f"endpoint {name}: a canary rollout brings one served entity (the config has {len(self.cfg.served_entities)})"
            )
        if self.quality is not None:
            self.quality.preflight(name)  # the judge endpoint exists: one line now, before anything changes
        record = self.store.latest(name)
        current = get_endpoint(self.w, name)
        if record is not None and record.state == IN_PROGRESS:
            if record.challenger_hash == self.cfg.config_hash() and current is not None:
                self.say(
                    f"{name}: resuming rollout {record.id} of {record.challenger} at step {record.step + 1} ({record.percent}%)"
                )
                return self._steps(record)
            why = f"superseded by a new deploy (config {self.cfg.config_hash()})"
            self._rollback(record, why)
            current = get_endpoint(self.w, name)
        if current is None or not (current.get("config") or {}).get("served_entities"):
            result = self.apply(self.cfg, "first deploy")
            reason = f"first deploy of {name}: no champion serving, created as replace does"
            self.say(reason)
            return RolloutOutcome("created", name, reason, result)
        serving = (current.get("config") or {}).get("served_entities") or []
        challenger = served_name(self.cfg.to_databricks_body()["config"]["served_entities"][0])
        champion = self._champion(current, serving)
        if champion["name"] == challenger:
            result = self.apply(self.cfg, "deploy")
            reason = f"{name}: {challenger} already serves; config {result.action} as replace does"
            self.say(reason)
            return RolloutOutcome("unchanged" if result.action == "unchanged" else "replaced", name, reason, result)
        record = RolloutRecord(
            id=uuid.uuid4().hex[:12],
            endpoint=name,
            state=IN_PROGRESS,
            steps=list(self.rc.steps),
            step=0,
            champion=champion["name"],
            challenger=challenger,
            champion_config=self._champion_config(champion).to_databricks_body(),
            challenger_config=self.cfg.to_databricks_body(),
            challenger_hash=self.cfg.config_hash(),
            interval_s=self.rc.interval_s,
        )
        self.store.save(record)
        return self._steps(record)

    def _champion(self, current: dict[str, Any], serving: list[dict[str, Any]]) -> dict[str, Any]:
        """The entity serving now: the only one, or the one route taking all traffic."""
        if len(serving) == 1:
            return _entity_input(serving[0])
        routes = ((current.get("config") or {}).get("traffic_config") or {}).get("routes") or []
        full = [r.get("served_entity_name") for r in routes if r.get("traffic_percentage") == 100]
        found = [e for e in serving if served_name(e) in full]
        if len(found) == 1:
            return _entity_input(found[0])
        split = ", ".join(f"{r.get('served_entity_name')} {r.get('traffic_percentage')}%" for r in routes)
        raise EndpointError(
            f"endpoint {self.cfg.name}: traffic is split ({split}) and no rollout of this project owns the split; "
            "deploy with rollout.strategy replace, or `llmops-nb rollback` it"
        )

    def _champion_config(self, champion: dict[str, Any]) -> EndpointConfig:
        """What a rollback writes: the last config applied with the champion alone, else the new
        config with the champion entity in place of the challenger."""
        from llmops_nb.config.endpoint import EndpointConfig

        for applied in reversed(self.store.applied(self.cfg.name)):
            entities = (applied.body.get("config") or {}).get("served_entities") or []
            if [served_name(e) for e in entities] == [champion["name"]]:
                return EndpointConfig.from_databricks_body(applied.body)
        body = self.cfg.to_databricks_body()
        body["config"]["served_entities"] = [champion]
        body["config"].pop("traffic_config", None)
        return EndpointConfig.from_databricks_body(body)

    # ------------------------------------------------------------------ steps

    def _steps(self, record: RolloutRecord) -> RolloutOutcome:
        tags = {"mlflow.runName": f"rollout {record.endpoint} {record.challenger}", "endpoint": record.endpoint}
        self.run = _Run(self.tracking, record.run_id, tags)
        if record.run_id is None:
            record.run_id = self.run.run_id
            self.run.params(
                {
                    "endpoint": record.endpoint,
                    "champion": record.champion,
                    "challenger": record.challenger,
                    "config_hash": record.challenger_hash,
                    **{k: v for k, v in self.rc.model_dump().items() if k != "quality"},
                    **({f"quality_{k}": v for k, v in self.rc.quality.model_dump().items()} if self.rc.quality else {}),
                }
            )
            self.store.save(record)
        champion = record.champion_config["config"]["served_entities"][0] if record.champion_config else None
        result: DeployResult | None = None
        while True:
            percent = record.percent
            if percent == 100 or champion is None:
                result = self.apply(self.cfg, f"rollout {record.id}: promote", record)
                reason = f"promoted {record.challenger} on {record.endpoint} after steps {record.steps}"
                return self._end(record, PROMOTED, reason, result)
            result = self.apply(step_config(self.cfg, champion, percent), f"rollout {record.id}: step {percent}%", record)
            since = time.time()
            verdict = self._watch(record)
            if verdict.action == judging.ROLLBACK:
                return self._rollback(record, f"step {record.step + 1} ({percent}%): {verdict.reason}")
            worse = self._quality(record, since)
            if worse is not None:
                return self._rollback(record, f"step {record.step + 1} ({percent}%): {worse}")
            record.step += 1
            self.store.save(record)

    def _watch(self, record: RolloutRecord) -> judging.Verdict:
        """Read the step's traffic every ``interval_s`` until the judge decides."""
        from scipy import stats  # noqa: F401 - imported before the watch starts, not at its first read (~2 s)
        from tqdm.auto import tqdm

        rc, start = self.rc, time.time()
        desc = f"step {record.step + 1}/{len(record.steps)}: {record.percent}% to {record.challenger}"
        with tqdm(total=rc.min_requests, desc=desc, unit="req", disable=not self.progress) as bar:
            tick = 0
            while True:  # read on the next tick (start + k * interval_s): a read's own time does not add up
                tick = max(tick + 1, math.ceil((time.time() - start) / rc.interval_s))
                time.sleep(max(0.0, start + tick * rc.interval_s - time.time()))
                try:
                    calls = self.reader.calls(record.endpoint, start)
                except LlmopsError as exc:  # nothing to judge on: the champion takes the traffic back
                    empty = self._judge(record, [], waited_s=0.0, max_wait_s=math.inf)
                    verdict = replace(empty, action=judging.ROLLBACK, reason=f"live traffic not readable: {exc}")
                    self._observe(record, verdict)
                    return verdict
                # the step's window and its recent windows alone (judge.watch: a challenger that
                # starts failing mid-step is not hidden by the step's healthy start)
                verdict = self._judge(record, calls, waited_s=time.time() - start, max_wait_s=rc.max_wait_s, read=tick,
                                      start=start)  # fmt: skip
                self._observe(record, verdict)
                ch, cp = verdict.challenger, verdict.champion
                bar.n = min(ch.requests, rc.min_requests)
                bar.set_postfix_str(f"errors {ch.errors}/{ch.requests} vs {cp.errors}/{cp.requests}, {verdict.action}")
                bar.refresh()
                if verdict.action != judging.WAIT:
                    return verdict

    def _quality(self, record: RolloutRecord, since: float) -> str | None:
        """The step's quality check, if configured: its figures said and logged; the reason when
        the challenger lost significantly (or the check could not run), else None."""
        if self.quality is None:
            return None
        try:
            found = self.quality.check(record.endpoint, str(record.champion), record.challenger, since,
                                       until=since + self.rc.max_wait_s, interval_s=self.rc.interval_s)  # fmt: skip
        except LlmopsError as exc:  # nothing to judge on: the champion takes the traffic back
            return f"quality check not possible: {exc}"
        if self.run is not None:
            self.run.metrics(found.metrics(record.percent))
        if found.rollback:
            return found.line()
        self.say(f"step {record.step + 1} ({record.percent}%): {found.line()}")
        return None

    def _judge(
        self, record: RolloutRecord, calls: list[Call], *, waited_s: float, max_wait_s: float, read: int = 1,
        start: float | None = None,
    ) -> judging.Verdict:  # fmt: skip
        rc = self.rc
        return judging.watch(
            calls,
            read=read,
            interval_s=rc.interval_s,
            start=start,  # the recent windows on the step's read grid
            challenger=record.challenger,
            champion=str(record.champion),
            min_requests=rc.min_requests,
            max_error_rate=rc.max_error_rate,
            max_latency_p95_ratio=rc.max_latency_p95_ratio,
            confidence=rc.confidence,
            waited_s=waited_s,
            max_wait_s=max_wait_s,
            looks=judging.looks(rc),
            steps=judging.watched_steps(rc),
            share=record.percent / 100,  # the routed share: the champion test's null
        )

    def _observe(self, record: RolloutRecord, verdict: judging.Verdict) -> None:
        ch, cp = verdict.challenger, verdict.champion
        total = ch.requests + cp.requests
        record.entities = [ch.as_dict(), cp.as_dict()]
        record.points.append(
            {
                "at": time.time(),
                "step": record.step + 1,
                "percent": record.percent,
                "action": verdict.action,
                "entities": {
                    e.name: {"requests": e.requests, "errors": e.errors, "share": e.requests / total if total else math.nan}
                    for e in (ch, cp)
                },
            }
        )
        record.reason = verdict.reason
        self.store.save(record)
        if self.run is not None:
            self.run.metrics(
                {
                    "step_percent": record.percent,
                    "challenger_requests": ch.requests,
                    "challenger_error_rate": ch.error_rate.value,
                    "challenger_error_rate_ci_low": ch.error_rate.ci_low,
                    "challenger_error_rate_ci_high": ch.error_rate.ci_high,
                    "champion_requests": cp.requests,
                    "champion_error_rate": cp.error_rate.value,
                    "error_rate_diff": verdict.diff[0],
                    "error_rate_diff_ci_low": verdict.diff[1],
                    "error_rate_diff_ci_high": verdict.diff[2],
                    "challenger_latency_p95_ms": ch.latency_p95_ms.value,
                    "champion_latency_p95_ms": cp.latency_p95_ms.value,
                }
            )

    def _rollback(self, record: RolloutRecord, reason: str) -> RolloutOutcome:
        """Traffic back to 100% champion (its previous config), the challenger removed."""
        from llmops_nb.config.endpoint import EndpointConfig

        if record.champion_config is None:
            raise EndpointError(f"endpoint {record.endpoint}: rollout {record.id} has no champion config to roll back to")
        if self.run is None:
            self.run = _Run(self.tracking, record.run_id, {})
        result = self.apply(EndpointConfig.from_databricks_body(record.champion_config), f"rollout {record.id}: rollback", record)
        return self._end(record, ROLLED_BACK, reason, result)

    def _end(self, record: RolloutRecord, state: str, reason: str, result: DeployResult) -> RolloutOutcome:
        record.state = state  # type: ignore[assignment]
        record.reason = reason
        self.store.save(record)
        line = f"rolled back {record.endpoint} to {record.champion}: {reason}" if state == ROLLED_BACK else reason
        self.say(line)
        if self.run is not None and self.run.client is not None:
            self.run.artifact(record.status() | {"points": record.points}, "rollout.json")
            if record.points:
                from llmops_nb.rollout.plot import plot_rollout

                self.run.figure(plot_rollout(record), "rollout.png")
            self.run.end(state, reason)
        return RolloutOutcome(state, record.endpoint, line, result, record)


def rollback(
    w: WorkspaceClient,
    endpoint: str,
    *,
    store: Store,
    tracking: Tracking | None = None,
    timeout: float = 1200,
    poll_interval: float = 1.0,
    log: Callable[[str], None] | None = print,
) -> RolloutOutcome:
    """``llmops-nb rollback``: a rollout in progress is rolled back to its champion; otherwise the
    config applied before the latest one is applied again."""
    from llmops_nb.config.endpoint import EndpointConfig
    from llmops_nb.config.rollout import RolloutConfig

    record = store.latest(endpoint)
    in_progress = record is not None and record.state == IN_PROGRESS
    history = store.applied(endpoint)
    previous = _previous(record, history)
    if record is not None and in_progress:
        body = record.challenger_config
    elif previous is not None:
        body = previous.body
    else:
        raise EndpointError(f"endpoint {endpoint}: no previous config recorded to roll back to ({len(history)} applied)")
    cfg = EndpointConfig.from_databricks_body(body)
    canary = Canary(w, cfg, RolloutConfig(), store=store, reader=_NoTraffic(), tracking=tracking, timeout=timeout,
                    poll_interval=poll_interval, progress=False, log=log)  # fmt: skip
    if record is not None and in_progress:
        return canary._rollback(record, "rolled back by hand (llmops-nb rollback)")
    assert previous is not None
    result = canary.apply(cfg, f"rollback to {previous.hash}")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(previous.at))
    line = f"rolled back {endpoint} to config {previous.hash} (applied {when} UTC)"
    canary.say(line)
    if record is not None and record.state == PROMOTED and history and record.challenger_hash == history[-1].hash:
        record.state, record.reason = ROLLED_BACK, line
        store.save(record)
    return RolloutOutcome(ROLLED_BACK, endpoint, line, result, record)


def _previous(record: RolloutRecord | None, history: list[AppliedConfig]) -> AppliedConfig | None:
    """The config before the latest deploy: a promoted rollout's champion config, else the last
    applied config with another hash that is not a rollout's split step."""
    from llmops_nb.config.endpoint import EndpointConfig

    latest = history[-1].hash if history else None
    if record is not None and record.state == PROMOTED and record.challenger_hash == latest and record.champion_config:
        champion = EndpointConfig.from_databricks_body(record.champion_config).config_hash()
        found = next((a for a in reversed(history) if a.hash == champion), None)
        return found or AppliedConfig(champion, record.started, f"rollout {record.id}: champion", record.champion_config)
    return next((a for a in reversed(history) if a.hash != latest and ": step " not in a.source), None)


class _NoTraffic:
    def calls(self, endpoint: str, since: float) -> list[Any]:
        return []
