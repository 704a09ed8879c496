"""Blend job transforms: decayed popularity, popular lists, the batch blend equal to the shared function."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pandas as pd
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import types as T

from jobs.blend import transforms as tr
from recsys.blend import blend
from recsys.config import BlendConfig, EventsConfig

pytestmark = pytest.mark.spark

EVENTS = T.StructType(
    [
        T.StructField("user_id", T.StringType(), False),
        T.StructField("product_id", T.StringType(), False),
        T.StructField("event_type", T.StringType(), False),
        T.StructField("quantity", T.IntegerType(), False),
        T.StructField("ts", T.TimestampType(), False),
    ]
)
PRODUCTS = T.StructType(
    [
        T.StructField("product_id", T.StringType(), False),
        T.StructField("category", T.StringType(), False),
        T.StructField("available", T.BooleanType(), False),
    ]
)
NOW = datetime(2026, 1, 15)


def test_popularity_scores_decay_and_one_vote_per_user(spark) -> None:
    events = spark.createDataFrame(
        [
            ("u1", "a", "view", 1, NOW),
            ("u1", "a", "view", 1, NOW),  # a repeat by the same user does not add
            ("u2", "a", "purchase", 3, datetime(2026, 1, 8)),  # 7 days old: purchase weight 8 halves to 4
            ("u1", "b", "click", 1, datetime(2026, 1, 1)),  # 14 days old: click weight 2 quartered
        ],
        EVENTS,
    )
    got = tr.popularity_scores(events, events_cfg=EventsConfig(), half_life_days=7.0, as_of=NOW)
    want = spark.createDataFrame([("a", 5.0), ("b", 0.5)], "product_id string, score double")
    assert_approx_df_equality(got.orderBy("product_id"), want, 1e-9, ignore_nullable=True)


def test_popular_lists_global_and_per_category(spark) -> None:
    scores = spark.createDataFrame(
        [("a", 3.0), ("b", 2.0), ("c", 5.0), ("d", 9.0)], "product_id string, score double"
    )
    products = spark.createDataFrame(
        [("a", "x", True), ("b", "x", True), ("c", "y", True), ("d", "y", False)], PRODUCTS
    )
    got = tr.popular_lists(scores, products, top_n=2).orderBy("category", "rank")
    want = spark.createDataFrame(
        [
            (None, "c", 5.0, 1),
            (None, "a", 3.0, 2),
            ("x", "a", 3.0, 1),
            ("x", "b", 2.0, 2),
            ("y", "c", 5.0, 1),
        ],
        "category string, product_id string, score double, rank int",
    )
    assert_df_equality(got, want, ignore_nullable=True)


def test_batch_blend_equals_shared_function(spark) -> None:
    cands = pd.DataFrame(
        [
            (u, p, s, float(v))
            for u, rows in {
                "u1": [
                    ("a", "cf", 3),
                    ("b", "cf", 1),
                    ("c", "content", 0.9),
                    ("a", "popular", 10),
                    ("d", "popular", 4),
                ],
                "u2": [("b", "cf", 2), ("c", "cf", 5), ("d", "itemknn", 1.5), ("e", "itemknn", 0.5)],
                "u3": [("a", "popular", 10), ("d", "popular", 4), ("e", "content", 0.2)],
            }.items()
            for p, s, v in rows
        ],
        columns=["user_id", "product_id", "source", "score"],
    )
    hist = pd.DataFrame(
        [("u1", "b", True, False), ("u2", "e", False, True)],
        columns=["user_id", "product_id", "purchased", "viewed"],
    )
    prods = pd.DataFrame(
        {"product_id": list("abcde"), "category": list("xxyyx"), "available": [True, True, True, False, True]}
    )
    counts = {"u1": 5, "u2": 1}
    cfg = dataclasses.replace(BlendConfig(), max_per_category=1, page_size=2, top_n=3, drop_viewed=True)
    want = blend(cands, history=hist, products=prods, n_interactions=counts, cfg=cfg)

    history = spark.createDataFrame(
        hist, "user_id string, product_id string, purchased boolean, viewed boolean"
    )
    enriched = tr.enrich(
        spark.createDataFrame(cands, "user_id string, product_id string, source string, score double"),
        history,
        spark.createDataFrame(prods, PRODUCTS),
        spark.createDataFrame(list(counts.items()), "user_id string, n_interactions int"),
    )
    # Two-row Arrow batches split users across batches: the carry-over must reassemble them.
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "2")
    try:
        got = tr.explode_lists(tr.blend_users(enriched, cfg=cfg, partitions=1, chunk_rows=3))
        got_pd = got.orderBy("user_id", "rank").toPandas()
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    assert got_pd["product_id"].tolist() == want["product_id"].tolist()
    assert got_pd["user_id"].tolist() == want["user_id"].tolist()
    assert got_pd["rank"].tolist() == want["rank"].tolist()
    assert got_pd["sources"].tolist() == want["sources"].tolist()
    pd.testing.assert_series_equal(got_pd["score"], want["score"], check_names=False, rtol=1e-6)


def test_user_history_flags(spark) -> None:
    events = spark.createDataFrame(
        [
            ("u1", "a", "view", 1, NOW),
            ("u1", "a", "purchase", 1, NOW),
            ("u1", "b", "add_to_cart", 1, NOW),
            ("u2", "a", "purchase", 1, NOW),
        ],
        EVENTS,
    )
    got = tr.user_history(events).orderBy("user_id", "product_id")
    want = spark.createDataFrame(
        [("u1", "a", True, True), ("u1", "b", False, True), ("u2", "a", True, False)],
        "user_id string, product_id string, purchased boolean, viewed boolean",
    )
    assert_df_equality(got, want, ignore_nullable=True)


def test_similar_items_merges_sources(spark) -> None:
    nb = "product_id string, neighbor_id string, score double"
    content = spark.createDataFrame([("a", "b", 0.5), ("a", "c", 0.9)], nb)
    knn = spark.createDataFrame([("a", "b", 0.4), ("a", "d", 0.8)], nb)
    products = spark.createDataFrame(
        [("a", "x", True), ("b", "x", True), ("c", "y", True), ("d", "y", False)], PRODUCTS
    )
    got = tr.similar_items(content, knn, products, weight_content=0.5, weight_itemknn=1.0, top_n=5)
    want = spark.createDataFrame(
        [("a", "b", 0.65, 10, 1), ("a", "c", 0.45, 2, 2)],
        "product_id string, neighbor_id string, score double, sources int, rank int",
    )
    assert_approx_df_equality(got.orderBy("rank"), want, 1e-9, ignore_nullable=True)
