"""The direct-read path of the ``recommendations:user`` load: each task reads its Parquet files with pyarrow.

Spark distributes only the file list of the Delta table's current snapshot (``sc.parallelize``, at most
``spark.default.parallelism`` tasks); each task opens its files with ``pyarrow.parquet``, shapes every batch as
:func:`jobs.load.transforms.wire_lists` hands it to ``mapInArrow`` and writes it with
:func:`jobs.load.writer.write_rows` over one connection. No row goes through the JVM's Parquet reader and
row-to-Arrow conversion, the larger part of the Spark path's time (``docs/redis.md``, "Bulk-load
throughput"). A table in fewer files than that parallelism (a small blend output, or one compacted by
OPTIMIZE) has each file split between tasks by row group, the unit Spark's own read splits a file by.

A Delta file is plain Parquet only when the snapshot needs nothing but its file list: :func:`plain_files`
returns ``None`` (and the load keeps the Spark path) for deletion vectors (a MERGE or DELETE then marks rows
of a file as deleted without rewriting it), column mapping (the files hold physical column names) and
partitioned tables (the partition values are in the log, not in the files).

Example:
    >>> files = plain_files(spark, cfg.table_path("recommendations"))
    >>> if files is not None:
    ...     stats = write_user_lists(spark, files, ttl=3600, target=target, version=None)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.sql import Row, SparkSession

from jobs.common.errors import JobError
from jobs.load import transforms as tr
from jobs.load.writer import STATS_COLUMNS, Target, write_rows
from recsys import schema as S
from recsys.batch_encoding import SEPARATOR

log = logging.getLogger(__name__)

COL_SCORED_AT = "scored_at"
COL_MODEL_VERSION = "model_version"
# The recommendations columns the load reads, with the Arrow types it accepts (what the blend writes).
_COLUMN_TYPES: dict[str, tuple[str, Callable[[pa.DataType], bool]]] = {
    S.COL_USER: ("string", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)),
    tr.COL_PRODUCT_IDS: (
        "array<string>",
        lambda t: _is_list(t) and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)),
    ),
    tr.COL_SCORES: ("array<float>", lambda t: _is_list(t) and pa.types.is_floating(t.value_type)),
    tr.COL_SOURCES: ("array<int>", lambda t: _is_list(t) and pa.types.is_integer(t.value_type)),
    COL_SCORED_AT: ("timestamp", pa.types.is_timestamp),
    COL_MODEL_VERSION: ("string", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)),
}
_LIST_COLUMNS = (S.COL_USER, tr.COL_PRODUCT_IDS, tr.COL_SCORES, tr.COL_SOURCES, COL_SCORED_AT)
_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):(?P<rest>.*)$")
_URI_SAFE = "/:@!$&'()*+,;=~"  # kept as they are when a Hadoop path becomes a URI


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


def file_system(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and path of a data file as Spark's ``inputFiles`` names it.

    Those are Hadoop paths, not URIs: ``file:/lake/my dir/part-0.parquet`` keeps its space unescaped, which
    ``FileSystem.from_uri`` rejects. Local files (``file:`` or no scheme) open with ``LocalFileSystem``; any
    other scheme is percent-encoded and resolved by ``FileSystem.from_uri`` (``s3://``, ``gs://``,
    ``hdfs://``, ``abfs://``; Hadoop-only schemes such as ``s3a://`` raise ``ValueError``).

    Example:
        >>> file_system("file:/tmp/lake/my dir/part-0.parquet")
        (<pyarrow._fs.LocalFileSystem ...>, '/tmp/lake/my dir/part-0.parquet')
    """
    m = _URI.match(uri)
    if m is None:
        return pafs.LocalFileSystem(), uri
    scheme, rest = m["scheme"].lower(), m["rest"]
    if scheme != "file":
        return pafs.FileSystem.from_uri(f"{scheme}:{quote(rest, safe=_URI_SAFE)}")
    if rest.startswith("//"):  # file:///p or file://host/p
        host, _, path = rest[2:].partition("/")
        if host not in ("", "localhost"):
            raise ValueError(f"{uri}: a file: path on another host ({host})")
        rest = "/" + path
    return pafs.LocalFileSystem(), rest


def _snapshot_reason(detail: Row) -> str | None:
    """Why the snapshot's files are not plain Parquet (``DeltaTable.detail()``'s row), or ``None``."""
    props = {k: str(v).lower() for k, v in (detail["properties"] or {}).items()}
    features = detail.asDict().get("tableFeatures")  # in Delta 4.4's DESCRIBE DETAIL, not in every version
    if detail["partitionColumns"]:
        return f"partitioned by {', '.join(detail['partitionColumns'])}: partition values are not in the files"
    if props.get("delta.columnmapping.mode", "none") != "none":
        return f"column mapping ({props['delta.columnmapping.mode']}): the files hold physical column names"
    if "deletionVectors" in (features or ()) or props.get("delta.enabledeletionvectors") == "true":
        return "deletion vectors: rows a MERGE or DELETE removed may still be in the files"
    if features is None and int(detail["minReaderVersion"]) >= 3:
        return "reader version 3 and no tableFeatures in DESCRIBE DETAIL: the table's features are unknown"
    return None


def plain_files(spark: SparkSession, path: str) -> list[str] | None:
    """The data files of the Delta table's current snapshot when pyarrow can read them as plain Parquet.

    Args:
        spark: The session.
        path: The Delta table.

    Returns:
        The files (Spark's ``inputFiles``, e.g. ``file:/lake/recommendations/part-0.parquet``), or ``None``
        when the table has deletion vectors, column mapping or partitions, or pyarrow has no filesystem for
        the files' scheme. Which path is taken, and why, is logged at INFO.

    Example:
        >>> plain_files(spark, "data/lake/recommendations")
        ['file:/.../data/lake/recommendations/part-00000-....snappy.parquet']
    """
    # Driver only: the tasks import this module, and need no delta-spark (the Spark path's tasks do not either).
    from delta.tables import DeltaTable

    from jobs.common import lake

    # The files first, the features after: a snapshot with deletion vectors has the feature from then on.
    files = sorted(lake.read_table(spark, path).inputFiles())
    reason = _snapshot_reason(DeltaTable.forPath(spark, path).detail().first())
    if reason is None and files:
        try:
            file_system(files[0])
        except (ValueError, OSError) as exc:  # pyarrow.ArrowInvalid is a ValueError
            reason = f"pyarrow cannot open {files[0]}: {str(exc).splitlines()[0]}"
    if reason is not None:
        log.info("load user: Spark reads %s (%s)", path, reason)
        return None
    log.info("load user: direct pyarrow read of %s (%d Parquet file(s))", path, len(files))
    return files


def check_schema(schema: pa.Schema, *, uri: str, version: str | None) -> None:
    """Raises ``JobError`` naming the file and column when a column the load reads is missing or mistyped."""
    for name in (*_LIST_COLUMNS, *((COL_MODEL_VERSION,) if version is not None else ())):
        expected, accepts = _COLUMN_TYPES[name]
        if schema.get_field_index(name) < 0:
            raise JobError(f"{uri}: no column {name!r} (or more than one); the load reads {', '.join(_LIST_COLUMNS)}")
        if not accepts(schema.field(name).type):
            raise JobError(f"{uri}: column {name!r} is {schema.field(name).type}, expected {expected}")


def wire_batch(batch: pa.RecordBatch, *, version: str | None = None) -> pa.RecordBatch:
    """A batch of ``recommendations`` rows as :func:`~jobs.load.transforms.wire_lists` ships it to the writer.

    ``created_at`` is ``scored_at`` in epoch seconds computed as Spark's ``cast("double")`` does (microseconds
    since the epoch, as a double, divided by 1e6), so the values are the Spark path's byte for byte.

    Example:
        >>> wire_batch(pq.ParquetFile(path).read_row_group(0).to_batches()[0], version="blend-v2").schema.names
        ['id', 'product_ids_joined', 'scores', 'sources', 'created_at']
    """
    if version is not None:
        batch = batch.filter(pc.equal(batch.column(COL_MODEL_VERSION), version))  # a null version drops the row
    scored_at = batch.column(COL_SCORED_AT)
    micros = scored_at.cast(pa.timestamp("us", tz=scored_at.type.tz)).cast(pa.int64())
    return pa.RecordBatch.from_arrays(
        [
            batch.column(S.COL_USER),
            pc.binary_join(batch.column(tr.COL_PRODUCT_IDS), SEPARATOR),
            batch.column(tr.COL_SCORES),
            batch.column(tr.COL_SOURCES),
            pc.divide(micros.cast(pa.float64()), 1e6),
        ],
        names=[tr.COL_ID, tr.COL_IDS_JOINED, tr.COL_SCORES, tr.COL_SOURCES, tr.COL_CREATED_AT],
    )


def _row_groups(meta: pq.FileMetaData, *, part: int, parts: int, version: str | None) -> list[int]:
    """Row groups ``part``, ``part + parts``, ... whose ``model_version`` statistics do not rule ``version`` out."""
    share = range(part, meta.num_row_groups, parts)
    if version is None:
        return list(share)
    leaf = next(i for i in range(meta.num_columns) if meta.schema.column(i).path == COL_MODEL_VERSION)
    keep = []
    for g in share:
        stats = meta.row_group(g).column(leaf).statistics
        if stats is None or not stats.has_min_max:
            keep.append(g)
            continue
        lo, hi = (v.decode() if isinstance(v, bytes) else v for v in (stats.min, stats.max))
        if lo <= version <= hi:
            keep.append(g)
    return keep


def file_batches(
    uri: str, *, batch_size: int, version: str | None = None, part: int = 0, parts: int = 1
) -> Iterator[pa.RecordBatch]:
    """The writer's batches of one data file: only the needed columns, ``version``'s rows if given.

    ``part`` of ``parts`` reads every ``parts``-th row group from the ``part``-th (a file split between tasks).

    Raises:
        JobError: The file is not Parquet, or a column is missing or of another type (naming both).
    """
    fs, path = file_system(uri)
    columns = [*_LIST_COLUMNS, *((COL_MODEL_VERSION,) if version is not None else ())]
    try:
        parquet = pq.ParquetFile(path, filesystem=fs, coerce_int96_timestamp_unit="us")
    except pa.ArrowInvalid as exc:
        raise JobError(f"{uri}: not a readable Parquet file ({exc})") from exc
    with parquet:
        check_schema(parquet.schema_arrow, uri=uri, version=version)
        groups = _row_groups(parquet.metadata, part=part, parts=parts, version=version)
        if not groups:
            return
        for batch in parquet.iter_batches(batch_size=batch_size, columns=columns, row_groups=groups):
            wired = wire_batch(batch, version=version)
            if wired.num_rows:
                yield wired


def _task(
    *, ttl: int, target: Target, batch_size: int, version: str | None
) -> Callable[[Iterable[tuple[str, int, int]]], Iterator[dict[str, Any]]]:
    """The ``mapPartitions`` function: one connection writes the task's files; yields one stats dict."""

    def run(units: Iterable[tuple[str, int, int]]) -> Iterator[dict[str, Any]]:
        batches = (
            b
            for uri, part, parts in units
            for b in file_batches(uri, batch_size=batch_size, version=version, part=part, parts=parts)
        )
        try:
            stats = write_rows(batches, kind="user", ttl=ttl, target=target)
        except JobError as exc:  # bad input: reported once on the driver, not retried as a failed task
            yield {"error": str(exc)}
            return
        yield {**stats, "error": None}

    return run


def write_user_lists(
    spark: SparkSession, files: list[str], *, ttl: int | None, target: Target, version: str | None = None
) -> dict[str, object]:
    """Writes the ``recommendations:user`` keys of ``files`` from the executors; the counts as ``write_kind``'s.

    Args:
        spark: The session (its ``spark.default.parallelism`` bounds the tasks, its
            ``spark.sql.execution.arrow.maxRecordsPerBatch`` sizes the batches).
        files: The table's data files (:func:`plain_files`).
        ttl: The keys' TTL in seconds.
        target: Connection and pipeline settings.
        version: Only the rows of this ``model_version`` (an incremental load).

    Returns:
        ``keys``, ``deleted``, ``value_bytes``, ``retries`` summed over the tasks and the comma-joined
        ``server_ids`` they saw.

    Raises:
        JobError: A file is not Parquet or lacks a column (the message names both).

    Example:
        >>> write_user_lists(spark, plain_files(spark, path), ttl=3600, target=target)
        {'keys': 2, 'deleted': 1, 'value_bytes': 61, 'retries': 0, 'server_ids': '5f1c...'}
    """
    if ttl is None or ttl <= 0:
        raise ValueError(f"lists need a positive ttl, got {ttl}")
    sc = spark.sparkContext
    # (file, part, parts): a file is split by row group only when there are fewer files than cores.
    parts = max(1, sc.defaultParallelism // max(len(files), 1))
    units = [(uri, part, parts) for uri in files for part in range(parts)]
    slices = max(1, min(len(units), sc.defaultParallelism))
    batch_size = int(spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch") or 10_000)
    if batch_size <= 0:  # Spark's "no limit": one batch per row group
        batch_size = 2**31 - 1
    task = _task(ttl=ttl, target=target, batch_size=batch_size, version=version)
    stats = sc.parallelize(units, slices).mapPartitions(task).collect()
    errors = sorted({str(p["error"]) for p in stats if p["error"]})  # the tasks sharing a file report it alike
    if errors:
        more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
        raise JobError(errors[0] + more)
    out: dict[str, object] = {c: sum(int(p[c]) for p in stats) for c in STATS_COLUMNS if c != "server_ids"}
    out["server_ids"] = ",".join(sorted({s for p in stats for s in str(p["server_ids"]).split(",") if s}))
    return out
