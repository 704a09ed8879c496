"""The interaction lake: Delta table schemas, creation, idempotent MERGE upserts and versioned writes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from delta.exceptions import (
    ConcurrentAppendException,
    ConcurrentTransactionException,
    ConcurrentWriteException,
    MetadataChangedException,
    ProtocolChangedException,
)
from delta.tables import DeltaTable
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.common.errors import JobError
from recsys import schema as S

log = logging.getLogger(__name__)

INTERACTIONS = "interactions"
PRODUCTS = "products"
QUARANTINE = "quarantine"
# The input files each table's rows were ingested from (name, size, modification time), for --new-files-only.
INGESTED_FILES = "ingested_files"
# Derived tables written by the model jobs (each row tagged with model_version) and their run records.
USER_INDEX = "user_index"
ITEM_INDEX = "item_index"
ALS_USER_FACTORS = "als_user_factors"
ALS_ITEM_FACTORS = "als_item_factors"
CF_CANDIDATES = "cf_candidates"
ITEM_NEIGHBORS = "item_neighbors"
CONTENT_CANDIDATES = "content_candidates"
ITEMKNN_NEIGHBORS = "itemknn_neighbors"
RECOMMENDATIONS = "recommendations"
POPULAR = "popular"
RUNS = "runs"
# The users an incremental pipeline run rescores (jobs.common.scope), replaced by each such run.
RESCORED_USERS = "rescored_users"
# Columns with Delta file statistics in derived tables (overwrite_version): the first, their key.
DERIVED_STATS_COLUMNS = 1

INTERACTIONS_SCHEMA = T.StructType(
    [
        T.StructField(S.COL_EVENT_ID, T.StringType(), False),
        T.StructField(S.COL_USER, T.StringType(), False),
        T.StructField(S.COL_ITEM, T.StringType(), False),
        T.StructField(S.COL_EVENT_TYPE, T.StringType(), False),
        T.StructField(S.COL_QUANTITY, T.IntegerType(), False),
        T.StructField(S.COL_TS, T.TimestampType(), False),
        T.StructField(S.COL_SESSION, T.StringType(), True),
        T.StructField(S.COL_SOURCE, T.StringType(), True),
        T.StructField(S.COL_INGESTED_AT, T.TimestampType(), False),
        T.StructField(S.COL_USER_BUCKET, T.IntegerType(), False),
    ]
)

PRODUCTS_SCHEMA = T.StructType(
    [
        T.StructField(S.COL_ITEM, T.StringType(), False),
        T.StructField(S.COL_TITLE, T.StringType(), True),
        T.StructField(S.COL_CATEGORY, T.StringType(), False),
        T.StructField(S.COL_BRAND, T.StringType(), True),
        T.StructField(S.COL_PRICE, T.DoubleType(), True),
        T.StructField(S.COL_AVAILABLE, T.BooleanType(), False),
        T.StructField(S.COL_UPDATED_AT, T.TimestampType(), False),
    ]
)

QUARANTINE_SCHEMA = T.StructType(
    [
        T.StructField("table", T.StringType(), False),
        T.StructField("rule", T.StringType(), False),
        T.StructField("source_file", T.StringType(), True),
        T.StructField("raw", T.StringType(), True),
        T.StructField("run_id", T.StringType(), False),
        T.StructField("quarantined_at", T.TimestampType(), False),
    ]
)

INGESTED_FILES_SCHEMA = T.StructType(
    [
        T.StructField("table", T.StringType(), False),
        T.StructField("path", T.StringType(), False),
        T.StructField("size", T.LongType(), False),
        T.StructField("modified", T.LongType(), False),
        T.StructField("run_id", T.StringType(), False),
        T.StructField("ingested_at", T.TimestampType(), False),
    ]
)


@dataclass(frozen=True)
class TableSpec:
    """A lake table: its schema, partition columns, merge keys and the columns whose change is an update."""

    name: str
    schema: T.StructType
    partition_by: tuple[str, ...]
    keys: tuple[str, ...]
    compare: tuple[str, ...]


TABLES: dict[str, TableSpec] = {
    INTERACTIONS: TableSpec(
        INTERACTIONS,
        INTERACTIONS_SCHEMA,
        (S.COL_USER_BUCKET,),
        (S.COL_EVENT_ID,),
        (S.COL_USER, S.COL_ITEM, S.COL_EVENT_TYPE, S.COL_QUANTITY, S.COL_TS, S.COL_SESSION, S.COL_SOURCE),
    ),
    PRODUCTS: TableSpec(
        PRODUCTS,
        PRODUCTS_SCHEMA,
        (S.COL_CATEGORY,),
        (S.COL_ITEM,),
        (S.COL_TITLE, S.COL_CATEGORY, S.COL_BRAND, S.COL_PRICE, S.COL_AVAILABLE),
    ),
    QUARANTINE: TableSpec(QUARANTINE, QUARANTINE_SCHEMA, ("table",), (), ()),
    INGESTED_FILES: TableSpec(
        INGESTED_FILES, INGESTED_FILES_SCHEMA, ("table",), ("table", "path"), ("size", "modified")
    ),
}


# Delta's conflicts between two writers of one table (its Python classes share no base but PySparkException).
_CONFLICTS = (
    ConcurrentAppendException,
    ConcurrentTransactionException,
    ConcurrentWriteException,
    MetadataChangedException,
    ProtocolChangedException,
)
_T = TypeVar("_T")


def retry_conflicts(write: Callable[[], _T], *, what: str, attempts: int = 3) -> _T:
    """Runs ``write``, an idempotent write (a MERGE of the same rows), again when another writer conflicted.

    Two writers touching disjoint partitions do not conflict when the MERGE names its partition; two writing
    the same partition do, and the second simply goes again. (Two first writers creating the same table wait
    for each other in :func:`ensure_table`.) The last attempt's conflict is raised.
    """
    for attempt in range(1, attempts):
        try:
            return write()
        except _CONFLICTS as exc:
            log.info("%s: %s from a concurrent writer, trying again (%d)", what, type(exc).__name__, attempt)
    return write()


def user_bucket(col: Column | str, buckets: int) -> Column:
    """``pmod(xxhash64(user_id), buckets)``: the partition of a user's interactions."""
    if buckets <= 0:
        raise ValueError(f"buckets must be positive, got {buckets}")
    c = F.col(col) if isinstance(col, str) else col
    return F.pmod(F.xxhash64(c), F.lit(buckets)).cast("int")


# What a first writer of a table meets while another first writer creates the same table, besides a conflict
# with the other's CREATE TABLE commit (ProtocolChangedException): Delta's refusal to create a table where
# files are but no commit is (the other's _delta_log folder before its first commit), and a table found
# before its commit.
_BEING_CREATED = ("DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION", "DELTA_TABLE_NOT_FOUND")


def ensure_table(spark: SparkSession, path: str, spec: TableSpec, *, wait_s: float = 20.0) -> DeltaTable:
    """Creates the Delta table at ``path`` with the spec's schema and partitioning when it does not exist.

    When two first writers race to create the table, the one that loses tries again until the other's
    first commit lands, for up to ``wait_s`` seconds, and then uses that table. A location whose files never
    become a Delta table (another tool's files) raises Delta's error, which names it.

    Raises:
        JobError: The location still has a ``_delta_log`` folder without a commit after ``wait_s``: what a
            writer that died while creating the table leaves.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return (
                DeltaTable.createIfNotExists(spark)
                .location(path)
                .addColumns(spec.schema)
                .partitionedBy(*spec.partition_by)
                .execute()
            )
        except PySparkException as exc:  # Delta's exceptions share no narrower base
            condition = exc.getCondition()
            if not (isinstance(exc, ProtocolChangedException) or condition in _BEING_CREATED):
                raise
            if time.monotonic() >= deadline:
                if condition in _BEING_CREATED:
                    raise JobError(
                        f"{path}: its _delta_log folder still holds no commit after {wait_s:g} s ({condition}); "
                        "if no other job is creating this table, one died doing so: remove the folder and run "
                        "again"
                    ) from exc
                raise
            log.info("%s: another writer is creating the table (%s), trying again", path, type(exc).__name__)
            time.sleep(0.2)


def read_table(spark: SparkSession, path: str, *, version: int | None = None) -> DataFrame:
    """Reads the Delta table at ``path``: its current version, or ``version``."""
    reader = spark.read.format("delta")
    return (reader if version is None else reader.option("versionAsOf", version)).load(path)


def latest_version(spark: SparkSession, path: str) -> int:
    """The version of the latest commit of the Delta table at ``path``."""
    return int(DeltaTable.forPath(spark, path).history(1).first()["version"])


def table_exists(spark: SparkSession, path: str) -> bool:
    return DeltaTable.isDeltaTable(spark, path)


def merge_upsert(
    spark: SparkSession,
    df: DataFrame,
    path: str,
    spec: TableSpec,
    *,
    within: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """Upserts ``df`` into the table at ``path`` by the spec's keys (idempotent).

    A source row whose key is new is inserted; one whose key exists with any compared column different
    (null-safe) updates the target row; an identical row changes nothing, so re-running a file is a no-op.
    ``within`` pins partition columns to the value every row of ``df`` has (``{"table": "products"}``): the
    MERGE then reads that partition only, so writers of other partitions at the same time do not conflict.

    Returns:
        Delta's merge metrics: ``inserted``, ``updated`` and ``source_rows``.
    """
    table = ensure_table(spark, path, spec)
    on = F.expr(" AND ".join(f"t.`{k}` = s.`{k}`" for k in spec.keys))
    for column, value in (within or {}).items():
        on = on & (F.col(f"t.`{column}`") == F.lit(value))
    changed = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in spec.compare)
    (
        table.alias("t")
        .merge(df.alias("s"), on)
        .whenMatchedUpdateAll(condition=changed)
        .whenNotMatchedInsertAll()
        .execute()
    )
    metrics = table.history(1).select("operation", "operationMetrics").first()
    if metrics is None or metrics["operation"] != "MERGE":  # pragma: no cover - Delta always records it
        return {"inserted": 0, "updated": 0, "source_rows": 0}
    m = metrics["operationMetrics"]
    return {
        "inserted": int(m.get("numTargetRowsInserted", 0)),
        "updated": int(m.get("numTargetRowsUpdated", 0)),
        "source_rows": int(m.get("numSourceRows", 0)),
    }


def append(spark: SparkSession, df: DataFrame, path: str, spec: TableSpec) -> None:
    """Appends ``df`` to the table at ``path`` (used for the quarantine, whose rows carry their run id)."""
    ensure_table(spark, path, spec)
    df.select(*spec.schema.fieldNames()).write.format("delta").mode("append").save(path)


def overwrite_version(
    df: DataFrame, path: str, *, partition_by: Sequence[str] = (), user_metadata: str | None = None
) -> None:
    """Replaces a derived table (model outputs) whole: a rerun writes a new Delta version, readers see one.

    An unpartitioned table is written without Delta's optimized write: its files are then the partitions of
    the DataFrame's last shuffle (``spark.sql.shuffle.partitions`` at most, fewer once adaptive execution
    coalesces them), already few, so the optimized write's extra shuffle of every row would buy nothing.
    Partitioned tables keep it (one file per touched partition instead of one per task and partition).

    Delta keeps file statistics (min, max, nulls) on the first column only (``user_id`` or ``product_id`` in
    the per-user and per-product tables), which is what a lookup of one user or product skips files by; by
    default it computes them on the first 32 columns, which made the candidate tables' writes slower,
    and the jobs read these tables whole.

    ``user_metadata`` goes into the commit's ``userMetadata`` (the scope of a candidate table written for some
    users only, :mod:`jobs.common.scope`).
    """
    writer = (
        df.write.format("delta")
        .mode("overwrite")
        .option("overwriteSchema", "true")
        .option("delta.dataSkippingNumIndexedCols", str(DERIVED_STATS_COLUMNS))
    )
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    else:
        writer = writer.option("optimizeWrite", "false")
    if user_metadata is not None:
        writer = writer.option("userMetadata", user_metadata)
    writer.save(path)
