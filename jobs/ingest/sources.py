"""The ingest's input: files, folders or globs of CSV, JSON lines or Parquet, and the column mapping."""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping, Sequence

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.common import lake
from jobs.common.errors import JobError
from jobs.ingest.transforms import SOURCE_FILE_COL
from recsys import schema as S

FORMATS: tuple[str, ...] = ("csv", "json", "parquet")
_EXTENSIONS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".ndjson": "json", ".parquet": "parquet"}
_COMPRESSION = (".gz", ".bz2", ".zst", ".lz4", ".snappy", ".deflate")

FIELDS: dict[str, tuple[str, ...]] = {
    lake.INTERACTIONS: S.INTERACTION_FIELDS,
    lake.PRODUCTS: (*S.PRODUCT_FIELDS, S.COL_UPDATED_AT),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    lake.INTERACTIONS: (S.COL_USER, S.COL_ITEM, S.COL_EVENT_TYPE, S.COL_TS),
    lake.PRODUCTS: (S.COL_ITEM, S.COL_TITLE),
}


def parse_mapping(text: str | None, *, table: str) -> dict[str, str]:
    """Parses ``--map "theirs=ours,..."`` into ``{theirs: ours}``; each target must be a column of ``table``.

    Raises:
        JobError: A pair is malformed, a target is not a column of the table, or two columns map to one.

    Example:
        >>> parse_mapping("customer=user_id,sku=product_id", table="interactions")
        {'customer': 'user_id', 'sku': 'product_id'}
    """
    if not text:
        return {}
    mapping: dict[str, str] = {}
    for pair in text.split(","):
        theirs, sep, ours = (part.strip() for part in pair.partition("="))
        if not sep or not theirs or not ours:
            raise JobError(f"--map: expected theirs=ours pairs separated by commas, got {pair!r}")
        if ours not in FIELDS[table]:
            raise JobError(
                f"--map: {ours!r} is not a column of {table} (columns: {', '.join(FIELDS[table])})"
            )
        if ours in mapping.values():
            raise JobError(f"--map: two input columns map to {ours!r}")
        mapping[theirs] = ours
    return mapping


def format_of(name: str) -> str | None:
    """The input format a file name implies (``events.csv.gz`` -> ``csv``), or None."""
    base = name.lower()
    for suffix in _COMPRESSION:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return _EXTENSIONS.get(os.path.splitext(base)[1])


def input_files(path: str) -> list[str]:
    """The data files a local file, folder or glob names (hidden and ``_``-prefixed files skipped)."""
    matches = sorted(glob.glob(path)) if glob.has_magic(path) else [path] if os.path.exists(path) else []
    files: list[str] = []
    for match in matches:
        if os.path.isdir(match):
            files += sorted(
                os.path.join(match, f)
                for f in os.listdir(match)
                if not f.startswith((".", "_")) and os.path.isfile(os.path.join(match, f))
            )
        else:
            files.append(match)
    return files


def resolve_format(path: str, fmt: str | None) -> str:
    """The format to read ``path`` with: ``fmt`` when given, else inferred from the file extensions.

    Raises:
        JobError: ``fmt`` is unknown, nothing matches a local ``path``, or the format cannot be inferred.
    """
    if fmt is not None:
        if fmt not in FORMATS:
            raise JobError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        if "://" not in path and not input_files(path):
            raise JobError(f"--input {path}: no such file, folder or matching files")
        return fmt
    if "://" in path:
        found = {format_of(path)}
    else:
        files = input_files(path)
        if not files:
            raise JobError(f"--input {path}: no such file, folder or matching files")
        found = {format_of(f) for f in files}
    if None in found or len(found) != 1:
        raise JobError(f"--input {path}: cannot infer one format from the file names; pass --format")
    return str(found.pop())


# Spark's error when a file of the input cannot be read while the batch is computed (the read is lazy).
_FAILED_READ = re.compile(r"\[(FAILED_READ_FILE[.\w]*)\] Encountered error while reading file (\S+?)\. ([^\n]*)")
_NANOS_HINT = (
    " (a timestamp stored in nanoseconds, as pandas and pyarrow may write it, which Spark cannot read: write it "
    "in microseconds, e.g. pyarrow.parquet.write_table(..., coerce_timestamps='us'))"
)


def read_input(spark: SparkSession, path: str, fmt: str) -> DataFrame:
    """Reads ``path`` in format ``fmt`` (CSV and JSON values as strings) with each row's source file.

    CSV needs a header row; JSON means JSON lines (one object per line).

    Example:
        >>> read_input(spark, "data/raw/events.csv", "csv").columns[-1]
        '_source_file'
    """
    reader = spark.read
    if fmt == "csv":
        reader = reader.option("header", True).option("inferSchema", False)
    elif fmt == "json":
        reader = reader.option("primitivesAsString", True)
    try:
        df = reader.format(fmt).load(path)
        return df.select("*", F.col("_metadata.file_path").alias(SOURCE_FILE_COL))
    except AnalysisException as exc:
        first = str(exc).splitlines()[0]
        hint = _NANOS_HINT if "TIMESTAMP(NANOS" in first else ""
        raise JobError(f"--input {path}: cannot read as {fmt}: {first}{hint}") from exc


def read_failure(exc: BaseException, label: str) -> JobError | None:
    """The clear error for an input file Spark failed to read during the batch, None for any other error.

    Example:
        >>> read_failure(exc, "data/raw/events").args[0]
        "--input data/raw/events: cannot read file:///data/raw/events/part-1.parquet: Data type mismatches ..."
    """
    found = _FAILED_READ.search(str(exc))
    if found is None:
        return None
    kind, file, detail = found.groups()
    detail = detail.split(" SQLSTATE:")[0].strip()
    if kind.endswith("PARQUET_COLUMN_DATA_TYPE_MISMATCH") and "Expected Spark type timestamp" in detail:
        detail += _NANOS_HINT
    return JobError(f"--input {label}: cannot read {file}: {detail}")


def check_columns(
    df: DataFrame, *, table: str, label: str, mapping: Mapping[str, str], required: Sequence[str]
) -> None:
    """Stops with an error naming the input and the column when a mapped or required column is absent.

    Raises:
        JobError: A ``--map`` source column is not in the input, or a required column is missing.
    """
    columns = [c for c in df.columns if c != SOURCE_FILE_COL]
    for theirs in mapping:
        if theirs not in columns:
            raise JobError(
                f"{label}: --map names column {theirs!r}, which is not in the input "
                f"(columns: {', '.join(columns)})"
            )
    renamed = [mapping.get(c, c) for c in columns]
    for column in required:
        if column not in renamed:
            raise JobError(
                f"{label}: required column {column!r} of {table} is missing after --map "
                f"(columns: {', '.join(renamed)})"
            )
