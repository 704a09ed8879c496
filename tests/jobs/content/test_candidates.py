"""The numpy content candidates (catalogue broadcast) against the Spark-join statement of the same rule."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pandas as pd
import pytest
from pyspark.sql import functions as F

from jobs.common.candidate_lists import to_rows
from jobs.common.chunks import whole_key_chunks
from jobs.common.confidence import interaction_confidence
from jobs.content.candidates import catalogue_arrays, content_candidates_broadcast
from jobs.content.transforms import content_candidates, product_features, similar_items, vector_entries
from recsys.config import ContentWeights, EventsConfig
from tests.jobs.content.test_transforms import AS_OF, EVENT_SCHEMA, PRODUCT_SCHEMA, PRODUCTS, events

pytestmark = pytest.mark.spark

WORDS = ["red", "blue", "cotton", "wool", "mug", "shirt", "bowl", "steel", "lamp", "oak"]
EVENT_TYPES = ["view", "click", "add_to_cart", "purchase"]


def random_catalogue(rng: random.Random, n: int) -> list[tuple]:
    return [
        (
            f"p{i:03d}",
            " ".join(rng.sample(WORDS, 3)),
            rng.choice(["Home", "Garden", "Clothes"]),
            rng.choice(["acme", "zeta", None]),
            round(rng.uniform(2, 90), 2),
        )
        for i in range(n)
    ]


def random_events(rng: random.Random, users: int, products: list[tuple]) -> list[tuple]:
    out = []
    for u in range(users):
        for _ in range(rng.randint(1, 14)):
            pid = rng.choice(products)[0] if rng.random() > 0.05 else "gone-product"
            ts = AS_OF.replace(tzinfo=None) - timedelta(days=rng.randint(0, 40))
            out.append((f"u{u:02d}", pid, rng.choice(EVENT_TYPES), 1, ts))
    return out


def both_paths(
    spark, products, evs, *, k, top_n, recent_items, exclude_all_seen=False, chunk_rows=7, active_since=None
):
    feats = product_features(
        spark.createDataFrame(products, PRODUCT_SCHEMA), weights=ContentWeights(), title_features=256
    ).cache()
    nbrs = similar_items(feats, k=k, tables=2, bits=8, window=100).cache()
    conf = interaction_confidence(spark.createDataFrame(evs, EVENT_SCHEMA), cfg=EventsConfig(), as_of=AS_OF)
    active = conf
    if active_since is not None:
        # The content job's join path: the users with an event in the window, by a semi-join.
        users = conf.where(F.col("last_ts") >= F.lit(active_since)).select("user_id").distinct()
        active = conf.join(users, "user_id", "left_semi")
    want = content_candidates(
        active,
        nbrs,
        vector_entries(feats),
        top_n=top_n,
        recent_items=recent_items,
        exclude_all_seen=exclude_all_seen,
    )
    cat = catalogue_arrays(vector_entries(feats).toPandas(), nbrs.toPandas())
    got = content_candidates_broadcast(
        conf,
        cat,
        top_n=top_n,
        recent_items=recent_items,
        partitions=3,
        exclude_all_seen=exclude_all_seen,
        active_since=active_since,
        chunk_rows=chunk_rows,
    )
    assert got.columns == ["user_id", "product_ids", "scores"]
    cols = ["user_id", "product_id", "score", "rank"]
    return (
        want.select(*cols).orderBy("user_id", "rank").toPandas(),
        to_rows(got).select(*cols).orderBy("user_id", "rank").toPandas(),
    )


def assert_same(want: pd.DataFrame, got: pd.DataFrame) -> None:
    assert len(want) > 0
    pd.testing.assert_frame_equal(
        want[["user_id", "product_id", "rank"]].reset_index(drop=True),
        got[["user_id", "product_id", "rank"]].reset_index(drop=True),
        check_dtype=False,
    )
    assert (want["score"].to_numpy() - got["score"].to_numpy()).__abs__().max() < 1e-9


def test_same_rows_as_the_join_version_on_the_fixture(spark):
    want, got = both_paths(spark, PRODUCTS, events(spark).collect(), k=7, top_n=10, recent_items=5)
    assert_same(want, got)
    assert "a1" not in set(got.loc[got["user_id"] == "u1", "product_id"])  # purchased


@pytest.mark.parametrize("exclude_all_seen", [False, True])
def test_same_rows_as_the_join_version_on_random_data(spark, exclude_all_seen):
    rng = random.Random(7)
    products = random_catalogue(rng, 60)
    evs = random_events(rng, 25, products)
    # recent_items 2 and top_n 6: seeds and the cut both bind, and ties in last_ts are frequent.
    want, got = both_paths(spark, products, evs, k=8, top_n=6, recent_items=2, exclude_all_seen=exclude_all_seen)
    assert_same(want, got)
    assert got.groupby("user_id")["rank"].max().max() == 6


def test_only_users_active_since_the_window_start_get_candidates(spark):
    rng = random.Random(11)
    products = random_catalogue(rng, 40)
    evs = random_events(rng, 20, products)
    since = AS_OF - timedelta(days=10)
    want, got = both_paths(spark, products, evs, k=6, top_n=5, recent_items=2, active_since=since)
    assert_same(want, got)
    active = {u for u, pid, _, _, ts in evs if ts >= since.replace(tzinfo=None) and pid != "gone-product"}
    assert set(got["user_id"]) == active
    assert len(active) < 20


def test_catalogue_arrays_pack_neighbours_in_rows():
    entries = pd.DataFrame({"product_id": ["b", "a", "a"], "index": [9, 3, 9], "value": [1.0, 0.6, 0.8]})
    nbrs = pd.DataFrame({"product_id": ["a", "b", "b"], "neighbor_id": ["b", "a", "zz"], "score": [0.8, 0.8, 0.5]})
    cat = catalogue_arrays(entries, nbrs)
    assert list(cat.ids) == ["a", "b"]
    assert cat.vectors.toarray().tolist() == [[0.6, 0.8], [0.0, 1.0]]
    assert cat.nbr.tolist() == [[1], [0]]  # the unknown neighbour "zz" is dropped
    assert cat.nbr_score.tolist() == [[0.8], [0.8]]


def test_whole_key_chunks_never_split_a_key():
    batches = [pd.DataFrame({"u": list(s)}) for s in ("aab", "bbb", "c", "", "cd")]
    chunks = [list(c["u"]) for c in whole_key_chunks(batches, "u", 3)]
    assert chunks == [["a", "a"], ["b", "b", "b", "b"], ["c", "c"], ["d"]]
    assert [x for c in chunks for x in c] == list("aabbbbccd")
    with pytest.raises(ValueError, match="chunk_rows"):
        list(whole_key_chunks(batches, "u", 0))


def test_equal_times_pick_the_smaller_product_id_as_the_recent_seed(spark):
    # b1 and a1 at the same moment, recent_items 1: a1 is the recent seed, so only a1's neighbours carry
    # the recent similarity, and a1's nearest products (c1, the same title in another category, or a2, the
    # same brand's shirt) rank on top.
    t = datetime(2026, 1, 30)
    evs = [("x", "b1", "view", 1, t), ("x", "a1", "view", 1, t)]
    want, got = both_paths(spark, PRODUCTS, evs, k=7, top_n=5, recent_items=1)
    assert_same(want, got)
    assert got["product_id"].iloc[0] in {"a2", "c1"}


def test_no_rows_for_users_without_known_products(spark):
    evs = [("ghost", "gone-product", "view", 1, datetime(2026, 1, 30))]
    want, got = both_paths(spark, PRODUCTS, evs, k=7, top_n=5, recent_items=2)
    assert want.empty and got.empty
