"""Pure transforms of stream-ingest: stream entries -> the bulk ingest's parsed, tagged batch.

The validation is the bulk ingest's own (:mod:`jobs.ingest.transforms` and :mod:`jobs.ingest.quality`), so a
streamed event passes or fails exactly the rules a file row would.
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.ingest import quality
from jobs.ingest import transforms as TX
from recsys import schema as S

COL_STREAM_MS = "_stream_ms"
COL_STREAM_SEQ = "_stream_seq"


def latest_per_event(df: DataFrame, *, col_event_id: str = S.COL_EVENT_ID) -> DataFrame:
    """Keeps the newest stream entry of each event id (a PUT after its POST, a retried append).

    Entries without an event id are all kept (the quality rules quarantine them). The stream-order columns
    are dropped.

    Example:
        >>> latest_per_event(entries).columns
        ['event_id', 'user_id', ..., '_source_file']
    """
    newest = Window.partitionBy(col_event_id).orderBy(
        F.col(COL_STREAM_MS).desc(), F.col(COL_STREAM_SEQ).desc()
    )
    ranked = df.withColumn("_n", F.row_number().over(newest))
    keep = F.col(col_event_id).isNull() | (F.col("_n") == 1)
    return ranked.where(keep).drop("_n", COL_STREAM_MS, COL_STREAM_SEQ)


def tag_batch(df: DataFrame, *, now: datetime, max_age_days: int, source: str) -> DataFrame:
    """Parses the string fields of stream entries and tags the lake's rule failures on every row.

    Args:
        df: One row per entry: the interaction fields as strings (absent ones null) and ``_source_file``.
        now: Reference time of the timestamp-range rule.
        max_age_days: ``lake.max_event_age_days``.
        source: Label for entries without a ``source`` field.

    Example:
        >>> tagged = tag_batch(entries, now=datetime.now(UTC), max_age_days=3650, source="api")
    """
    raw = TX.with_raw_columns(df, fields=S.INTERACTION_FIELDS)
    parsed = TX.parse_interactions(raw, source=source)
    return quality.tag_failures(parsed, rules=quality.interaction_rules(now=now, max_age_days=max_age_days))


def new_quarantine_rows(rows: DataFrame, existing: DataFrame) -> DataFrame:
    """The quarantine rows whose entry (``source_file``) is not in the table yet: a replay adds nothing.

    Example:
        >>> new_quarantine_rows(quarantine_rows, read_table(spark, path)).count()
    """
    seen = existing.where(F.col("table") == "interactions").select("source_file").distinct()
    return rows.join(seen, on="source_file", how="left_anti")
