"""The evaluation section checked before any step changes anything (the chain, ``llmops-nb run``, ``preflight``).

:func:`check_evaluation` raises one ConfigError line for the first problem: the dataset (exists
and parses, every row with its fields), threshold metric names, candidates (their endpoints
and served entities exist, or will once the chain deploys the config's endpoint), prices
(they name candidates: the config itself checks that), for ``engine: spark`` pyspark and Java, and
for ``engine: ai_query`` that each endpoint asked is a foundation or external chat endpoint.
:func:`evaluation_lines` says what was checked, one line each, as preflight prints them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmops_nb.errors import ConfigError
from llmops_nb.evaluation.ai_query_sql import check_endpoint, is_table, read_table_rows
from llmops_nb.evaluation.datasets import BUNDLED, load_dataset
from llmops_nb.evaluation.metrics import KNOWN_METRICS
from llmops_nb.evaluation.promotion import check_threshold_names

if TYPE_CHECKING:  # pragma: no cover
    from databricks.sdk import WorkspaceClient

    from llmops_nb.config.project import ProjectConfig


def _entity_names(project: ProjectConfig) -> list[str]:
    return [str(e.name) for e in (project.endpoint.served_entities if project.endpoint else []) if e.name]


def _spark_source(dataset: str) -> bool:
    from llmops_nb.evaluation.spark_data import is_spark_source

    return is_spark_source(dataset)


def check_evaluation(
    project: ProjectConfig, *, w: WorkspaceClient | None = None, deploying: bool = False, replay: bool = False
) -> list[str]:
    """Check ``project.evaluation``; the lines of what was checked, or one ConfigError line.

    ``w``: the workspace, to look up candidates on endpoints other than the config's (and on
    the config's when ``deploying`` is False: then it must exist already). ``deploying``: the
    chain deploys the config's endpoint first, so its served entities are those of the config.
    ``replay``: the rows come from an inference table, not the dataset.
    """
    ev = project.evaluation
    lines = []
    if not replay and ev.engine == "spark" and _spark_source(ev.dataset):
        from llmops_nb.evaluation.spark_data import check_spark_config, read_dataset, spark_session

        check_spark_config(ev.spark)
        columns = read_dataset(spark_session(ev.spark.master), ev.dataset).columns  # exists, has the columns
        lines.append(f"dataset: {ev.dataset} read on Spark, with {', '.join(c for c in columns if c != 'position')}")
    elif not replay and ev.engine == "ai_query" and is_table(ev.dataset):
        if w is None:
            lines.append(f"dataset: {ev.dataset}, a table read on the SQL warehouse when the evaluation runs")
        else:
            read_table_rows(w, ev.ai_query.warehouse_id or "", ev.dataset, 1)  # exists, has the columns
            lines.append(f"dataset: {ev.dataset} read on SQL warehouse {ev.ai_query.warehouse_id}, with id, question, expected")
    elif not replay:
        rows = load_dataset(ev.dataset)
        where = "the bundled dataset" if ev.dataset == BUNDLED else ev.dataset
        lines.append(f"dataset: {len(rows)} rows in {where}, each with id, question and expected")
    if ev.json_schema is not None:
        from llmops_nb.evaluation.datasets import load_json_schema

        load_json_schema(ev.json_schema)
        lines.append(f"json_schema: {ev.json_schema} is a valid JSON Schema (answers scored as json_schema_match)")
    if ev.judge_endpoint:
        lines.append(f"thresholds: not checked by name (the judge {ev.judge_endpoint} adds its own metrics)")
    else:
        check_threshold_names(ev.thresholds, KNOWN_METRICS)
        lines.append(f"thresholds: {len(ev.thresholds)} on known metrics" if ev.thresholds else "thresholds: none set")
    own = project.endpoint_name
    views: dict[str, dict[str, Any] | None] = {}
    for i, c in enumerate(ev.candidates):
        name = c.endpoint or own
        field = f"evaluation.candidates[{i}]"
        if name == own and deploying and project.endpoint is not None:
            entities = _entity_names(project)
        elif w is None:
            continue
        else:
            from llmops_nb.endpoints.ops import get_endpoint

            if name not in views:
                views[name] = get_endpoint(w, name)
            if views[name] is None:
                raise ConfigError(f"{field}.endpoint", name, "an existing serving endpoint (deploy it first, or fix the name)")
            entities = [str(e.get("name")) for e in ((views[name] or {}).get("config") or {}).get("served_entities") or []]
        if c.served_entity is not None and c.served_entity not in entities:
            raise ConfigError(
                f"{field}.served_entity", c.served_entity, f"a served entity of {name}: {', '.join(entities) or '(none)'}"
            )
    if ev.engine == "spark":
        from llmops_nb.evaluation.spark_data import check_spark_config

        check_spark_config(ev.spark)  # pyspark, Java 17+, where the results go: one line, before any step
        tasks = ev.spark.partitions or "one a core"
        lines.append(f"engine: spark (pyspark and Java found; {tasks} tasks, concurrency {ev.concurrency} split between them)")
    if ev.engine == "ai_query":
        mine = [] if deploying or project.endpoint is not None else [own]
        for asked in dict.fromkeys([*mine, *(c.endpoint for c in ev.candidates if c.endpoint)]):
            if w is not None:
                check_endpoint(w, asked)  # a foundation or external chat endpoint
        lines.append(
            f"engine: ai_query (SQL warehouse {ev.ai_query.warehouse_id}, {ev.ai_query.rows_per_statement} rows a statement; "
            "no latency or token usage per row)"
        )
    if ev.candidates:
        lines.append(f"candidates: {', '.join(ev.candidate_names)} (baseline {ev.baseline or 'the champion, else the first'})")
    if ev.prices:
        lines.append(f"prices: for {', '.join(ev.prices)}")
    return lines
