"""ALS training matrix (confidence and decay), stable indexes, candidates and the active-user window."""

from __future__ import annotations

from datetime import datetime

import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import types as T

from jobs.als import transforms as tr
from jobs.als.index import update_index
from jobs.common.candidate_lists import to_rows
from recsys.config import EventsConfig
from recsys.scoring import event_confidence

pytestmark = pytest.mark.spark

AS_OF = datetime(2026, 1, 31)
EVENTS_SCHEMA = "user_id string, product_id string, event_type string, quantity int, ts timestamp"
EVENTS = [
    ("u1", "p1", "purchase", 2, datetime(2026, 1, 31)),  # 8 * 2 = 16
    ("u1", "p1", "view", 1, datetime(2026, 1, 1)),  # 1 * 0.5 (30 days = one half-life)
    ("u1", "p2", "click", 1, datetime(2025, 12, 2)),  # 2 * 0.25 (60 days)
    ("u2", "p1", "add_to_cart", 3, datetime(2026, 1, 31)),  # 4 (quantity only scales purchases)
    ("u2", "p3", "purchase", 50, datetime(2026, 1, 31)),  # 8 * 10 (quantity capped at 10)
]
CFG = EventsConfig()
MATRIX_SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.StringType()),
        T.StructField("product_id", T.StringType()),
        T.StructField("rating", T.FloatType()),
        T.StructField("confidence", T.DoubleType()),
        T.StructField("n_events", T.LongType(), False),
    ]
)


def _matrix(spark, binary):
    events = spark.createDataFrame(EVENTS, EVENTS_SCHEMA)
    out = tr.training_matrix(events, events_cfg=CFG, as_of=AS_OF, binary_confidence=binary)
    return out.select("user_id", "product_id", "rating", "confidence", "n_events")


def test_weighted_confidence_is_weight_times_decay(spark):
    expected = spark.createDataFrame(
        [
            ("u1", "p1", 16.5, 16.5, 2),
            ("u1", "p2", 0.5, 0.5, 1),
            ("u2", "p1", 4.0, 4.0, 1),
            ("u2", "p3", 80.0, 80.0, 1),
        ],
        MATRIX_SCHEMA,
    )
    assert_approx_df_equality(_matrix(spark, False), expected, 1e-6, ignore_row_order=True)


def test_spark_confidence_matches_plain_python_twin(spark):
    rows = {(r.user_id, r.product_id): r.confidence for r in _matrix(spark, False).collect()}
    twin: dict[tuple[str, str], float] = {}
    for user, item, etype, qty, ts in EVENTS:
        age = (AS_OF - ts).total_seconds() / 86400
        twin[(user, item)] = twin.get((user, item), 0.0) + event_confidence(etype, qty, age, CFG)
    assert rows == pytest.approx(twin)


def test_binary_confidence_rates_every_pair_one(spark):
    expected = spark.createDataFrame(
        [
            ("u1", "p1", 1.0, 16.5, 2),
            ("u1", "p2", 1.0, 0.5, 1),
            ("u2", "p1", 1.0, 4.0, 1),
            ("u2", "p3", 1.0, 80.0, 1),
        ],
        MATRIX_SCHEMA,
    )
    assert_approx_df_equality(
        _matrix(spark, True), expected, 1e-6, ignore_row_order=True, ignore_nullable=True
    )


INDEX_SCHEMA = T.StructType(
    [T.StructField("user_id", T.StringType()), T.StructField("user_idx", T.IntegerType())]
)


def test_new_index_rows_number_new_ids_after_the_existing_ones(spark):
    existing = spark.createDataFrame([("a", 0), ("b", 1)], INDEX_SCHEMA)
    ids = spark.createDataFrame([("c",), ("a",), ("0z",), ("c",)], "user_id string")
    out = tr.new_index_rows(ids, existing, col_id="user_id", col_idx="user_idx")
    expected = spark.createDataFrame([("0z", 2), ("c", 3)], INDEX_SCHEMA)
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_index_is_stable_across_two_runs_with_new_ids(spark, lake_root):
    path = str(lake_root / "user_index")
    first = spark.createDataFrame([("u2",), ("u1",)], "user_id string")
    update_index(spark, path, first, col_id="user_id", col_idx="user_idx")
    second = spark.createDataFrame([("u3",), ("u1",), ("u0",)], "user_id string")
    out = update_index(spark, path, second, col_id="user_id", col_idx="user_idx")
    expected = spark.createDataFrame([("u1", 0), ("u2", 1), ("u0", 2), ("u3", 3)], INDEX_SCHEMA)
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)
    again = update_index(spark, path, second, col_id="user_id", col_idx="user_idx")  # a rerun adds nothing
    assert_df_equality(again, expected, ignore_row_order=True, ignore_nullable=True)


def test_candidates_drop_seen_items_rank_and_cut(spark):
    recs = spark.createDataFrame(
        [(0, [(10, 0.9), (11, 0.8), (12, 0.7), (13, 0.6)]), (1, [(12, 0.5), (10, 0.4)])],
        "user_idx int, recommendations array<struct<item_idx:int, rating:float>>",
    )
    seen = spark.createDataFrame([(0, 10), (1, 11)], "user_idx int, item_idx int")
    users = spark.createDataFrame([("u0", 0), ("u1", 1)], "user_id string, user_idx int")
    items = spark.createDataFrame([(f"p{i}", i) for i in range(10, 14)], "product_id string, item_idx int")
    out = tr.candidates_table(recs, seen, users, items, top_n=2, model_version="als-x")
    assert out.columns == ["user_id", "product_ids", "scores", "model_version"]
    expected = spark.createDataFrame(
        [
            ("u0", "p11", 0.8, 1, "als-x"),
            ("u0", "p12", 0.7, 2, "als-x"),
            ("u1", "p12", 0.5, 1, "als-x"),
            ("u1", "p10", 0.4, 2, "als-x"),
        ],
        "user_id string, product_id string, score float, rank int, model_version string",
    )
    assert_approx_df_equality(to_rows(out), expected, 1e-6, ignore_row_order=True, ignore_nullable=True)


def test_active_users_are_those_with_an_event_in_the_window(spark):
    events = spark.createDataFrame(EVENTS, EVENTS_SCHEMA)
    out = tr.active_users(events, as_of=AS_OF, window_days=30)
    expected = spark.createDataFrame([("u1",), ("u2",)], "user_id string")
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)
    only_today = tr.active_users(
        events.where("user_id = 'u1' AND event_type != 'purchase'"), as_of=AS_OF, window_days=29
    )
    assert only_today.count() == 0
