"""Notebook parameters (papermill values, Databricks widgets) and published outputs."""

from __future__ import annotations

import nbformat
import pytest

from llmops_nb.chain import params
from llmops_nb.errors import ConfigError


class FakeWidgets:
    """dbutils.widgets as Databricks behaves: values are strings, set by the job or the user."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values, self.declared = dict(values), {}

    def text(self, name: str, default: str) -> None:
        self.declared[name] = ("text", default)
        self.values.setdefault(name, default)

    def dropdown(self, name: str, default: str, choices: list[str]) -> None:
        assert default in choices
        self.declared[name] = ("dropdown", default, tuple(choices))
        self.values.setdefault(name, default)

    def get(self, name: str) -> str:
        return self.values[name]


class FakeTaskValues:
    def __init__(self) -> None:
        self.values: dict[str, object] = {}

    def set(self, key: str, value: object) -> None:
        self.values[key] = value


class FakeDbutils:
    def __init__(self, values: dict[str, str]) -> None:
        self.widgets = FakeWidgets(values)
        self.jobs = type("Jobs", (), {})()
        self.jobs.taskValues = FakeTaskValues()


@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [("3", 0, 3), ("true", False, True), ("0", True, False), ("0.5", 0.0, 0.5), ('["a"]', [], ["a"]), (7, "", "7"), (2, 0.0, 2)],
)
def test_widget_strings_become_the_defaults_type(value, default, expected) -> None:  # noqa: ANN001
    assert params.coerce("x", value, default) == expected


@pytest.mark.parametrize(("value", "default"), [("three", 0), ("maybe", False), ("[1", []), ("{}", []), (1.5, 0), (True, 0)])
def test_values_that_do_not_convert_are_one_line_errors(value, default) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError) as err:
        params.coerce("max_rows", value, default)
    assert str(err.value).startswith("max_rows:") and type(default).__name__ in str(err.value)


def test_local_values_are_validated_and_closed_sets_enforced() -> None:
    ns = {"config_path": "", "backend": "local", "max_rows": 5}
    assert params.notebook_params(ns, ["config_path", "backend", "max_rows"]) == ns
    with pytest.raises(ConfigError, match="backend: 'aws'"):
        params.notebook_params({"backend": "aws"}, ["backend"])
    with pytest.raises(ConfigError, match="parameters"):
        params.notebook_params({}, ["backend"])


def test_on_databricks_parameters_are_widgets_read_back(monkeypatch: pytest.MonkeyPatch) -> None:
    dbutils = FakeDbutils({"max_rows": "12", "resume": "true"})
    monkeypatch.setattr(params, "_dbutils", lambda: dbutils)
    got = params.notebook_params(
        {"backend": "", "max_rows": 0, "resume": False, "prompts": ["hi"]}, ["backend", "max_rows", "resume", "prompts"]
    )
    assert got == {"backend": "", "max_rows": 12, "resume": True, "prompts": ["hi"]}
    assert dbutils.widgets.declared["backend"][0] == "dropdown"  # a closed set
    assert dbutils.widgets.declared["resume"] == ("dropdown", "false", ("true", "false"))
    assert dbutils.widgets.declared["max_rows"] == ("text", "0")


def test_publish_sets_task_values_on_databricks(monkeypatch: pytest.MonkeyPatch) -> None:
    dbutils = FakeDbutils({})
    monkeypatch.setattr(params, "_dbutils", lambda: dbutils)
    params.publish("register", model_name="m", model_version="3", model_uri="models:/m/3")
    assert dbutils.jobs.taskValues.values == {"model_name": "m", "model_version": "3", "model_uri": "models:/m/3"}


def test_publish_refuses_missing_outputs_and_unknown_steps() -> None:
    with pytest.raises(ConfigError, match="model_uri"):
        params.publish("register", model_name="m", model_version="3")
    with pytest.raises(ConfigError, match="step: 'train'"):
        params.publish("train", x=1)


def test_outputs_are_read_back_from_an_executed_notebook(tmp_path) -> None:  # noqa: ANN001
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("publish(...)")
    cell.outputs = [
        nbformat.v4.new_output(
            "display_data", data={params.OUTPUTS_MIME: {"step": "deploy", "outputs": {"endpoint_name": "e"}}, "text/plain": "x"}
        )
    ]
    nb.cells = [cell]
    path = tmp_path / "done.ipynb"
    nbformat.write(nb, path)
    assert params.read_outputs(path) == {"endpoint_name": "e"}
