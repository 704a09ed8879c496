"""The ingest's input: files, folders or globs of CSV, JSON lines or Parquet, and the column mapping."""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

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
    """The data files a local file, folder or glob names, partition folders (``day=.../``) included.

    Hidden and ``_``-prefixed files and folders are skipped, as Spark's readers skip them.
    """
    matches = sorted(glob.glob(path)) if glob.has_magic(path) else [path] if os.path.exists(path) else []
    files: list[str] = []
    for match in matches:
        if os.path.isdir(match):
            for folder, subfolders, names in os.walk(match):
                subfolders[:] = sorted(d for d in subfolders if not d.startswith((".", "_")))
                files += sorted(os.path.join(folder, f) for f in names if not f.startswith((".", "_")))
        else:
            files.append(match)
    return files


@dataclass(frozen=True)
class InputFile:
    """One data file of an input as its filesystem lists it (no data read)."""

    path: str
    size: int
    modified: int  # milliseconds since the epoch


def _hadoop_fs(spark: SparkSession, path: str):  # noqa: ANN202 - a py4j (FileSystem, Path) pair
    jvm = spark.sparkContext._jvm
    assert jvm is not None  # a live session has a gateway
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hpath


def _listing(spark: SparkSession, path: str) -> dict[str, InputFile]:
    """Every file under ``path`` (recursively, hidden and ``_``-prefixed entries skipped), by Hadoop path."""
    fs, root = _hadoop_fs(spark, path)
    found: dict[str, InputFile] = {}
    for status in fs.globStatus(root) or []:
        base = status.getPath().toString()
        if status.isDirectory():
            files = fs.listFiles(status.getPath(), True)
            while files.hasNext():
                f = files.next()
                name = f.getPath().toString()
                below = name[len(base) :].lstrip("/").split("/")
                if not any(part.startswith((".", "_")) for part in below):
                    found[name] = InputFile(name, int(f.getLen()), int(f.getModificationTime()))
        else:
            found[base] = InputFile(base, int(status.getLen()), int(status.getModificationTime()))
    return found


def _hadoop_form(uri: str) -> str:
    """``file:///a/b%20c`` (a URI, as Spark names its input files) -> ``file:/a/b c`` (a Hadoop path)."""
    parts = urlsplit(uri)
    path = unquote(parts.path)
    return f"{parts.scheme}://{parts.netloc}{path}" if parts.netloc else f"{parts.scheme}:{path}"


def list_files(spark: SparkSession, path: str, df: DataFrame) -> list[InputFile]:
    """The files ``df``, a read of ``path``, reads, with their sizes and modification times; sorted by path.

    The names are those of Spark's file index (a folder's nested non-partition folders are not read, for
    example); sizes and modification times come from one listing through the Hadoop filesystem of the path
    (local, ``s3a://``, ...). No data is read.

    Example:
        >>> list_files(spark, "data/raw/sample/events", read_input(spark, "data/raw/sample/events", "parquet"))[0]
        InputFile(path='file:/.../data/raw/sample/events/part-00000.parquet', size=4046213, modified=...)
    """
    listed = _listing(spark, path)
    files: list[InputFile] = []
    for uri in df.inputFiles():
        found = listed.get(_hadoop_form(uri))
        if found is None:  # a name the listing spells otherwise: ask the filesystem for it
            fs, hpath = _hadoop_fs(spark, uri)
            status = fs.getFileStatus(hpath)
            found = InputFile(status.getPath().toString(), int(status.getLen()), int(status.getModificationTime()))
        files.append(found)
    return sorted(files, key=lambda f: f.path)


def is_folder(spark: SparkSession, path: str) -> bool:
    """Whether ``path`` names one folder (not a file, not a glob) on its Hadoop filesystem."""
    fs, hpath = _hadoop_fs(spark, path)
    return bool(not glob.has_magic(path) and fs.exists(hpath) and fs.getFileStatus(hpath).isDirectory())


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


def read_input(spark: SparkSession, path: str, fmt: str, files: Sequence[str] | None = None) -> DataFrame:
    """Reads ``path`` in format ``fmt`` (CSV and JSON values as strings) with each row's source file.

    CSV needs a header row; JSON means JSON lines (one object per line). ``files`` reads only those files of
    ``path`` (as :func:`list_files` names them); a folder stays their base path, so partition folders
    (``day=.../``) give the same columns as a read of the whole folder.

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
        if files is None:
            df = reader.format(fmt).load(path)
        else:
            if is_folder(spark, path):
                reader = reader.option("basePath", path)
            df = reader.format(fmt).load(list(files))
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
