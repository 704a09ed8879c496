"""The ``ingested_files`` table: which input files each lake table's rows were ingested from.

A file is recorded (table, path, size, modification time) once its rows are in the lake: after the MERGE,
and only when the job succeeds (a batch over the quarantine threshold records nothing, so the next run reads
its files again). ``ingest --new-files-only`` reads only the files not recorded with the same size and
modification time, so a nightly run over a growing folder reads the night's files, not the whole history.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.common import lake
from jobs.ingest.sources import InputFile
from recsys.config import Config

_KEY = ("path", "size", "modified")


def unrecorded(spark: SparkSession, cfg: Config, table: str, files: Sequence[InputFile]) -> list[InputFile]:
    """The ``files`` not recorded for ``table`` with the same size and modification time, sorted by path.

    The comparison is an anti-join in Spark: the record grows with every night's files.

    Example:
        >>> unrecorded(spark, cfg, "interactions", list_files(spark, "data/raw/events"))
        [InputFile(path='file:/.../data/raw/events/day=2026-11-29.parquet', size=80512, modified=...)]
    """
    path = cfg.table_path(lake.INGESTED_FILES)
    if not files or not lake.table_exists(spark, path):
        return list(files)
    listed = spark.createDataFrame(
        [(f.path, f.size, f.modified) for f in files], "path string, size long, modified long"
    )
    recorded = lake.read_table(spark, path).where(F.col("table") == table).select(*_KEY)
    new = listed.join(recorded, list(_KEY), "left_anti").orderBy("path").collect()
    return [InputFile(r["path"], int(r["size"]), int(r["modified"])) for r in new]


def record(
    spark: SparkSession, cfg: Config, table: str, files: Sequence[InputFile], *, run_id: str, now: datetime
) -> None:
    """Records ``files`` as ingested into ``table`` (an upsert by table and path: a rewritten file updates).

    The table is partitioned by ``table`` and the MERGE pins that partition (``within``), so the ingests of
    two tables running at the same time touch disjoint partitions and Delta does not fail either of them
    with a concurrent-append conflict; a conflict all the same (two first ingests creating the table) is
    retried.
    """
    if not files:
        return
    rows = spark.createDataFrame(
        [(table, f.path, f.size, f.modified, run_id, now.replace(tzinfo=None)) for f in files],
        lake.INGESTED_FILES_SCHEMA,
    )
    path, spec = cfg.table_path(lake.INGESTED_FILES), lake.TABLES[lake.INGESTED_FILES]
    lake.retry_conflicts(
        lambda: lake.merge_upsert(spark, rows, path, spec, within={"table": table}),
        what=f"{lake.INGESTED_FILES} ({table})",
    )
