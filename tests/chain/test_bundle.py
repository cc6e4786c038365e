"""The Asset Bundle: the committed databricks.yml is the rendering, it validates, broken ones are caught."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from llmops_nb.chain import bundle
from llmops_nb.chain.table import NOTEBOOKS, STEP_INPUTS, STEP_OUTPUTS, STEPS
from llmops_nb.cli.main import main
from llmops_nb.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "databricks.yml"


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    return bundle.render(CONFIG, ROOT)


def _tasks(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["task_key"]: t for t in data["resources"]["jobs"][bundle.JOB_KEY]["tasks"]}


def test_the_committed_bundle_is_the_rendering_of_the_databricks_config() -> None:
    committed = (ROOT / bundle.BUNDLE_FILE).read_text()
    assert committed == bundle.render_yaml(CONFIG, ROOT, config_label="configs/databricks.yml"), (
        "databricks.yml drifted: run `llmops-nb bundle render --out databricks.yml`"
    )


def test_the_rendered_bundle_validates(rendered: dict[str, Any]) -> None:
    assert bundle.problems(rendered, ROOT) == []
    assert bundle.validate(ROOT / bundle.BUNDLE_FILE)["bundle"]["name"] == "llmops-nb"


def test_the_job_runs_the_chain_as_the_local_runner_does(rendered: dict[str, Any]) -> None:
    tasks = _tasks(rendered)
    assert bundle.task_order(list(tasks.values())) == list(STEPS)
    for step, task in tasks.items():
        nb = task["notebook_task"]
        assert Path(nb["notebook_path"]).name == NOTEBOOKS[step]
        assert nb["base_parameters"]["config_path"] == "${var.config_path}"
        assert task["timeout_seconds"] > 0
        for key in STEP_INPUTS.get(step, ()):
            ref = bundle.TASK_VALUE_REF.fullmatch(nb["base_parameters"][key])
            assert ref is not None and key in STEP_OUTPUTS[ref.group(1)] and ref.group(2) == key
    assert tasks["deploy"]["max_retries"] >= 1
    assert rendered["variables"]["config_path"]["default"] == "${workspace.file_path}/configs/databricks.yml"


def test_each_target_resolves_to_job_settings_with_the_schedule_paused_in_dev(rendered: dict[str, Any]) -> None:
    from databricks.sdk.service.jobs import JobSettings, PauseStatus

    dev = JobSettings.from_dict(bundle.resolve(rendered, "dev")[bundle.JOB_KEY])
    prod = JobSettings.from_dict(
        bundle.resolve(rendered, "prod", overrides={"failure_emails": ["ops@example.com"]})[bundle.JOB_KEY]
    )
    assert dev.schedule.pause_status == PauseStatus.PAUSED and prod.schedule.pause_status == PauseStatus.UNPAUSED
    assert prod.email_notifications.on_failure == ["ops@example.com"]
    assert dev.tasks[0].notebook_task.base_parameters["config_path"].endswith("/files/configs/databricks.yml")
    assert dev.tasks[1].notebook_task.base_parameters["model_version"] == "{{tasks.register.values.model_version}}"


def _set(data: dict[str, Any], task: str, path: str, value: Any) -> None:
    node: Any = _tasks(data)[task]
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        del node[last]
    else:
        node[last] = value


BROKEN = [
    (
        "missing notebook",
        "register",
        "notebook_task.notebook_path",
        "./notebooks/05_train.ipynb",
        "tasks[register].notebook_task.notebook_path: './notebooks/05_train.ipynb' is not allowed; no such notebook",
    ),
    (
        "misspelled parameter",
        "deploy",
        "notebook_task.base_parameters.model_verison",
        "1",
        "tasks[deploy].notebook_task.base_parameters.model_verison: '1' is not allowed; not a parameter of 02_deploy.ipynb; expected one of config_path",
    ),
    (
        "unpublished task value",
        "serve",
        "notebook_task.base_parameters.endpoint_name",
        "{{tasks.register.values.endpoint_name}}",
        "task register (01_register.ipynb) publishes only model_name, model_version, model_uri",
    ),
    (
        "value from a later task",
        "serve",
        "notebook_task.base_parameters.endpoint_name",
        "{{tasks.evaluate.values.eval_run_id}}",
        "task evaluate is not upstream of serve; add it to depends_on",
    ),
    (
        "cycle",
        "register",
        "depends_on",
        [{"task_key": "evaluate"}],
        "depends_on: 'register -> evaluate -> serve -> deploy -> register' is not allowed; depends_on must not form a cycle",
    ),
    (
        "unknown dependency",
        "serve",
        "depends_on",
        [{"task_key": "deploi"}],
        "tasks[serve].depends_on: 'deploi' is not allowed; expected one of the job's tasks",
    ),
    (
        "bad literal type",
        "deploy",
        "notebook_task.base_parameters.timeout_seconds",
        "soon",
        "in target dev it is 'soon', but 02_deploy.ipynb expects int",
    ),
    (
        "task value of another type",
        "evaluate",
        "notebook_task.base_parameters.max_rows",
        "{{tasks.serve.values.sample_latency_ms}}",
        "04_evaluate.ipynb expects int but serve.sample_latency_ms is float",
    ),
    (
        "unquoted widget value",
        "deploy",
        "notebook_task.base_parameters.timeout_seconds",
        1200,
        "widget values are strings; quote it",
    ),
    (
        "undefined variable",
        "serve",
        "notebook_task.base_parameters.config_path",
        "${var.confg_path}",
        "${var.confg_path} is not defined; bundle variables: config_path",
    ),
    (
        "input not wired",
        "deploy",
        "notebook_task.base_parameters.model_version",
        None,
        "the local chain passes it from register: expected '{{tasks.register.values.model_version}}'",
    ),
    (
        "a secret as a parameter",
        "serve",
        "notebook_task.base_parameters.config_path",
        "{{secrets/llmops/openai_api_key}}",
        "base_parameters.config_path: '***' is not allowed; secrets are never parameters",
    ),
    (
        "config not synced",
        "register",
        "notebook_task.base_parameters.config_path",
        "${workspace.file_path}/configs/prod.yml",
        "/configs/prod.yml, which is not in the bundle folder",
    ),
    (
        "not a Jobs API field",
        "serve",
        "timeout_secs",
        60,
        "tasks[serve].timeout_secs: 60 is not allowed; not a field of the Jobs API",
    ),
]


@pytest.mark.parametrize(("what", "task", "path", "value", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_bundle_is_caught_with_a_clear_message(
    rendered: dict[str, Any], what: str, task: str, path: str, value: Any, message: str
) -> None:
    broken = copy.deepcopy(rendered)
    _set(broken, task, path, value)
    found = [str(p) for p in bundle.problems(broken, ROOT)]
    assert found, what
    assert any(message in p for p in found), found
    assert all("\n" not in p for p in found)


def test_a_task_without_a_key_is_one_problem_and_no_reference_target(rendered: dict[str, Any]) -> None:
    broken = copy.deepcopy(rendered)
    tasks = _tasks(broken)
    del tasks["register"]["task_key"]  # was a TypeError: the list of tasks joined a None key
    tasks["deploy"]["notebook_task"]["base_parameters"]["model_version"] = "{{tasks.regster.values.model_version}}"
    found = [str(p) for p in bundle.problems(broken, ROOT)]
    assert any("every task needs a task_key" in p for p in found), found
    assert any("no task regster in this job; expected one of deploy, serve, evaluate" in p for p in found), found


def test_validate_exits_2_with_one_line_naming_the_problem(rendered: dict[str, Any], tmp_path: Path) -> None:
    broken = copy.deepcopy(rendered)
    params = _tasks(broken)["deploy"]["notebook_task"]["base_parameters"]
    params["model_verison"] = params.pop("model_version")  # a typo: the deploy step no longer gets the version
    for folder in ("notebooks", "configs"):
        (tmp_path / folder).symlink_to(ROOT / folder)
    (tmp_path / "databricks.yml").write_text(yaml.safe_dump(broken, sort_keys=False))
    result = CliRunner().invoke(main, ["bundle", "validate", str(tmp_path / "databricks.yml")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: resources.jobs.llmops_chain.tasks[deploy]")
    assert "model_verison" in lines[0] and "more problem" in lines[0]  # the unwired model_version too
    with pytest.raises(ConfigError, match="expected an existing databricks.yml"):
        bundle.validate(tmp_path / "nope.yml")


def test_cli_render_writes_the_bundle_and_prints_a_target(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "databricks.yml"
    result = runner.invoke(main, ["bundle", "render", "--config", str(CONFIG), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == (ROOT / bundle.BUNDLE_FILE).read_text()
    shown = runner.invoke(main, ["bundle", "render", "--target", "dev"])
    assert shown.exit_code == 0, shown.output
    job = yaml.safe_load(shown.output)[bundle.JOB_KEY]
    assert job["schedule"]["pause_status"] == "PAUSED"
    ok = runner.invoke(main, ["bundle", "validate", str(ROOT / bundle.BUNDLE_FILE)])
    assert ok.exit_code == 0 and "register -> deploy -> serve -> evaluate" in ok.output


def test_render_refuses_a_config_outside_the_bundle_folder(tmp_path: Path) -> None:
    outside = tmp_path / "c.yml"
    outside.write_text(CONFIG.read_text())
    with pytest.raises(ConfigError, match="expected a file under the bundle folder"):
        bundle.render(outside, ROOT)


# --------------------------------------------------------------------------- the Databricks CLI's bundle schema

SCHEMA_DIR = ROOT / "tests" / "bundle_schema"


@pytest.fixture(scope="module")
def cli_schema() -> Any:
    """A validator of the Databricks CLI's published bundle schema (tests/bundle_schema/VERSION).

    The schema uses ``$defs`` (Draft 2020-12) and, for fields that take ``${var.*}``
    interpolation, ``oneOf`` branches whose ``pattern`` holds ``\\p{L}`` / ``\\p{N}`` (Go's RE2
    syntax): Python's ``re`` rejects those, so ``pattern`` and the ``regex`` format use the
    ``regex`` package, which reads them as RE2 does.
    """
    import json

    import regex
    from jsonschema import Draft202012Validator, FormatChecker, validators
    from jsonschema.exceptions import ValidationError

    def pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Any:
        if validator.is_type(instance, "string") and not regex.search(patrn, instance):
            yield ValidationError(f"{instance!r} does not match {patrn!r}")

    formats = FormatChecker()
    formats.checks("regex", raises=regex.error)(regex.compile)
    validator_class = validators.extend(Draft202012Validator, {"pattern": pattern})
    schema = json.loads((SCHEMA_DIR / "jsonschema.json").read_text())
    meta = list(validator_class(Draft202012Validator.META_SCHEMA, format_checker=formats).iter_errors(schema))
    assert meta == [], meta[:1]  # the vendored file is a valid Draft 2020-12 schema
    return validator_class(schema, format_checker=formats)


def _schema_error(validator: Any, data: Any) -> str | None:
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(data))
    return None if error is None else f"{error.json_path}: {error.message}"


def test_the_vendored_schema_says_where_it_comes_from() -> None:
    version = (SCHEMA_DIR / "VERSION").read_text()
    assert "databricks/cli" in version and "v1.13.0" in version
    assert len(version.split("commit ")[1].split()[0]) == 40


@pytest.mark.parametrize("cloud", sorted(bundle.NODE_TYPES))
def test_the_rendered_bundle_is_valid_under_the_databricks_cli_schema(cli_schema: Any, cloud: str) -> None:
    committed = yaml.safe_load((ROOT / bundle.BUNDLE_FILE).read_text())
    assert _schema_error(cli_schema, committed) is None
    rendered = bundle.render(CONFIG, ROOT, cloud=cloud)
    assert _schema_error(cli_schema, rendered) is None
    assert bundle.problems(rendered, ROOT) == []
    assert rendered["variables"]["node_type_id"]["default"] == bundle.NODE_TYPES[cloud]


SCHEMA_BREAKS = [
    (
        "unknown key",
        lambda job: job["tasks"][2].update(timeout_secs=60),
        "$.resources.jobs.llmops_chain.tasks[2]: Additional properties are not allowed ('timeout_secs' was unexpected)",
    ),
    (
        "wrong type",
        lambda job: job.update(max_concurrent_runs="one"),
        "$.resources.jobs.llmops_chain.max_concurrent_runs: 'one' is not valid under any of the given schemas",
    ),
    (
        "not an interpolation",
        lambda job: job.update(max_concurrent_runs="${max_runs}"),
        "$.resources.jobs.llmops_chain.max_concurrent_runs: '${max_runs}' is not valid under any of the given schemas",
    ),
    (
        "unknown enum value",
        lambda job: job["schedule"].update(pause_status="STOPPED"),
        "$.resources.jobs.llmops_chain.schedule.pause_status: 'STOPPED' is not valid under any of the given schemas",
    ),
]


@pytest.mark.parametrize(("what", "edit", "message"), SCHEMA_BREAKS, ids=[b[0] for b in SCHEMA_BREAKS])
def test_the_cli_schema_rejects_a_broken_bundle(
    cli_schema: Any, rendered: dict[str, Any], what: str, edit: Any, message: str
) -> None:
    broken = copy.deepcopy(rendered)
    edit(broken["resources"]["jobs"][bundle.JOB_KEY])
    assert _schema_error(cli_schema, broken) == message, what


def test_an_interpolated_integer_is_accepted_as_the_cli_does(cli_schema: Any, rendered: dict[str, Any]) -> None:
    """``${var.*}`` in a non-string field matches the schema's interpolation branch (the \\p{L} pattern)."""
    edited = copy.deepcopy(rendered)
    edited["resources"]["jobs"][bundle.JOB_KEY]["max_concurrent_runs"] = "${var.max_runs}"
    assert _schema_error(cli_schema, edited) is None


def test_the_job_runs_on_azure_by_default_with_the_prebuilt_runtime(rendered: dict[str, Any]) -> None:
    job = rendered["resources"]["jobs"][bundle.JOB_KEY]
    assert rendered["variables"]["node_type_id"]["default"] == "Standard_D4ds_v5"
    assert "-ml-" in rendered["variables"]["spark_version"]["default"]  # an ML runtime
    assert "no_alert_for_skipped_runs" not in job["email_notifications"]  # deprecated there
    assert job["notification_settings"]["no_alert_for_skipped_runs"] is True
    libs = [lib for task in job["tasks"] for lib in task["libraries"]]
    assert not any("llama-cpp-python" in str(lib.get("pypi", "")) for lib in libs)  # never a source build
    runtime = rendered["artifacts"]["llama_cpp_runtime"]
    assert {"whl": f"./{runtime['files'][0]['source']}"} in _tasks(rendered)["register"]["libraries"]
    assert "llmops_nb.models.runtime wheel" in runtime["build"]
    # the register step logs that wheel into the model: synced, and named by LLMOPS_WHEELHOUSE
    assert f"{bundle.RUNTIME_WHEELS}/*.whl" in rendered["sync"]["include"]
    cluster = job["job_clusters"][0]["new_cluster"]
    assert cluster["spark_env_vars"]["LLMOPS_WHEELHOUSE"] == f"${{workspace.file_path}}/{bundle.RUNTIME_WHEELS}"
    with pytest.raises(ConfigError, match="cloud: 'azur' is not allowed; expected one of azure, aws, gcp"):
        bundle.render(CONFIG, ROOT, cloud="azur")


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_engine_spark_runs_the_evaluate_task_on_a_cluster_sized_from_config(cli_schema: Any, tmp_path: Path, cloud: str) -> None:
    text = CONFIG.read_text().replace("evaluation:\n", "evaluation:\n  engine: spark\n  spark: {num_workers: 6}\n", 1)
    config = tmp_path / "spark.yml"
    config.write_text(text)
    rendered = bundle.render(config, tmp_path, cloud=cloud)
    job = rendered["resources"]["jobs"][bundle.JOB_KEY]
    clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
    evaluate = clusters[_tasks(rendered)["evaluate"]["job_cluster_key"]]
    assert _tasks(rendered)["evaluate"]["job_cluster_key"] == bundle.EVALUATE_CLUSTER
    assert evaluate["num_workers"] == 6 and "spark.databricks.cluster.profile" not in evaluate["spark_conf"]
    assert {t["job_cluster_key"] for k, t in _tasks(rendered).items() if k != "evaluate"} == {"chain"}
    assert evaluate["node_type_id"] == "${var.evaluate_node_type_id}"
    assert rendered["variables"]["evaluate_node_type_id"]["default"] == bundle.NODE_TYPES[cloud]
    assert _schema_error(cli_schema, rendered) is None
    rendered["variables"]["config_path"]["default"] = "${workspace.file_path}/configs/databricks.yml"  # a file under ROOT
    assert bundle.problems(rendered, ROOT) == []  # every variable resolves; JobSettings keeps every field
    config.write_text(text.replace("{num_workers: 6}", "{num_workers: 6, node_type_id: i3.2xlarge}"))
    assert bundle.render(config, tmp_path, cloud=cloud)["variables"]["evaluate_node_type_id"]["default"] == "i3.2xlarge"
    threads = bundle.render(CONFIG, ROOT, cloud=cloud)  # the default engine: one cluster, as before
    assert [c["job_cluster_key"] for c in threads["resources"]["jobs"][bundle.JOB_KEY]["job_clusters"]] == ["chain"]


def test_a_canary_deploy_task_may_run_every_step_and_is_not_retried(cli_schema: Any, tmp_path: Path) -> None:
    """rollout.strategy canary: the deploy task's timeout covers each update's wait for READY and each
    watched step's max_wait_s (an hour on Databricks); a retry after a rollback would roll it out again."""
    rollout = "rollout:\n  strategy: canary\n  warehouse_id: wh-1\n  max_wait_s: 3600\n  interval_s: 10\n"
    config = tmp_path / "canary.yml"
    config.write_text(CONFIG.read_text() + "\n" + rollout)
    rendered = bundle.render(config, tmp_path)
    deploy, default = _tasks(rendered)["deploy"], _tasks(bundle.render(CONFIG, ROOT))["deploy"]
    assert deploy["notebook_task"]["base_parameters"]["timeout_seconds"] == "3300"  # each update's own wait, as before
    assert deploy["timeout_seconds"] == 4 * 3300 + 2 * 3610 + 300 > default["timeout_seconds"] == 3600
    assert "max_retries" not in deploy and default["max_retries"] == bundle.DEPLOY_RETRIES
    assert {k: t["timeout_seconds"] for k, t in _tasks(rendered).items() if k != "deploy"} == {
        k: t["timeout_seconds"] for k, t in _tasks(bundle.render(CONFIG, ROOT)).items() if k != "deploy"
    }
    assert _schema_error(cli_schema, rendered) is None
