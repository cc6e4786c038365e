"""The chain runner's checks, which run before any step."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from llmops_nb import pipeline
from llmops_nb.errors import ConfigError
from llmops_nb.params import STEP_OUTPUTS

ROOT = Path(__file__).resolve().parents[1]


def test_steps_parse_in_chain_order() -> None:
    assert pipeline.parse_steps(None) == list(pipeline.STEPS)
    assert pipeline.parse_steps("evaluate,deploy") == ["deploy", "evaluate"]
    with pytest.raises(ConfigError, match="steps: 'train'"):
        pipeline.parse_steps("deploy,train")


def test_every_notebook_declares_what_the_runner_passes() -> None:
    params = pipeline.plan(pipeline.STEPS, ROOT / "configs" / "local.yml", "local")
    assert set(params) == set(pipeline.STEPS)
    for step, inputs in pipeline.STEP_INPUTS.items():
        declared = pipeline.declared_parameters(ROOT / "notebooks" / pipeline.NOTEBOOKS[step])
        for key in inputs:
            assert key in declared, (step, key)
            producer = next(s for s, outs in STEP_OUTPUTS.items() if key in outs)
            assert pipeline.STEPS.index(producer) < pipeline.STEPS.index(step)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"evaluate": {"max_row": 3}}, "evaluate.max_row: 3 is not allowed; not a parameter of 04_evaluate.ipynb"),
        ({"evaluate": {"max_rows": "3"}}, "evaluate.max_rows: '3' is not allowed; expected int"),
        ({"deploy": {"timeout_seconds": 1.5}}, "deploy.timeout_seconds: 1.5 is not allowed; expected int"),
        ({"serve": {"prompts": "hi"}}, "serve.prompts: 'hi' is not allowed; expected list"),
        ({"serve": {"api_key": "sk-" "abcdefghijklmnopqrstuvwxyz"}}, "serve.api_key: '***' is not allowed; secrets are never parameters"),
    ],
)
def test_unknown_mistyped_and_secret_parameters_fail_before_anything_runs(overrides, message, tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError) as err:
        pipeline.run(ROOT / "configs" / "local.yml", out=tmp_path, overrides=overrides)
    assert str(err.value).startswith(message)
    assert "sk-abc" not in str(err.value)
    assert list(tmp_path.iterdir()) == []  # no run folder, no step started


def test_committed_notebooks_have_no_outputs_and_a_parameters_cell() -> None:
    for path in pipeline.iter_notebooks():
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), path
        tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path
        assert nb.cells[0].cell_type == "markdown"
        for name in pipeline.declared_parameters(path):  # every parameter is documented
            assert f"`{name}`" in nb.cells[0].source, (path.name, name)
