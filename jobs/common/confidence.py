"""One confidence per (user, product) from raw events: shared by the ALS, content and blend jobs."""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recsys import schema as S
from recsys.config import EventsConfig


def event_weight(cfg: EventsConfig, *, col_event_type: str = S.COL_EVENT_TYPE,
                 col_quantity: str = S.COL_QUANTITY) -> Column:
    """The weight of one event row before decay (purchases scaled by the capped quantity)."""
    w = cfg.weights
    base = (
        F.when(F.col(col_event_type) == "view", F.lit(w.view))
        .when(F.col(col_event_type) == "click", F.lit(w.click))
        .when(F.col(col_event_type) == "add_to_cart", F.lit(w.add_to_cart))
        .when(F.col(col_event_type) == "purchase", F.lit(w.purchase))
        .otherwise(F.lit(0.0))
    )
    qty = F.least(F.greatest(F.col(col_quantity).cast("double"), F.lit(1.0)), F.lit(float(cfg.quantity_cap)))
    return base * F.when(F.col(col_event_type) == "purchase", qty).otherwise(F.lit(1.0))


def interaction_confidence(
    events: DataFrame,
    *,
    cfg: EventsConfig,
    as_of: datetime,
    col_user: str = S.COL_USER,
    col_item: str = S.COL_ITEM,
    col_ts: str = S.COL_TS,
) -> DataFrame:
    """Aggregates events into one row per (user, product).

    Each event contributes ``event_weight * 0.5 ** (age_days / half_life_days)`` where ``age_days`` is
    measured back from ``as_of`` (events after ``as_of`` count as age 0). See
    :func:`recsys.scoring.event_confidence` for the same rule in plain Python.

    Args:
        events: Rows with user, product, event_type, quantity and ts columns.
        cfg: Event weights, half-life and quantity cap.
        as_of: The reference time of the decay (the run's data cut-off), so a rerun gives the same values.

    Returns:
        ``user_id, product_id, confidence, n_events, last_ts, purchased`` (purchased: any purchase event).

    Example:
        >>> conf = interaction_confidence(events, cfg=cfg.events, as_of=datetime(2026, 1, 1))
    """
    age_days = F.greatest(
        (F.lit(as_of).cast("timestamp").cast("double") - F.col(col_ts).cast("double")) / 86400.0, F.lit(0.0)
    )
    decay = F.pow(F.lit(0.5), age_days / F.lit(cfg.half_life_days))
    return events.groupBy(col_user, col_item).agg(
        F.sum(event_weight(cfg) * decay).alias("confidence"),
        F.count(F.lit(1)).alias("n_events"),
        F.max(col_ts).alias("last_ts"),
        F.max((F.col(S.COL_EVENT_TYPE) == "purchase").cast("int")).cast("boolean").alias("purchased"),
    )
