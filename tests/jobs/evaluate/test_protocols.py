"""Split protocols: exact outputs on small inputs and each protocol's invariants."""

from __future__ import annotations

from datetime import datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from jobs.evaluate import protocols as P

pytestmark = pytest.mark.spark

SCHEMA = "user_id string, product_id string, event_type string, quantity int, ts timestamp"
SPLIT = datetime(2026, 2, 1)
EVENTS = [
    ("u1", "a", "purchase", 1, datetime(2026, 1, 5)),
    ("u1", "b", "view", 1, datetime(2026, 1, 20)),
    ("u1", "a", "purchase", 1, datetime(2026, 2, 3)),  # already bought before: not a test item
    ("u1", "c", "purchase", 1, datetime(2026, 2, 1)),  # exactly at the boundary: test
    ("u2", "b", "purchase", 1, datetime(2026, 1, 10)),
    ("u2", "d", "click", 1, datetime(2026, 2, 10)),
    ("u3", "a", "purchase", 1, datetime(2026, 2, 5)),  # not a training user: not evaluated
]
PAIRS = "user_id string, product_id string"


@pytest.fixture
def events(spark):
    return spark.createDataFrame(EVENTS, SCHEMA)


def _no_overlap(train, test):
    return (
        test.join(train.select("user_id", "product_id"), ["user_id", "product_id"], "left_semi").count() == 0
    )


def test_temporal_split(spark, events):
    train, test = P.temporal_split(events, split_time=SPLIT)
    assert_df_equality(
        test,
        spark.createDataFrame([("u1", "c"), ("u2", "d")], PAIRS),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    assert_df_equality(train, events.where(F.col("ts") < F.lit(SPLIT)), ignore_row_order=True)
    assert train.agg(F.max("ts")).first()[0] < SPLIT
    assert _no_overlap(train, test)


def test_stratified_split_partitions_each_users_pairs(spark):
    rows = [
        (f"u{u}", f"p{i}", "purchase", 1, datetime(2026, 1, 1 + i)) for u in range(3) for i in range(4 + u)
    ]
    rows.append(("u0", "p0", "view", 1, datetime(2026, 1, 9)))  # a second event of a pair follows its pair
    events = spark.createDataFrame(rows, SCHEMA)
    train, test = P.stratified_split(events, ratio=0.75, seed=1)
    assert _no_overlap(train, test)
    pairs = events.select("user_id", "product_id").distinct()
    assert_df_equality(
        train.select("user_id", "product_id").distinct().unionByName(test),
        pairs,
        ignore_row_order=True,
        ignore_nullable=True,
    )
    per_user = {r.user_id: r["count"] for r in test.groupBy("user_id").count().collect()}
    assert per_user == {"u0": 1, "u1": 1, "u2": 1}  # n - round_half_up(0.75 n) for n = 4, 5, 6
    again = P.stratified_split(events, ratio=0.75, seed=1)[1]
    assert_df_equality(test, again, ignore_row_order=True)
    assert train.where("user_id = 'u0' AND product_id = 'p0'").count() in (0, 2)


def test_leave_last_out_holds_out_the_latest_product(spark, events):
    train, test = P.leave_last_out(events)
    assert_df_equality(
        test,
        spark.createDataFrame([("u1", "a"), ("u2", "d")], PAIRS),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    assert _no_overlap(train, test)
    assert_df_equality(
        train,
        events.where("NOT ((user_id = 'u1' AND product_id = 'a') OR product_id = 'd')"),
        ignore_row_order=True,
    )
