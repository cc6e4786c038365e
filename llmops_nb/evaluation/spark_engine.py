"""The spark engine (``evaluation.engine: spark``): the rows asked by Spark tasks, answers in a result table.

The dataset is a Spark DataFrame (:func:`read_dataset`: JSON lines, CSV, Parquet, a Delta folder
read with ``deltalake`` locally, a Unity Catalog table on Databricks; or the rows the step
already checked) with a stable row id (the dataset's ``id``) and its dataset position.
``mapInPandas`` asks each partition in one task through :func:`~llmops_nb.evaluation.asking.stream_rows`,
the threads engine's own code path (the same chat body, retries and scorers), with the task's share
of the evaluation's concurrency as its AIMD limiter (``concurrency // tasks running at once``).

Exactly once: a task writes its partition's result rows to one Parquet file, atomically (a
temporary name, then ``os.replace``) and named by partition and attempt, in a folder of its own
per run (``gen-<n>``). A task that fails before its file is written leaves nothing; one that Spark
runs twice leaves two files with the same ids, and :func:`result_rows` keeps one file a
partition. A resumed run (a later ``gen``) asks only the ids with no answer yet (or an error),
and its rows win over the earlier ones. Nothing but a count per partition comes back to the
driver; the result rows are read back one file at a time and handed to the same bookkeeping as
the threads engine (rows file, running metrics, traces, MLflow), so the run logs the same things.

pyspark is imported inside the functions (the ``[spark]`` extra).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops_nb.errors import ConfigError
from llmops_nb.evaluation.asking import Asked
from llmops_nb.evaluation.resume import resume_key
from llmops_nb.evaluation.spark_data import ENGINE, check_spark_config, load_rows, spark_session

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from databricks.sdk import WorkspaceClient
    from pyspark.sql import DataFrame, SparkSession

    from llmops_nb.chat.ratecontrol import AimdLimiter

#: The result rows' columns (a table row of :func:`llmops_nb.evaluation.rows.table_row`, as JSON).
RESULT_SCHEMA = "id string, position long, row string"
_PART = re.compile(r"^part-(\d{5})-a(\d+)-n(\d+)\.parquet$")


def rows_frame(spark: SparkSession, rows: Sequence[dict[str, Any]]) -> DataFrame:
    """Checked rows (the step's list) as a DataFrame with their positions."""
    import pandas as pd

    frame = pd.DataFrame(
        {
            "id": [r["id"] for r in rows],
            "question": [r["question"] for r in rows],
            "expected": [r["expected"] for r in rows],
            "aliases": [list(r.get("aliases", [])) for r in rows],
            "position": range(len(rows)),
        }
    )
    return spark.createDataFrame(frame, "id string, question string, expected string, aliases array<string>, position long")


def result_files(folder: Path) -> list[Path]:
    """The result files kept: per run (``gen-<n>``, oldest first) one file a partition (its lowest attempt)."""
    kept: list[Path] = []
    for gen in sorted(folder.glob("gen-*"), key=lambda p: int(p.name.split("-")[1])):
        best: dict[int, tuple[int, Path]] = {}
        for part in gen.iterdir():
            found = _PART.match(part.name)
            if found:
                pid, attempt = int(found.group(1)), int(found.group(2))
                if pid not in best or attempt < best[pid][0]:
                    best[pid] = (attempt, part)
        kept.extend(path for _, path in sorted(best.values(), key=lambda item: item[1].name))
    return kept


def result_rows(folder: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(position, table row) of each id once: a later run's row over an earlier one (it was asked again)."""
    import pyarrow.parquet as pq

    files = result_files(folder)
    latest: dict[str, int] = {}
    for index, path in enumerate(files):
        for row_id in pq.read_table(path, columns=["id"]).column("id").to_pylist():
            latest[row_id] = index
    for index, path in enumerate(files):
        table = pq.read_table(path).to_pydict()
        for row_id, position, row in zip(table["id"], table["position"], table["row"], strict=True):
            if latest.get(row_id) == index:
                latest[row_id] = -1  # handed over once
                yield int(position), json.loads(row)


def answered_ids(folder: Path) -> set[str]:
    """The ids with an answer (no error) in the result folder: a resumed run does not ask them."""
    return {row["id"] for _, row in result_rows(folder) if not row["error"]}


@dataclass(frozen=True)
class TaskSettings:
    """What each task needs to ask its rows: the workspace (its token never logged), the chat settings."""

    host: str
    token: str = field(repr=False)
    retry_timeout_seconds: int
    http_timeout_seconds: int
    endpoint: str
    concurrency: int
    max_tokens: int
    temperature: float
    system: str | None
    served_entity: str | None
    json_schema: dict[str, Any] | None
    out: str


def _token(w: WorkspaceClient) -> str:
    """The bearer token of ``w`` (a PAT, or the OAuth token its credentials give now) for the tasks."""
    if w.config.token:
        return str(w.config.token)
    header = w.config.authenticate().get("Authorization", "")
    return header.removeprefix("Bearer ")


def ask_partition(
    settings: TaskSettings, batches: Iterable[pd.DataFrame], hook: Callable[[int, dict[str, Any]], None] | None = None
) -> Iterator[pd.DataFrame]:
    """One task: ask its rows (:func:`~llmops_nb.evaluation.asking.stream_rows`), write its result file atomically.

    ``hook(attempt, table row)``: called in the task as each row is answered (a test's injected fault).
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config
    from pyspark import TaskContext

    from llmops_nb.chat.ratecontrol import AimdLimiter
    from llmops_nb.evaluation.asking import stream_rows

    context = TaskContext.get()
    pid, attempt = (context.partitionId(), context.attemptNumber()) if context else (0, 0)
    w = WorkspaceClient(
        config=Config(
            host=settings.host,
            token=settings.token,
            auth_type="pat",
            retry_timeout_seconds=settings.retry_timeout_seconds,
            http_timeout_seconds=settings.http_timeout_seconds,
        )
    )
    rows: list[dict[str, Any]] = []
    positions: list[int] = []
    for batch in batches:
        for record in batch.to_dict("records"):
            positions.append(int(record["position"]))
            aliases = record.get("aliases")
            row = {"id": record["id"], "question": record["question"], "expected": record["expected"]}
            rows.append({**row, "aliases": [str(a) for a in aliases] if aliases is not None else []})
    answered: list[tuple[int, dict[str, Any]]] = []

    def on_row(k: int, entry: dict[str, Any]) -> None:
        if hook is not None:
            hook(attempt, entry)
        answered.append((positions[k], entry))

    if rows:
        stream_rows(
            w,
            settings.endpoint,
            rows,
            on_row,
            concurrency=settings.concurrency,
            limiter=AimdLimiter(settings.concurrency),  # this task's share of the evaluation's rate
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            system=settings.system,
            progress=False,
            resume_path=None,
            served_entity=settings.served_entity,
            json_schema=settings.json_schema,
        )
    out = Path(settings.out)
    table = pa.table(
        {
            "id": [e["id"] for _, e in answered],
            "position": [p for p, _ in answered],
            "row": [json.dumps(e) for _, e in answered],
        }
    )
    final = out / f"part-{pid:05d}-a{attempt}-n{len(answered)}.parquet"
    temporary = out / f".{final.name}.{uuid.uuid4().hex}.tmp"
    pq.write_table(table, temporary)
    os.replace(temporary, final)  # atomic: a file is a whole partition or absent
    yield pd.DataFrame({"partition": [pid], "rows": [len(answered)]})


@dataclass
class SparkEngine:
    """``evaluation.engine: spark``: :meth:`stream_rows` has :func:`~llmops_nb.evaluation.asking.stream_rows`'
    signature, so :func:`~llmops_nb.evaluation.orchestrate.evaluate_endpoint` does the same bookkeeping.

    ``results``: the result folder (None: ``<resume file>.spark`` beside the resume file, else a
    new folder under the output folder); ``hook``: see :func:`ask_partition`.
    """

    partitions: int | None = None
    master: str = "local[2]"
    results: Path | None = None
    results_table: str | None = None
    hook: Callable[[int, dict[str, Any]], None] | None = None
    spark: SparkSession | None = None
    name: str = ENGINE
    last_results: Path | None = None
    _temporary: Path | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.partitions is not None and (
            not isinstance(self.partitions, int) or isinstance(self.partitions, bool) or self.partitions < 1
        ):
            raise ConfigError("evaluation.spark.partitions", self.partitions, "an integer >= 1 (or None: Spark's default)")

    def stream_rows(
        self,
        w: WorkspaceClient,
        endpoint: str,
        rows: Iterable[dict[str, Any]],
        on_row: Callable[[int, dict[str, Any]], None],
        *,
        concurrency: int,
        max_tokens: int,
        temperature: float,
        system: str | None,
        progress: bool,
        resume_path: Path | None,
        check: Callable[[int, dict[str, Any]], None] | None = None,
        limiter: AimdLimiter | None = None,
        served_entity: str | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> Asked:
        """Ask the rows not yet answered in the result folder on Spark; ``on_row`` for every row of it."""
        from pyspark.sql import functions as F

        listed = list(rows)
        if check is not None:
            for position, row in enumerate(listed):
                check(position, row)
        spark = self.spark or spark_session(self.master)
        folder = self._folder(resume_path)
        key = resume_key(
            f"{endpoint}/{served_entity}" if served_entity else endpoint, max_tokens, temperature, system, json_schema
        )
        key_file = folder / "key.json"
        if key_file.exists() and json.loads(key_file.read_text(encoding="utf-8")) != key:
            shutil.rmtree(folder)  # answers made with other settings: none is reused
        folder.mkdir(parents=True, exist_ok=True)
        key_file.write_text(json.dumps(key), encoding="utf-8")
        done = answered_ids(folder)
        gen = folder / f"gen-{len(list(folder.glob('gen-*')))}"
        gen.mkdir()
        frame = rows_frame(spark, listed)
        if done:
            answered = spark.createDataFrame([(i,) for i in sorted(done)], "id string")
            frame = frame.join(F.broadcast(answered), "id", "left_anti")
        # default: one task a core, but never more tasks at once than the evaluation's concurrency
        tasks = self.partitions or max(1, min(spark.sparkContext.defaultParallelism, concurrency))
        frame = frame.repartition(tasks)
        at_once = max(1, min(tasks, spark.sparkContext.defaultParallelism))
        settings = TaskSettings(
            host=str(w.config.host),
            token=_token(w),
            retry_timeout_seconds=int(w.config.retry_timeout_seconds or 300),
            http_timeout_seconds=int(w.config.http_timeout_seconds or 60),
            endpoint=endpoint,
            concurrency=max(1, concurrency // at_once),
            max_tokens=max_tokens,
            temperature=temperature,
            system=system,
            served_entity=served_entity,
            json_schema=json_schema,
            out=str(gen),
        )
        hook = self.hook
        asked_now = len(listed) - len(done & {r["id"] for r in listed})
        with _Progress(gen, asked_now, f"querying {endpoint} on spark ({tasks} tasks)", enabled=progress):
            frame.mapInPandas(lambda batches: ask_partition(settings, batches, hook), "partition int, rows long").collect()
        self.last_results = folder
        if self.results_table:
            write_results_table(spark, folder, self.results_table)
        asked = Asked(rows=len(listed), queried=asked_now, resumed=len(listed) - asked_now)
        wanted = {r["id"] for r in listed}
        handed = 0
        for position, row in result_rows(folder):
            if row["id"] in wanted:
                on_row(position, row)
                handed += 1
        if handed != len(listed):
            raise ConfigError("evaluation.engine", ENGINE, f"a result for each of the {len(listed)} rows; found {handed}")
        return asked

    def _folder(self, resume_path: Path | None) -> Path:
        """The result folder: ``<resume file stem>.spark`` under ``results`` (default: beside the resume
        file), so each candidate (its own resume file) has its own; without a resume file ``results``
        itself, else a new temporary folder (the same for this engine's life)."""
        if resume_path is not None:
            return Path(self.results or Path(resume_path).parent) / results_folder(Path(resume_path)).name
        if self.results is not None:
            return Path(self.results)
        if self._temporary is None:
            import tempfile

            self._temporary = Path(tempfile.mkdtemp(prefix="llmops-spark-")) / "results"
        return self._temporary

    def load_rows(self, source: str, max_rows: int | None = None) -> list[dict[str, Any]]:
        """:func:`load_rows` on this engine's session."""
        return load_rows(self.spark or spark_session(self.master), source, max_rows)

    def run_params(self, resume_path: Path | None) -> dict[str, str]:
        """The run params of this engine: its name and where the results are (the table, else the folder)."""
        return {"engine": self.name, "results": self.results_table or str(self._folder(resume_path))}

    def forget(self, resume_path: Path) -> None:
        """Remove the result folders of ``resume_path`` and of the candidates' resume files made from it."""
        base = Path(self.results or Path(resume_path).parent)
        for old in base.glob(f"{Path(resume_path).stem}*.spark"):
            shutil.rmtree(old, ignore_errors=True)


def results_folder(resume_path: Path) -> Path:
    """The spark engine's result folder that goes with a resume file (removed with it when not resuming)."""
    return resume_path.with_name(resume_path.stem + ".spark")


class _Progress:
    """A tqdm bar fed by the partition files written so far (their row counts are in their names)."""

    def __init__(self, gen: Path, total: int, desc: str, *, enabled: bool) -> None:
        self.gen, self.total, self.desc, self.enabled = gen, total, desc, enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _count(self) -> int:
        seen: dict[int, int] = {}
        for part in self.gen.iterdir():
            found = _PART.match(part.name)
            if found:
                seen[int(found.group(1))] = int(found.group(3))
        return sum(seen.values())

    def _run(self) -> None:
        from tqdm.auto import tqdm

        with tqdm(total=self.total, desc=self.desc, unit="row") as bar:
            while not self._stop.wait(0.5):
                bar.update(self._count() - bar.n)
            bar.update(self._count() - bar.n)

    def __enter__(self) -> _Progress:
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="spark-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def write_results_table(spark: SparkSession, folder: Path, name: str) -> None:
    """The result files as the Delta table ``name`` (overwritten), one row per id: a later run's row wins."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    files = [str(p) for p in result_files(folder)]
    frame = spark.read.parquet(*files).withColumn("gen", F.regexp_extract(F.input_file_name(), r"gen-(\d+)", 1).cast("int"))
    latest = Window.partitionBy("id").orderBy(F.col("gen").desc())
    kept = frame.withColumn("n", F.row_number().over(latest)).where("n = 1").drop("n", "gen")
    kept.write.format("delta").mode("overwrite").option("overwriteSchema", "true").saveAsTable(name)


def engine_for(engine: str, spark_config: Any = None) -> SparkEngine | None:
    """The asker of ``evaluation.engine``: None for threads, a :class:`SparkEngine` (checked: pyspark, Java) for spark.

    On Databricks the result files must be on a path every node sees (``evaluation.spark.results_path``
    under ``/Volumes/``); ``results_table`` is a Databricks Delta table (locally the results are Parquet files).
    """
    if engine == "threads":
        return None
    if engine != ENGINE:
        raise ConfigError("evaluation.engine", engine, "threads or spark")
    check_spark_config(spark_config)
    if spark_config is None:
        return SparkEngine()
    path, table = spark_config.results_path, spark_config.results_table
    return SparkEngine(
        partitions=spark_config.partitions,
        master=spark_config.master,
        results=Path(path) if path else None,
        results_table=table,
    )
