"""The spark engine's data (pyspark local mode): datasets from files as DataFrames, bad ones and a missing
pyspark or Java refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmops_nb.errors import ConfigError
from llmops_nb.evaluation.spark_data import check_spark, check_spark_config, read_dataset

pytestmark = pytest.mark.spark


def test_datasets_are_read_from_files_and_bad_ones_refused_in_one_line(spark, tmp_path: Path) -> None:  # noqa: ANN001
    import pandas as pd
    from deltalake import write_deltalake

    rows = pd.DataFrame([{"id": "a", "question": "Q?", "expected": "x"}, {"id": "b", "question": "R?", "expected": "y"}])
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows.to_dict("records")))
    rows.to_csv(tmp_path / "d.csv", index=False)
    rows.to_parquet(tmp_path / "d.parquet")
    write_deltalake(str(tmp_path / "delta"), rows)
    for source in ("d.jsonl", "d.csv", "d.parquet", "delta"):
        read = read_dataset(spark, tmp_path / source).toPandas().sort_values("position")
        assert list(read["id"]) == ["a", "b"] and list(read["position"]) == [0, 1], source
        assert list(read["aliases"].map(list)) == [[], []]
    rows.drop(columns="expected").to_parquet(tmp_path / "short.parquet")
    bad = {
        "short.parquet": "missing: expected",
        "nowhere.jsonl": "an existing file or folder",
        "main.default.missing_table": "it does not exist",
    }
    for source, says in bad.items():
        where = tmp_path / source if source.endswith("l") or source.endswith("t") else source
        with pytest.raises(ConfigError, match=says) as caught:
            read_dataset(spark, str(where) if "/" in str(where) else source)
        assert "\n" not in str(caught.value) and "evaluation.dataset" in str(caught.value)


def test_spark_without_pyspark_or_java_says_which_and_how_to_get_it(monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    import sys

    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    with pytest.raises(ConfigError, match=r"evaluation.engine: 'spark'.*Java 17\+.*openjdk-17") as caught:
        check_spark_config()
    assert "\n" not in str(caught.value)
    monkeypatch.setitem(sys.modules, "pyspark", None)  # as if the [spark] extra were not installed
    with pytest.raises(ConfigError, match=r"pyspark.*pip install 'llmops-nb\[spark\]'"):
        check_spark()
