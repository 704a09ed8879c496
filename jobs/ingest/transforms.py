"""Pure transforms of the bulk ingest: input rows -> parsed, tagged batch -> lake rows and quarantine rows.

The batch keeps every input column as ``_raw_<name>`` next to the parsed column ``<name>``, so a rule can
tell a missing value from an unparseable one and a quarantined row is stored exactly as it was read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.common.lake import user_bucket
from jobs.ingest.quality import RAW_PREFIX, RULES_COL, raw_col
from recsys import schema as S

SOURCE_FILE_COL = "_source_file"
COPIES_COL = "_copies"
DEFAULT_QUANTITY = 1
DEFAULT_CATEGORY = "unknown"
DERIVED_ID_PREFIX = "h-"
_INT_MAX = 2**31 - 1


def rename_columns(df: DataFrame, *, mapping: Mapping[str, str]) -> DataFrame:
    """Renames the input's columns ``theirs -> ours`` (the ``--map`` option); other columns stay.

    Example:
        >>> rename_columns(df, mapping={"customer": "user_id"}).columns
        ['user_id', ...]
    """
    return df.withColumnsRenamed(dict(mapping)) if mapping else df


def with_raw_columns(df: DataFrame, *, fields: Sequence[str]) -> DataFrame:
    """Renames each input column ``c`` to ``_raw_c``; adds the absent ``fields`` as null ``_raw_`` columns.

    The source-file column keeps its name. Absent fields are null, which the parse turns into defaults.

    Example:
        >>> with_raw_columns(df, fields=["product_id", "title"]).columns
        ['_raw_product_id', '_raw_title', '_source_file']
    """
    present = [F.col(f"`{c}`").alias(raw_col(c)) if c != SOURCE_FILE_COL else F.col(c) for c in df.columns]
    absent = [F.lit(None).cast("string").alias(raw_col(f)) for f in fields if f not in df.columns]
    return df.select(*present, *absent)


def _raw_names(df: DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith(RAW_PREFIX)]


def clustered_by(df: DataFrame, column: str) -> DataFrame:
    """``df`` hash-partitioned by the input values of ``column`` when they are text, else ``df`` unchanged.

    The rows of one input id then share a partition, which serves both the exact-duplicate collapse (grouped
    by every input column, this one among them) and the uniqueness count of the parsed id (the same text,
    renamed): one shuffle instead of two. Input ids of another type parse through a cast, which would not keep
    the partitioning, so they are left to the two shuffles.

    Example:
        >>> collapse_duplicates(clustered_by(with_raw_columns(df, fields=f), "event_id"))
    """
    name = raw_col(column)
    if isinstance(df.schema[name].dataType, T.StringType):
        return df.repartition(F.col(name))
    return df


def collapse_duplicates(df: DataFrame) -> DataFrame:
    """Keeps one row per distinct input row, with the number of identical copies in ``_copies``.

    Exact duplicates are identical in every input column (wherever they came from); the first source file
    in name order is kept for the row.

    Example:
        >>> collapse_duplicates(with_raw_columns(df)).select("_copies")
    """
    raw = _raw_names(df)
    source = F.min(SOURCE_FILE_COL) if SOURCE_FILE_COL in df.columns else F.lit(None).cast("string")
    return df.groupBy(*raw).agg(F.count(F.lit(1)).alias(COPIES_COL), source.alias(SOURCE_FILE_COL))


def raw_value(df: DataFrame, column: str) -> Column:
    """The input value of ``column`` (see :func:`with_raw_columns`)."""
    name = raw_col(column)
    if name not in df.columns:
        raise ValueError(f"column {name} is missing: call with_raw_columns with the table's fields first")
    return F.col(name)


def raw_json(df: DataFrame) -> Column:
    """The input row as a JSON object with its original column names (for the quarantine)."""
    return F.to_json(F.struct(*[F.col(c).alias(c[len(RAW_PREFIX) :]) for c in _raw_names(df)]))


def as_string(df: DataFrame, column: str) -> Column:
    return raw_value(df, column).cast("string")


def as_int(df: DataFrame, column: str) -> Column:
    """An integer from a string or number; null when it is not a whole number in the int range."""
    d = raw_value(df, column).try_cast("double")
    ok = d.isNotNull() & ~F.isnan(d) & (F.abs(d) <= _INT_MAX) & (d == F.round(d))
    return F.when(ok, d.cast("int"))


def as_double(df: DataFrame, column: str) -> Column:
    return raw_value(df, column).try_cast("double")


def as_boolean(df: DataFrame, column: str) -> Column:
    return raw_value(df, column).try_cast("boolean")


def as_timestamp(df: DataFrame, column: str) -> Column:
    """A timestamp from ISO-8601 text, epoch seconds (text or number), a date or a timestamp."""
    c = raw_value(df, column)
    dtype = df.schema[raw_col(column)].dataType
    if isinstance(dtype, T.TimestampType | T.TimestampNTZType | T.DateType):
        return c.cast("timestamp")
    seconds = c.try_cast("double")
    finite = seconds.isNotNull() & ~F.isnan(seconds) & (F.abs(seconds) < 1e11)
    epoch = F.when(finite, F.timestamp_seconds(seconds))
    if isinstance(dtype, T.NumericType):
        return epoch
    return F.coalesce(c.cast("string").try_cast("timestamp"), epoch)


def derived_event_id(df: DataFrame) -> Column:
    """A deterministic id for inputs without ``event_id``: a hash of the whole input row."""
    return F.concat(F.lit(DERIVED_ID_PREFIX), F.substring(F.sha2(raw_json(df), 256), 1, 32))


def parse_interactions(df: DataFrame, *, source: str, derive_event_id: bool = False) -> DataFrame:
    """Adds the typed interaction columns parsed from the ``_raw_*`` input values.

    Missing optional values take their defaults: ``quantity`` 1 (as in the API), ``source`` the given
    label.

    Args:
        df: The batch after :func:`with_raw_columns` (and :func:`collapse_duplicates`).
        source: Label for rows without a ``source``.
        derive_event_id: The input has no ``event_id`` column: use :func:`derived_event_id`.

    Example:
        >>> parse_interactions(batch, source="bulk").select("event_id", "quantity", "ts")
    """
    quantity_in = raw_value(df, S.COL_QUANTITY)
    return df.select(
        "*",
        (derived_event_id(df) if derive_event_id else as_string(df, S.COL_EVENT_ID)).alias(S.COL_EVENT_ID),
        as_string(df, S.COL_USER).alias(S.COL_USER),
        as_string(df, S.COL_ITEM).alias(S.COL_ITEM),
        as_string(df, S.COL_EVENT_TYPE).alias(S.COL_EVENT_TYPE),
        F.when(quantity_in.isNull(), F.lit(DEFAULT_QUANTITY))
        .otherwise(as_int(df, S.COL_QUANTITY))
        .alias(S.COL_QUANTITY),
        as_timestamp(df, S.COL_TS).alias(S.COL_TS),
        as_string(df, S.COL_SESSION).alias(S.COL_SESSION),
        F.coalesce(as_string(df, S.COL_SOURCE), F.lit(source)).alias(S.COL_SOURCE),
    )


def parse_products(df: DataFrame) -> DataFrame:
    """Adds the typed product columns parsed from the ``_raw_*`` input values.

    A missing ``category`` becomes ``unknown`` (it partitions the table) and a missing ``available`` true.

    Example:
        >>> parse_products(batch).select("product_id", "price", "available")
    """
    available_in = raw_value(df, S.COL_AVAILABLE)
    return df.select(
        "*",
        as_string(df, S.COL_ITEM).alias(S.COL_ITEM),
        as_string(df, S.COL_TITLE).alias(S.COL_TITLE),
        F.coalesce(as_string(df, S.COL_CATEGORY), F.lit(DEFAULT_CATEGORY)).alias(S.COL_CATEGORY),
        as_string(df, S.COL_BRAND).alias(S.COL_BRAND),
        as_double(df, S.COL_PRICE).alias(S.COL_PRICE),
        F.when(available_in.isNull(), F.lit(True))
        .otherwise(as_boolean(df, S.COL_AVAILABLE))
        .alias(S.COL_AVAILABLE),
    )


def passed() -> Column:
    """True on the rows that break no rule (after :func:`jobs.ingest.quality.tag_failures`)."""
    return F.size(RULES_COL) == 0


def interaction_rows(tagged: DataFrame, *, ingested_at: datetime, user_buckets: int) -> DataFrame:
    """The accepted interactions in the table's schema, with ``ingested_at`` and ``user_bucket``.

    Example:
        >>> interaction_rows(tagged, ingested_at=now, user_buckets=64).columns[-2:]
        ['ingested_at', 'user_bucket']
    """
    return tagged.where(passed()).select(
        *[F.col(c) for c in S.INTERACTION_FIELDS],
        F.lit(ingested_at).cast("timestamp").alias(S.COL_INGESTED_AT),
        user_bucket(S.COL_USER, user_buckets).alias(S.COL_USER_BUCKET),
    )


def product_rows(tagged: DataFrame, *, updated_at: datetime) -> DataFrame:
    """The accepted products in the table's schema; ``updated_at`` is the ingest time unless given.

    Example:
        >>> product_rows(tagged, updated_at=now).columns[-1]
        'updated_at'
    """
    updated = F.lit(updated_at).cast("timestamp")
    if raw_col(S.COL_UPDATED_AT) in tagged.columns:
        updated = F.coalesce(as_timestamp(tagged, S.COL_UPDATED_AT), updated)
    return tagged.where(passed()).select(
        *[F.col(c) for c in S.PRODUCT_FIELDS], updated.alias(S.COL_UPDATED_AT)
    )


def quarantine_rows(tagged: DataFrame, *, table: str, run_id: str, quarantined_at: datetime) -> DataFrame:
    """The rows that broke a rule, in the quarantine's schema: rules (comma-separated), file, raw JSON.

    Example:
        >>> quarantine_rows(tagged, table="interactions", run_id="r1", quarantined_at=now).columns
        ['table', 'rule', 'source_file', 'raw', 'run_id', 'quarantined_at']
    """
    source = F.col(SOURCE_FILE_COL) if SOURCE_FILE_COL in tagged.columns else F.lit(None).cast("string")
    return tagged.where(~passed()).select(
        F.lit(table).alias("table"),
        F.array_join(RULES_COL, ",").alias("rule"),
        source.alias("source_file"),
        raw_json(tagged).alias("raw"),
        F.lit(run_id).alias("run_id"),
        F.lit(quarantined_at).cast("timestamp").alias("quarantined_at"),
    )


def batch_counts(tagged: DataFrame) -> DataFrame:
    """One row: ``read`` (input rows), ``distinct``, ``quarantined`` and ``exact_duplicates``.

    Example:
        >>> batch_counts(tagged).first()["read"]
    """
    copies = F.col(COPIES_COL) if COPIES_COL in tagged.columns else F.lit(1)
    return tagged.agg(
        F.sum(copies).cast("long").alias("read"),
        F.count(F.lit(1)).alias("distinct"),
        F.count_if(~passed()).alias("quarantined"),
    ).withColumn("exact_duplicates", F.col("read") - F.col("distinct"))


def rule_counts(tagged: DataFrame) -> DataFrame:
    """Quarantined rows per rule (a row breaking two rules counts under both).

    Example:
        >>> rule_counts(tagged).columns
        ['rule', 'rows']
    """
    return (
        tagged.where(~passed())
        .select(F.explode(RULES_COL).alias("rule"))
        .groupBy("rule")
        .agg(F.count(F.lit(1)).alias("rows"))
    )


def columns_for_validation(tagged: DataFrame, *, fields: Sequence[str]) -> DataFrame:
    """The parsed fields and the raw inputs the rules read: what the great-expectations suite sees."""
    return tagged.select(*fields, *_raw_names(tagged))
