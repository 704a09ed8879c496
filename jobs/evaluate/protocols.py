"""Split protocols: events -> (training events, held-out relevant pairs).

Every protocol returns the training *events* (so each model builds its own matrix the way it would in
production) and the held-out ``user_id, product_id`` pairs, none of which the user has in training. Models
then rank products seen in training minus the user's own training products.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recsys import schema as S

PROTOCOLS = ("temporal", "stratified", "leave-last-out")


@dataclass(frozen=True)
class Split:
    """A train/test split: ``train`` events, ``test`` pairs and the time the training data ends."""

    train: DataFrame
    test: DataFrame
    split_time: datetime


def temporal_split(
    events: DataFrame,
    *,
    split_time: datetime,
    col_user: str = S.COL_USER,
    col_item: str = S.COL_ITEM,
    col_ts: str = S.COL_TS,
) -> tuple[DataFrame, DataFrame]:
    """Train on events before ``split_time``; test = products a training user touched at or after it and
    never before.

    Example:
        >>> train, test = temporal_split(events, split_time=datetime(2011, 10, 1))
    """
    boundary = F.lit(split_time).cast("timestamp")
    train = events.where(F.col(col_ts) < boundary)
    later = events.where(F.col(col_ts) >= boundary).select(col_user, col_item).distinct()
    test = later.join(train.select(col_user).distinct(), col_user, "left_semi").join(
        train.select(col_user, col_item).distinct(), [col_user, col_item], "left_anti"
    )
    return train, test


def stratified_split(
    events: DataFrame,
    *,
    ratio: float = 0.75,
    seed: int = 42,
    col_user: str = S.COL_USER,
    col_item: str = S.COL_ITEM,
) -> tuple[DataFrame, DataFrame]:
    """Per-user random split of the distinct (user, product) pairs: ``ratio`` to train, the rest to test.

    The Microsoft Recommenders benchmark protocol: each user keeps ``round(ratio * n)`` of their n products
    in training (so a user with one product has no test item); all events of a training pair go to train.
    The order is a seeded hash of (user, product), so the split is reproducible and needs no shuffle.

    Example:
        >>> train, test = stratified_split(events, ratio=0.75, seed=42)
    """
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")
    pairs = events.select(col_user, col_item).distinct()
    w = Window.partitionBy(col_user).orderBy(F.xxhash64(col_user, col_item, F.lit(seed)), col_item)
    ranked = pairs.withColumn("_pos", F.row_number().over(w)).withColumn(
        "_n", F.count(F.lit(1)).over(Window.partitionBy(col_user))
    )
    in_train = F.col("_pos") <= F.round(F.col("_n") * F.lit(ratio))
    train_pairs = ranked.where(in_train).select(col_user, col_item)
    test = ranked.where(~in_train).select(col_user, col_item)
    return events.join(train_pairs, [col_user, col_item], "left_semi"), test


def leave_last_out(
    events: DataFrame,
    *,
    col_user: str = S.COL_USER,
    col_item: str = S.COL_ITEM,
    col_ts: str = S.COL_TS,
) -> tuple[DataFrame, DataFrame]:
    """Hold out each user's most recent product (the latest last-event; ties by product id).

    Users with a single product stay whole in training and are not evaluated. All events of the held-out
    pair leave training, so it is new to the user there.

    Example:
        >>> train, test = leave_last_out(events)
    """
    pairs = events.groupBy(col_user, col_item).agg(F.max(col_ts).alias("_last"))
    w = Window.partitionBy(col_user).orderBy(F.col("_last").desc(), F.col(col_item).desc())
    ranked = pairs.withColumn("_pos", F.row_number().over(w)).withColumn(
        "_n", F.count(F.lit(1)).over(Window.partitionBy(col_user))
    )
    test = ranked.where((F.col("_pos") == 1) & (F.col("_n") >= 2)).select(col_user, col_item)
    return events.join(test, [col_user, col_item], "left_anti"), test
