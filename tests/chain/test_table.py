"""The chain runner's checks, which run before any step."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pytest

from llmops_nb.chain import bundle, check, inspect, kernels, params, runner, table
from llmops_nb.chain import inspect as chain_inspect
from llmops_nb.chain import runner as chain_runner
from llmops_nb.chain import table as chain_table
from llmops_nb.chain.table import STEP_OUTPUTS
from llmops_nb.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_steps_parse_in_chain_order() -> None:
    assert chain_runner.parse_steps(None) == list(chain_table.STEPS)
    assert chain_runner.parse_steps("evaluate,deploy") == ["deploy", "evaluate"]
    with pytest.raises(ConfigError, match="steps: 'train'"):
        chain_runner.parse_steps("deploy,train")


def test_every_notebook_declares_what_the_runner_passes() -> None:
    params = chain_runner.plan(chain_table.STEPS, ROOT / "configs" / "local.yml", "local")
    assert set(params) == set(chain_table.STEPS)
    for step, inputs in chain_table.STEP_INPUTS.items():
        declared = chain_inspect.declared_parameters(ROOT / "notebooks" / chain_table.NOTEBOOKS[step])
        for key in inputs:
            assert key in declared, (step, key)
            producer = next(s for s, outs in STEP_OUTPUTS.items() if key in outs)
            assert chain_table.STEPS.index(producer) < chain_table.STEPS.index(step)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"evaluate": {"max_row": 3}}, "evaluate.max_row: 3 is not allowed; not a parameter of 04_evaluate.ipynb"),
        ({"evaluate": {"max_rows": "3"}}, "evaluate.max_rows: '3' is not allowed; expected int"),
        ({"deploy": {"timeout_seconds": 1.5}}, "deploy.timeout_seconds: 1.5 is not allowed; expected int"),
        ({"deploy": {"strategy": "blue-green"}}, "strategy: 'blue-green' is not allowed; expected one of '', replace, canary"),
        ({"serve": {"prompts": "hi"}}, "serve.prompts: 'hi' is not allowed; expected list"),
        (
            {"serve": {"api_key": "sk-" + "abcdefghijklmnopqrstuvwxyz"}},
            "serve.api_key: '***' is not allowed; secrets are never parameters",
        ),
    ],
)
def test_unknown_mistyped_and_secret_parameters_fail_before_anything_runs(overrides, message, tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError) as err:
        chain_runner.run(ROOT / "configs" / "local.yml", out=tmp_path, overrides=overrides)
    assert str(err.value).startswith(message)
    assert "sk-abc" not in str(err.value)
    assert list(tmp_path.iterdir()) == []  # no run folder, no step started


def test_committed_notebooks_have_no_outputs_and_a_parameters_cell() -> None:
    for path in chain_runner.iter_notebooks():
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), path
        tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path
        assert nb.cells[0].cell_type == "markdown"
        for name in chain_inspect.declared_parameters(path):  # every parameter is documented
            assert f"`{name}`" in nb.cells[0].source, (path.name, name)


# --------------------------------------------------------------------------- the chain's one table


def test_the_step_table_is_the_only_source_of_the_old_tables() -> None:
    names = [s.name for s in table.CHAIN]
    assert tuple(names) == chain_table.STEPS and list(chain_table.NOTEBOOKS) == names
    assert params.STEP_OUTPUTS is table.STEP_OUTPUTS and chain_table.STEP_INPUTS is table.STEP_INPUTS
    assert not hasattr(bundle, "TIMEOUTS") and not hasattr(bundle, "OUTPUT_TYPES")  # read from the table, not re-exported
    assert bundle.DEPLOY_RETRIES == table.step("deploy").retries == 2
    assert kernels.PRELOAD is table.PRELOAD and "configure" not in kernels.PRELOAD  # no step, no warm-up
    assert chain_table.COMMON_PARAMETERS == table.COMMON_PARAMETERS == ("config_path", "backend")
    assert {"deploy"} == kernels.WAITING_STEPS


def test_every_input_is_published_by_an_earlier_step_and_outputs_are_unique() -> None:
    outputs = [o.name for s in table.CHAIN for o in s.outputs]
    assert len(outputs) == len(set(outputs)), outputs
    for s in table.CHAIN:
        assert s.notebook.endswith(".ipynb") and s.timeout_seconds > 0 and s.retries >= 0
        for key in s.inputs:
            source = table.producer(key, before=s.name)
            assert source is not None, (s.name, key)
        for o in s.outputs:
            assert o.type in check.TYPE_NAMES.values(), (s.name, o)


def test_a_parameters_cell_is_read_once_per_version_of_the_notebook(tmp_path: Path) -> None:
    inspect._inspect.cache_clear()
    chain_runner.plan(chain_table.STEPS, ROOT / "configs" / "local.yml", "local")
    info = inspect.cache_info()
    assert info.misses == len(chain_table.STEPS) and info.hits >= len(chain_table.STEPS)  # plan reads each one 3 times
    copy = tmp_path / "03_serve.ipynb"
    shutil.copy(ROOT / "notebooks" / "03_serve.ipynb", copy)
    assert "max_tokens" in inspect.declared_parameters(copy)
    nb = nbformat.read(copy, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += "\nextra_knob: int = 3"
    nbformat.write(nb, copy)
    os.utime(copy, ns=(os.stat(copy).st_atime_ns, os.stat(copy).st_mtime_ns + 10**9))
    assert inspect.declared_parameters(copy)["extra_knob"]["inferred_type_name"] == "int"  # the edit is seen
    inspect.declared_parameters(copy)["extra_knob"]["default"] = "changed"  # callers get copies
    assert inspect.declared_parameters(copy)["extra_knob"]["default"] == "3"


def test_the_runner_and_the_bundle_refuse_a_parameter_with_the_same_check() -> None:
    notebook = ROOT / "notebooks" / "04_evaluate.ipynb"
    with pytest.raises(ConfigError) as err:
        check.check_parameters("evaluate", notebook, {"max_row": 3})
    job = check.parameter_problems(notebook, {"max_row": "3"}, field=lambda n: f"tasks[evaluate].{n}", via="job")
    assert str(err.value).split(" is not allowed; ", 1)[1] == str(job[0]).split(" is not allowed; ", 1)[1]
    assert str(job[0]).startswith("tasks[evaluate].max_row: '3' is not allowed; not a parameter of 04_evaluate.ipynb")


def test_a_step_gets_only_the_earlier_outputs_it_declares() -> None:
    planned = {"config_path": "configs/local.yml", "backend": "local"}
    got = runner.step_parameters("serve", planned, {"endpoint_name": "chat", "model_version": "1", "promoted": True})
    assert got == {**planned, "endpoint_name": "chat"}
