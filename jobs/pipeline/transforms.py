"""Pipeline transforms: which users an incremental run must rescore."""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys import schema as S


def changed_users(events: DataFrame, *, since: datetime) -> DataFrame:
    """Users with an interaction ingested after ``since`` (the previous run's watermark).

    Example:
        >>> changed_users(interactions, since=datetime(2026, 1, 1))
    """
    return (
        events.where(F.col(S.COL_INGESTED_AT) > F.lit(since).cast("timestamp")).select(S.COL_USER).distinct()
    )


def users_showing(recs: DataFrame, products: DataFrame, *, since: datetime) -> DataFrame:
    """Users whose stored list shows a product updated after ``since`` (e.g. now unavailable).

    Args:
        recs: The ``recommendations`` table (``user_id, product_ids``).
        products: The catalogue with ``updated_at``.
        since: The previous run's products watermark.

    Example:
        >>> users_showing(recommendations, products, since=datetime(2026, 1, 1))
    """
    changed = products.where(F.col(S.COL_UPDATED_AT) > F.lit(since).cast("timestamp")).select(S.COL_ITEM)
    shown = recs.select(S.COL_USER, F.explode("product_ids").alias(S.COL_ITEM))
    return shown.join(changed, S.COL_ITEM, "left_semi").select(S.COL_USER).distinct()
