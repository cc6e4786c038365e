"""The spark engine's session and data: what it needs (:func:`check_spark_config`: pyspark, Java 17+,
where the results go), the session (:func:`spark_session`), and the dataset as a DataFrame
(:func:`read_dataset`: JSON lines, CSV, Parquet, a Delta folder read with ``deltalake`` locally, a Unity
Catalog table on a cluster) or as checked rows (:func:`load_rows`). pyspark is imported inside the functions.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops_nb.errors import ConfigError
from llmops_nb.evaluation.datasets import FIELDS

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

ENGINE = "spark"
REQUIRED = ("id", "question", "expected")


def on_databricks() -> bool:
    """Whether this runs on a Databricks cluster (its runtime sets DATABRICKS_RUNTIME_VERSION)."""
    return bool(os.environ.get("DATABRICKS_RUNTIME_VERSION"))


def check_spark(field: str = "evaluation.engine") -> None:
    """pyspark importable and Java 17+ found (not needed on Databricks); one ConfigError line otherwise."""
    if importlib.util.find_spec("pyspark") is None:
        raise ConfigError(field, ENGINE, "pyspark, which is not installed: pip install 'llmops-nb[spark]' (or engine: threads)")
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise ConfigError(
            field, ENGINE, "Java 17+ for pyspark, which was not found (JAVA_HOME, PATH): apt-get install openjdk-17-jre-headless"
        )
    shown = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    found = re.search(r'version "(\d+)(?:\.(\d+))?', shown)
    major = int(found.group(1)) if found else 0
    major = int(found.group(2) or 0) if major == 1 and found else major  # "1.8.0": Java 8
    if major < 17:
        raise ConfigError(field, ENGINE, f"Java 17+ for pyspark; {java} is Java {major or '?'}: install openjdk-17")


def spark_session(master: str = "local[2]") -> SparkSession:
    """The active SparkSession (a Databricks cluster's, a test's), else a local one on ``master``."""
    check_spark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers run this interpreter (this venv)
    return (
        SparkSession.builder.master(master)
        .appName("llmops-nb-evaluate")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )


def read_dataset(spark: SparkSession, source: str | Path) -> DataFrame:
    """The dataset ``source`` as a DataFrame (id, question, expected, aliases, position); one ConfigError line
    for a table that does not exist or lacks the columns.

    ``source``: a ``.jsonl``/``.json``, ``.csv`` or ``.parquet`` file or folder, a Delta folder
    (one with ``_delta_log``; read with ``deltalake``, as Spark's Delta jars need Maven), or a
    Unity Catalog table ``catalog.schema.table`` (on a cluster's session).
    """
    from pyspark.sql import functions as F

    text = str(source)
    path = Path(text).expanduser()
    if path.exists():
        if (path / "_delta_log").is_dir():
            from deltalake import DeltaTable

            df = spark.createDataFrame(DeltaTable(str(path)).to_pandas())
        elif path.suffix in (".jsonl", ".json"):
            df = spark.read.json(str(path))
        elif path.suffix == ".csv":
            df = spark.read.option("header", True).option("multiLine", True).option("escape", '"').csv(str(path))
        elif path.suffix == ".parquet" or path.is_dir():
            df = spark.read.parquet(str(path))
        else:
            raise ConfigError(
                "evaluation.dataset", text, "a .jsonl, .csv or .parquet file, a Delta folder or catalog.schema.table"
            )
    elif re.fullmatch(r"[^./\s]+\.[^./\s]+\.[^./\s]+", text):
        if not _table_exists(spark, text):
            raise ConfigError("evaluation.dataset", text, "an existing table (catalog.schema.table): it does not exist")
        df = spark.table(text)
    else:
        raise ConfigError("evaluation.dataset", text, "an existing file or folder, or a table catalog.schema.table")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ConfigError(
            "evaluation.dataset", text, f"a table with columns {', '.join(REQUIRED)}; missing: {', '.join(missing)}"
        )
    if "aliases" not in df.columns:
        df = df.withColumn("aliases", F.array().cast("array<string>"))
    df = df.select(*FIELDS)
    # zipWithIndex: the position of each row in the source's order, stable across reads of the same files
    indexed = df.rdd.zipWithIndex().map(lambda pair: (*pair[0], pair[1]))
    return spark.createDataFrame(indexed, df.schema.add("position", "long"))


def _table_exists(spark: SparkSession, name: str) -> bool:
    """Whether the catalog has table ``name`` (a three-part name the local catalog cannot hold: no)."""
    from pyspark.errors import AnalysisException

    try:
        return bool(spark.catalog.tableExists(name))
    except AnalysisException:  # spark_catalog locally: REQUIRES_SINGLE_PART_NAMESPACE
        return False


def is_spark_source(source: str) -> bool:
    """Whether the dataset ``source`` is one only the spark engine reads (not ``bundled`` or a JSON-lines file)."""
    return source != "bundled" and not str(source).endswith(".jsonl")


def load_rows(spark: SparkSession, source: str, max_rows: int | None = None) -> list[dict[str, Any]]:
    """The rows of ``source`` (:func:`read_dataset`) in its order, checked as a JSON-lines dataset's are
    (:func:`~llmops_nb.evaluation.datasets.check_row`, unique ids), the first ``max_rows`` if given."""
    from llmops_nb.evaluation.datasets import check_row, unique_row

    frame = read_dataset(spark, source).orderBy("position")
    if max_rows:
        frame = frame.limit(max_rows)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for record in frame.toLocalIterator():
        raw = {k: v for k, v in record.asDict().items() if k != "position"}
        raw["aliases"] = list(raw.get("aliases") or [])
        where = f"{source}[{len(rows)}]"
        rows.append(unique_row(check_row(raw, where), where, seen))
    if not rows:
        raise ConfigError("evaluation.dataset", source, "a table with at least one row")
    return rows


def check_spark_config(spark_config: Any = None) -> None:
    """pyspark and Java (:func:`check_spark`), and ``evaluation.spark``'s results where it runs: on
    Databricks a folder every node sees (``results_path`` under ``/Volumes/``); ``results_table`` only
    there (locally the results are Parquet files). One ConfigError line."""
    check_spark()
    if spark_config is None:
        return
    path, table = spark_config.results_path, spark_config.results_table
    if on_databricks() and not (path or "").startswith(("/Volumes/", "/dbfs/")):
        raise ConfigError(
            "evaluation.spark.results_path",
            path,
            "on Databricks, a folder every node sees: a volume /Volumes/<catalog>/<schema>/<volume>/...",
        )
    if table and not on_databricks():
        raise ConfigError(
            "evaluation.spark.results_table",
            table,
            "a Databricks Delta table (on a cluster); locally the results are Parquet files",
        )
