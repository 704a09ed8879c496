"""Item-kNN neighbours against numpy cosine; item-kNN and popularity recommendations exclude seen items."""

from __future__ import annotations

import logging
from datetime import datetime

import numpy as np
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F

from jobs.evaluate import baselines as bl

pytestmark = pytest.mark.spark

PAIRS = [
    ("u1", "a"),
    ("u1", "b"),
    ("u2", "a"),
    ("u2", "b"),
    ("u2", "c"),
    ("u3", "c"),
    ("u3", "d"),
    ("u4", "a"),
    ("u4", "d"),
]
PAIR_SCHEMA = "user_id string, product_id string"
NB_SCHEMA = "product_id string, neighbor_id string, score double"


def numpy_neighbors(pairs, m):
    users = sorted({u for u, _ in pairs})
    items = sorted({i for _, i in pairs})
    x = np.zeros((len(users), len(items)))
    for u, i in pairs:
        x[users.index(u), items.index(i)] = 1.0
    norms = np.sqrt(x.sum(axis=0))
    sim = (x.T @ x) / np.outer(norms, norms)
    rows = []
    for a, item in enumerate(items):
        order = sorted(
            (j for j in range(len(items)) if j != a and sim[a, j] > 0), key=lambda j: (-sim[a, j], items[j])
        )
        rows += [(item, items[j], float(sim[a, j])) for j in order[:m]]
    return rows


# 0: more products than the numpy path takes, so the Spark self-join runs.
@pytest.mark.parametrize("broadcast_max_items", [1_000_000, 0], ids=["numpy", "self-join"])
def test_neighbors_match_numpy_cosine(spark, broadcast_max_items):
    df = spark.createDataFrame(PAIRS, PAIR_SCHEMA)
    out = bl.itemknn_neighbors(df, m=2, broadcast_max_items=broadcast_max_items)
    expected = spark.createDataFrame(numpy_neighbors(PAIRS, 2), NB_SCHEMA)
    assert_approx_df_equality(out, expected, 1e-9, ignore_row_order=True, ignore_nullable=True)


@pytest.mark.parametrize("broadcast_max_items", [1_000_000, 0], ids=["numpy", "self-join"])
def test_neighbors_cap_each_user_to_the_most_recent_products_and_count_a_repeated_pair_once(
    spark, broadcast_max_items
):
    # u1 has three products and a cap of 2: its oldest, "a", leaves the crossing; "b" appears twice.
    rows = [
        ("u1", "a", datetime(2026, 1, 1)),
        ("u1", "b", datetime(2026, 1, 2)),
        ("u1", "b", datetime(2026, 1, 2, 0, 0, 0, 1000)),
        ("u1", "c", datetime(2026, 1, 2, 0, 0, 0, 500)),
        ("u2", "a", datetime(2026, 1, 1)),
        ("u2", "b", datetime(2026, 1, 1)),
        ("u3", "a", None),
        ("u3", "c", None),
        ("u3", "d", None),
    ]
    df = spark.createDataFrame(rows, "user_id string, product_id string, last_ts timestamp")
    out = bl.itemknn_neighbors(df, m=3, max_items_per_user=2, broadcast_max_items=broadcast_max_items)
    # What is left: u1 {b, c} (the two latest), u2 {a, b}, u3 {a, c} (no time: smallest ids first).
    kept = [("u1", "b"), ("u1", "c"), ("u2", "a"), ("u2", "b"), ("u3", "a"), ("u3", "c")]
    expected = spark.createDataFrame(numpy_neighbors(kept, 3), NB_SCHEMA)
    assert_approx_df_equality(out, expected, 1e-9, ignore_row_order=True, ignore_nullable=True)


def test_neighbors_fall_back_to_the_ids_when_their_hashes_collide(spark, monkeypatch, caplog):
    # Every product id here has length 1: as the join key, the length makes all of them collide.
    monkeypatch.setattr(bl, "item_key", lambda col: F.length(col).cast("long"))
    df = spark.createDataFrame(PAIRS, PAIR_SCHEMA)
    with caplog.at_level(logging.WARNING, logger=bl.__name__):
        out = bl.itemknn_neighbors(df, m=2, broadcast_max_items=0)
        expected = spark.createDataFrame(numpy_neighbors(PAIRS, 2), NB_SCHEMA)
        assert_approx_df_equality(out, expected, 1e-9, ignore_row_order=True, ignore_nullable=True)
    assert "share a 64-bit hash" in caplog.text


def test_cap_keeps_each_users_most_recent_products(spark):
    df = spark.createDataFrame(
        [
            ("u1", "a", datetime(2026, 1, 1)),
            ("u1", "b", datetime(2026, 1, 3)),
            ("u1", "c", datetime(2026, 1, 2)),
            ("u2", "a", datetime(2026, 1, 1)),
        ],
        "user_id string, product_id string, last_ts timestamp",
    )
    out = bl.capped_pairs(df, max_items_per_user=2)
    expected = spark.createDataFrame([("u1", "b"), ("u1", "c"), ("u2", "a")], PAIR_SCHEMA)
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_itemknn_recommend_sums_similarities_of_unseen_neighbours(spark):
    seen = spark.createDataFrame([("u1", "a"), ("u1", "b")], PAIR_SCHEMA)
    # Rows are (candidate, one of its top-M neighbours): c has a and b among its neighbours, d only b,
    # and e's neighbours do not include the user's products.
    nbrs = spark.createDataFrame(
        [
            ("b", "a", 0.9),
            ("c", "a", 0.5),
            ("c", "b", 0.25),
            ("d", "b", 0.6),
            ("e", "x", 0.99),
            ("a", "d", 0.9),
        ],
        NB_SCHEMA,
    )
    users = spark.createDataFrame([("u1",)], "user_id string")
    out = bl.itemknn_recommend(seen, nbrs, users, k=2)
    expected = spark.createDataFrame(
        [("u1", "c", 0.75), ("u1", "d", 0.6)], "user_id string, product_id string, score double"
    )
    assert_approx_df_equality(out, expected, 1e-9, ignore_row_order=True, ignore_nullable=True)


def test_popularity_recommends_the_most_popular_unseen(spark):
    events = spark.createDataFrame(
        [
            (u, i, datetime(2026, 1, d))
            for u, i, d in [
                ("u1", "a", 1),
                ("u2", "a", 1),
                ("u3", "a", 20),
                ("u1", "b", 20),
                ("u2", "b", 21),
                ("u3", "c", 2),
            ]
        ],
        "user_id string, product_id string, ts timestamp",
    )
    users = spark.createDataFrame([("u1",), ("u3",)], "user_id string")
    seen = events.select("user_id", "product_id")
    scores = bl.popularity_scores(events)
    out = bl.popularity_recommend(scores, seen, users, k=1, depth=4)
    expected = spark.createDataFrame(
        [("u1", "c", 1.0), ("u3", "b", 2.0)], "user_id string, product_id string, score double"
    )
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)
    recent = bl.popularity_scores(events, since=datetime(2026, 1, 15))
    expected_recent = spark.createDataFrame([("b", 2.0), ("a", 1.0)], "product_id string, score double")
    assert_df_equality(recent, expected_recent, ignore_row_order=True, ignore_nullable=True)
