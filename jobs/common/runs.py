"""Run records: one row per model run in the Delta ``runs`` table, shared by every model job."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from jobs.common import lake

_RUNS_LOCK = threading.Lock()

RUNS_SCHEMA = T.StructType(
    [
        T.StructField("job", T.StringType(), False),
        T.StructField("model_version", T.StringType(), False),
        T.StructField("started_at", T.TimestampType(), False),
        T.StructField("finished_at", T.TimestampType(), False),
        T.StructField("params", T.StringType(), True),
        T.StructField("metrics", T.StringType(), True),
        T.StructField("timings", T.StringType(), True),
        T.StructField("row_counts", T.StringType(), True),
    ]
)
JSON_FIELDS = ("params", "metrics", "timings", "row_counts")


def model_version(prefix: str, now: datetime) -> str:
    """``<prefix>-YYYYmmddTHHMMSSZ`` of a UTC time.

    Example:
        >>> model_version("als", datetime(2026, 1, 2, 3, 4, 5))
        'als-20260102T030405Z'
    """
    return f"{prefix}-{now.strftime('%Y%m%dT%H%M%SZ')}"


def write_run_record(spark: SparkSession, path: str, record: Mapping[str, Any]) -> None:
    """Upserts one run record into the Delta table at ``path`` (keyed by job and model_version).

    Args:
        spark: The session.
        path: The ``runs`` table location (``cfg.table_path(lake.RUNS)``).
        record: ``job``, ``model_version``, ``started_at``, ``finished_at`` and the mappings ``params``,
            ``metrics``, ``timings``, ``row_counts`` (stored as JSON strings).

    Example:
        >>> write_run_record(spark, cfg.table_path("runs"), {"job": "als", "model_version": "als-2026...",
        ...     "started_at": t0, "finished_at": t1, "params": {"rank": 64}, "metrics": {}, "timings": {},
        ...     "row_counts": {}})
    """
    missing = [f.name for f in RUNS_SCHEMA.fields if f.name not in record]
    if missing:
        raise ValueError(f"run record is missing {', '.join(missing)}")
    row = tuple(
        json.dumps(record[f.name], sort_keys=True, default=str) if f.name in JSON_FIELDS else record[f.name]
        for f in RUNS_SCHEMA.fields
    )
    df = spark.createDataFrame([row], RUNS_SCHEMA)
    # The pipeline's concurrent stages (als alongside content) record their runs in this one table: in one
    # process they take turns; writers in other processes that conflict go again (a MERGE of one keyed row).
    with _RUNS_LOCK:
        lake.retry_conflicts(lambda: _merge_record(spark, path, df), what=f"{path} ({record['job']})")


def _merge_record(spark: SparkSession, path: str, df: DataFrame) -> None:
    table = DeltaTable.createIfNotExists(spark).location(path).addColumns(RUNS_SCHEMA).execute()
    (
        table.alias("t")
        .merge(df.alias("s"), "t.job = s.job AND t.model_version = s.model_version")
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute()
    )
