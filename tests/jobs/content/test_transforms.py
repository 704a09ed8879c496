"""Similar items, user profiles and content candidates on tiny inline data, cross-checked with numpy."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import functions as F

from jobs.common.confidence import interaction_confidence
from jobs.content.transforms import (
    NEIGHBOURS_SCHEMA,
    content_candidates,
    product_features,
    similar_items,
    user_profiles,
    vector_entries,
)
from recsys.config import ContentWeights, EventsConfig

pytestmark = pytest.mark.spark

PRODUCT_SCHEMA = "product_id string, title string, category string, brand string, price double"
PRODUCTS = [
    ("a1", "red cotton shirt", "Clothes", "acme", 10.0),
    ("a2", "blue cotton shirt", "Clothes", "acme", 12.0),
    ("a3", "red wool jumper", "Clothes", "zeta", 30.0),
    ("a4", "green linen shirt", "Clothes", "zeta", 25.0),
    ("b1", "red ceramic mug", "Kitchen", "acme", 6.0),
    ("b2", "blue ceramic bowl", "Kitchen", "delta", 9.0),
    ("b3", "steel kettle", "Kitchen", "delta", 40.0),
    ("c1", "red cotton shirt", "Garden", "acme", 11.0),
]
EVENT_SCHEMA = "user_id string, product_id string, event_type string, quantity int, ts timestamp"
AS_OF = datetime(2026, 1, 31, tzinfo=UTC)


@pytest.fixture(scope="module")
def features(spark):
    df = spark.createDataFrame(PRODUCTS, PRODUCT_SCHEMA)
    return product_features(df, weights=ContentWeights(), title_features=1 << 12).cache()


def brute_force(features, k: int, spark):
    rows = features.orderBy("product_id").collect()
    ids = [r["product_id"] for r in rows]
    dense = np.array([r["features"].toArray() for r in rows])
    sims = dense @ dense.T
    np.fill_diagonal(sims, -np.inf)
    out = []
    for i, pid in enumerate(ids):
        order = sorted(range(len(ids)), key=lambda j: (-sims[i, j], ids[j]))[:k]
        out += [(pid, ids[j], float(sims[i, j]), r + 1) for r, j in enumerate(order)]
    return spark.createDataFrame(out, NEIGHBOURS_SCHEMA)


def test_similar_items_equal_brute_force(spark, features):
    # window 100 > catalogue: every shard is scored exactly (the LSH windows are tested in test_lsh.py).
    got = similar_items(features, k=3, tables=4, bits=8, window=100)
    want = brute_force(features, 3, spark)
    assert_approx_df_equality(got, want, 1e-9, ignore_row_order=True, ignore_nullable=True)


def test_cross_category_neighbour_is_found(features):
    # c1 is alone in Garden and identical to a1 except for category and price: its best neighbour is a1.
    top = (
        similar_items(features, k=1, tables=1, bits=8, window=100).where(F.col("product_id") == "c1").first()
    )
    assert top["neighbor_id"] == "a1"


def events(spark):
    return spark.createDataFrame(
        [
            ("u1", "a1", "purchase", 1, datetime(2026, 1, 31)),
            ("u1", "a3", "view", 1, datetime(2026, 1, 1)),
            ("u1", "b1", "click", 1, datetime(2026, 1, 31)),
            ("u2", "b2", "view", 1, datetime(2026, 1, 31)),
        ],
        EVENT_SCHEMA,
    )


def test_profile_is_the_confidence_weighted_mean(spark, features):
    conf = interaction_confidence(events(spark), cfg=EventsConfig(), as_of=AS_OF)
    got = user_profiles(conf, vector_entries(features)).where(F.col("user_id") == "u1").collect()
    vec = {r["product_id"]: r["features"].toArray() for r in features.collect()}
    # a1: purchase x1 today -> 8; a3: view 30 days ago -> 1 * 0.5 ** (30/30) = 0.5; b1: click today -> 2
    want = (8 * vec["a1"] + 0.5 * vec["a3"] + 2 * vec["b1"]) / 10.5
    dense = np.zeros_like(want)
    for r in got:
        dense[r["index"]] = r["value"]
    np.testing.assert_allclose(dense, want, atol=1e-12)


def test_candidates_exclude_purchases_and_score_profile_and_recent(spark, features):
    conf = interaction_confidence(events(spark), cfg=EventsConfig(), as_of=AS_OF)
    nbrs = similar_items(features, k=7, tables=1, bits=8, window=100)
    got = content_candidates(conf, nbrs, vector_entries(features), top_n=10, recent_items=5)
    u1 = {r["product_id"]: r["score"] for r in got.where(F.col("user_id") == "u1").collect()}
    assert "a1" not in u1  # purchased
    assert "a3" in u1 and "b1" in u1  # only viewed/clicked: still candidates
    vec = {r["product_id"]: r["features"].toArray() for r in features.collect()}
    profile = 8 * vec["a1"] + 0.5 * vec["a3"] + 2 * vec["b1"]
    profile /= np.linalg.norm(profile)
    nb = {(r["product_id"], r["neighbor_id"]): r["score"] for r in nbrs.collect()}
    for cand, score in u1.items():
        recent = max(nb.get((seed, cand), 0.0) for seed in ("a1", "a3", "b1"))
        assert score == pytest.approx(0.5 * profile @ vec[cand] + 0.5 * recent, abs=1e-9), cand
    ranks = got.where(F.col("user_id") == "u1").orderBy("rank").collect()
    assert [r["rank"] for r in ranks] == list(range(1, len(ranks) + 1))
    assert [r["score"] for r in ranks] == sorted(u1.values(), reverse=True)
    seen = content_candidates(
        conf, nbrs, vector_entries(features), top_n=10, recent_items=5, exclude_all_seen=True
    )
    assert not {"a1", "a3", "b1"} & {r["product_id"] for r in seen.where(F.col("user_id") == "u1").collect()}
