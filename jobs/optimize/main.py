"""OPTIMIZE ... ZORDER BY the id columns, then VACUUM: the lake's answer to "indexes on userId and productId".

Delta keeps min/max statistics of the first columns of every data file; Z-ordering the rows of each partition
by ``(user_id, product_id)`` makes those ranges narrow, so a lookup by user or product skips most files
(data skipping). The interactions table is partitioned by ``user_bucket``, which rules out liquid clustering
(Delta does not combine it with partitioning): Z-order runs within each bucket. See ``docs/lake.md``.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.common import lake
from jobs.common.errors import JobError
from jobs.common.progress import Stages
from recsys import schema as S
from recsys.config import Config

DESCRIPTION = "Z-order the lake tables by their id columns (data skipping for lookups) and VACUUM"
ZORDER: dict[str, tuple[str, ...]] = {
    lake.INTERACTIONS: (S.COL_USER, S.COL_ITEM),
    lake.PRODUCTS: (S.COL_ITEM,),
    # One small file per ingest that records new files: compacting it keeps --new-files-only's read cheap.
    lake.INGESTED_FILES: ("path",),
}
DEFAULT_TABLES = (lake.INTERACTIONS, lake.PRODUCTS)
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tables",
        default=",".join(DEFAULT_TABLES),
        help=f"comma-separated tables of {', '.join(ZORDER)} (default {','.join(DEFAULT_TABLES)})",
    )
    parser.add_argument("--skip-vacuum", action="store_true", help="do not VACUUM after OPTIMIZE")
    parser.add_argument(
        "--no-probe", action="store_true", help="do not measure the files a lookup by one id reads"
    )


@dataclass(frozen=True)
class FileStats:
    """Data files of the current table version and their total size."""

    files: int
    bytes: int

    @property
    def mean_mb(self) -> float:
        return self.bytes / self.files / 1e6 if self.files else 0.0


def file_stats(spark: SparkSession, path: str) -> FileStats:
    detail = DeltaTable.forPath(spark, path).detail().first()
    assert detail is not None
    return FileStats(int(detail["numFiles"]), int(detail["sizeInBytes"]))


def optimize_table(spark: SparkSession, path: str, columns: tuple[str, ...], *, target_file_mb: int) -> dict:
    """Runs ``OPTIMIZE ... ZORDER BY columns`` (every partition) and returns Delta's metrics."""
    spark.conf.set("spark.databricks.delta.optimize.maxFileSize", str(target_file_mb * 1024 * 1024))
    result = DeltaTable.forPath(spark, path).optimize().executeZOrderBy(*columns).first()
    metrics = result["metrics"] if result is not None else None
    return {} if metrics is None else metrics.asDict()


def files_read(df: DataFrame) -> dict[str, int]:
    """Runs ``df`` and returns what its file scans read: ``files`` after partition pruning and data skipping.

    Read from the executed plan's scan metrics (the "number of files read" of the Spark UI).

    Example:
        >>> files_read(spark.read.format("delta").load(path).where("user_id = 'u1'"))
        {'files': 1, 'rows': 12}
    """
    counted = df.agg(F.count(F.lit(1)).alias("rows"))
    row = counted.collect()[0]
    # Scan metrics live only on the JVM plan that ran, i.e. the one of this very Dataset.
    plan = counted._jdf.queryExecution().executedPlan()  # noqa: SLF001
    return {"files": _scan_files(plan), "rows": int(row["rows"]) if row else 0}


def _scan_files(plan: Any) -> int:
    if plan.nodeName() == "AdaptiveSparkPlan":
        plan = plan.executedPlan()
    if "QueryStage" in plan.nodeName():
        plan = plan.plan()
    total = 0
    metrics = plan.metrics()
    if "Scan" in plan.nodeName() and metrics.contains("numFiles"):
        total += int(metrics.apply("numFiles").value())
    children = plan.children()
    for i in range(children.size()):
        total += _scan_files(children.apply(i))
    for i in range(plan.subqueries().size()):
        total += _scan_files(plan.subqueries().apply(i))
    return total


def lookup_probe(
    spark: SparkSession, path: str, column: str, *, buckets: int | None
) -> list[tuple[str, dict]]:
    """Files read by a lookup of one existing ``column`` value: by stats alone and with the bucket filter."""
    table = lake.read_table(spark, path)
    first = table.select(column).where(F.col(column).isNotNull()).limit(1).first()
    if first is None:
        return []
    value = first[0]
    probes: list[tuple[str, Column]] = [(f"{column} = {value!r}", F.col(column) == value)]
    if buckets is not None:
        bucket = lake.user_bucket(F.lit(value), buckets)
        probes.append(
            (
                f"{column} = {value!r} and its user_bucket",
                (F.col(column) == value) & (F.col(S.COL_USER_BUCKET) == bucket),
            )
        )
    return [(label, files_read(table.where(cond))) for label, cond in probes]


def run(args: argparse.Namespace, cfg: Config, spark: SparkSession) -> int:
    names = [t.strip() for t in args.tables.split(",") if t.strip()]
    unknown = [t for t in names if t not in ZORDER]
    if unknown or not names:
        raise JobError(f"--tables: {', '.join(unknown) or '(none)'} not one of {', '.join(ZORDER)}")
    stages = Stages("optimize")
    for name in names:
        path = cfg.table_path(name)
        if not lake.table_exists(spark, path):
            raise JobError(f"table {name} does not exist at {path}: run the ingest first")
        before = file_stats(spark, path)
        with stages(f"optimize {name}"):
            metrics = optimize_table(spark, path, ZORDER[name], target_file_mb=cfg.lake.target_file_mb)
        if not args.skip_vacuum:
            with stages(f"vacuum {name}"):
                DeltaTable.forPath(spark, path).vacuum()
        after = file_stats(spark, path)
        print(f"{name}: ZORDER BY ({', '.join(ZORDER[name])})")
        print(
            f"  files  {before.files:>8,} -> {after.files:>8,}  (mean {before.mean_mb:.2f} -> "
            f"{after.mean_mb:.2f} MB; {metrics.get('numFilesRemoved', 0):,} removed, "
            f"{metrics.get('numFilesAdded', 0):,} added)"
        )
        if not args.no_probe:
            buckets = cfg.lake.user_buckets if name == lake.INTERACTIONS else None
            for column in ZORDER[name]:
                for label, got in lookup_probe(
                    spark, path, column, buckets=buckets if column == S.COL_USER else None
                ):
                    files, rows = got["files"], got["rows"]
                    print(f"  lookup {label}: reads {files:,} of {after.files:,} files ({rows:,} rows)")
    if not args.skip_vacuum:
        print(
            "VACUUM kept the default retention (7 days): files replaced by OPTIMIZE stay on disk for time "
            "travel until they are older than that."
        )
    return 0
