"""The one-pass numpy blend (catalogue broadcast) gives the lists of the join version."""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from jobs.blend import onepass
from jobs.blend import transforms as tr
from jobs.blend.main import blended_lists
from jobs.evaluate import baselines as bl
from recsys.config import BlendConfig, Config, EventsConfig, SparkConfig
from recsys.encoding import SOURCE_BITS

pytestmark = pytest.mark.spark

NOW = datetime(2026, 1, 15)
EVENT_TYPES = ["view", "click", "add_to_cart", "purchase"]


def lake(spark, seed: int):
    rng = random.Random(seed)
    products = [(f"p{i:02d}", rng.choice("xyz"), rng.random() > 0.15) for i in range(30)]
    events = [
        (f"u{u:02d}", rng.choice(products)[0], rng.choice(EVENT_TYPES), 1, NOW - timedelta(hours=rng.randint(0, 900)))
        for u in range(14)
        for _ in range(rng.randint(1, 12))
    ]
    events.append(("u99", "gone", "view", 1, NOW))  # a user whose only product left the catalogue

    # Candidate scores on a coarse grid, so equal scores (ties broken by product id) are frequent.
    def cands(ids):
        return [(f"u{u:02d}", p, rng.randint(1, 20) / 4.0) for u in range(14) for p in rng.sample(ids, 8)]

    ids = [p for p, _, _ in products]
    cf = cands(ids + ["ghost-1", "ghost-2"])  # ALS knows products the catalogue no longer lists
    content = cands(ids)
    ev = spark.createDataFrame(
        events, "user_id string, product_id string, event_type string, quantity int, ts timestamp"
    )
    prods = spark.createDataFrame(products, "product_id string, category string, available boolean")
    return ev, prods, candidate_lists(spark, cf), candidate_lists(spark, content)


def candidate_lists(spark, rows: list[tuple[str, str, float]]):
    """A candidate table (one row of lists per user) from ``(user, product, score)`` rows in their order."""
    lists: dict[str, tuple[list[str], list[float]]] = {}
    for user, product, score in rows:
        ids, scores = lists.setdefault(user, ([], []))
        ids.append(product)
        scores.append(score)
    schema = "user_id string, product_ids array<string>, scores array<double>"
    return spark.createDataFrame([(u, ids, scores) for u, (ids, scores) in lists.items()], schema)


def popular_and_neighbors(events, products):
    popular = tr.popular_lists(
        tr.popularity_scores(events, events_cfg=EventsConfig(), half_life_days=7.0, as_of=NOW), products, top_n=10
    )
    return popular, bl.itemknn_neighbors(events.groupBy("user_id", "product_id").count(), m=6)


def both(spark, cfg: Config, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    events, products, cf, content = lake(spark, seed)
    popular, nbrs = popular_and_neighbors(events, products)
    users = events.select("user_id").distinct()
    out = []
    for broadcast in (False, True):
        recs = blended_lists(
            spark,
            cfg,
            events=events,
            users=users,
            cf=cf,
            content=content,
            popular=popular,
            nbrs=nbrs,
            products=products,
            broadcast=broadcast,
        )
        lists = recs.orderBy("user_id").toPandas()
        out.append(lists)
    return out[0], out[1]


@pytest.mark.parametrize(
    "blend",
    [
        BlendConfig(top_n=12, page_size=4, max_per_category=2, popular_candidates=5, itemknn_top_n=6),
        BlendConfig(
            top_n=8,
            normalization="rank",
            drop_viewed=True,
            cold_start_min_interactions=6,
            popular_candidates=3,
            itemknn_top_n=4,
        ),
    ],
)
def test_same_lists_as_the_join_version(spark, blend):
    cfg = dataclasses.replace(Config(), blend=blend, spark=dataclasses.replace(SparkConfig(), shuffle_partitions=3))
    want, got = both(spark, cfg, seed=3)
    assert want["user_id"].tolist() == got["user_id"].tolist()
    assert len(want) == 15  # every user gets a row; u99, whose only product is gone, gets popular ones
    assert set(got.loc[got.user_id == "u99", "sources"].iloc[0].tolist()) == {SOURCE_BITS["popular"]}
    for w, g in zip(want.itertuples(), got.itertuples(), strict=True):
        assert list(w.product_ids) == list(g.product_ids), w.user_id
        assert list(w.sources) == list(g.sources), w.user_id
        np.testing.assert_allclose(w.scores, g.scores, rtol=1e-6)
    shown = {p for ids in got["product_ids"] for p in ids}
    assert not shown & {"ghost-1", "ghost-2"}  # outside the catalogue: filtered


def test_itemknn_candidates_sum_the_candidates_neighbourhoods():
    # j's neighbours: a -> {b: 0.5, c: 0.2}, b -> {a: 0.5}, c -> {a: 0.2, b: 0.4}
    knn = pd.DataFrame(
        {
            "product_id": ["a", "a", "b", "c", "c"],
            "neighbor_id": ["b", "c", "a", "a", "b"],
            "score": [0.5, 0.2, 0.5, 0.2, 0.4],
        }
    )
    cat = onepass.blend_catalogue(
        pd.DataFrame({"product_id": ["a", "b", "c"], "category": ["x"] * 3, "available": [True] * 3}),
        knn,
        pd.DataFrame({"product_id": ["a"], "score": [1.0]}),
    )
    # User 0 saw b: candidates a (cos 0.5, b is in a's list) and c (0.4). User 1 saw a and b: only c (0.2+0.4).
    user, item, score = onepass.itemknn_candidates(np.array([0, 1, 1]), np.array([1, 0, 1]), cat, k=5)
    assert list(zip(user.tolist(), cat.ids[item].tolist(), np.round(score, 9).tolist(), strict=True)) == [
        (0, "a", 0.5),
        (0, "c", 0.4),
        (1, "c", 0.6),
    ]
    user, item, _ = onepass.itemknn_candidates(np.array([0]), np.array([1]), cat, k=1)
    assert cat.ids[item].tolist() == ["a"]


@pytest.mark.parametrize(
    ("sparse_product", "lowest", "k"),
    [(True, 1, 4), (False, 1, 4), (True, 0, 30)],
    ids=["sparse-product", "sort", "zero-cosines-take-the-sort"],
)
def test_itemknn_candidates_sparse_product_and_sort_equal_a_python_reference(sparse_product, lowest, k):
    rng = np.random.default_rng(7)
    ids = [f"p{x:02d}" for x in range(30)]
    pairs = {(a, b) for a, b in rng.integers(0, 30, (200, 2)).tolist() if a != b}
    # Scores on a 1/8 grid, so sums are exact in any order and ties are many. With cosines of 0 some sums are 0:
    # the sparse product would leave those candidates out, so such a catalogue takes the sort (k 30 keeps them all).
    knn = pd.DataFrame(
        [(ids[a], ids[b], float(rng.integers(lowest, 8)) / 8) for a, b in sorted(pairs)],
        columns=["product_id", "neighbor_id", "score"],
    )
    cat = onepass.blend_catalogue(
        pd.DataFrame({"product_id": ids, "category": ["x"] * 30, "available": [True] * 30}),
        knn,
        pd.DataFrame({"product_id": ["p00"], "score": [1.0]}),
    )
    # A user's history rows are distinct products (user_history); -1 is a product the catalogue does not know.
    drawn = zip(rng.integers(0, 12, 60).tolist(), rng.integers(-1, 30, 60).tolist(), strict=True)
    hist = sorted(set(drawn))
    hist_user, hist_item = (np.array(c) for c in zip(*hist, strict=True))
    assert cat.positive_scores == (lowest > 0)
    user, item, score = onepass.itemknn_candidates(hist_user, hist_item, cat, k=k, sparse_product=sparse_product)
    want = []
    cos = {
        (cat.ids.tolist().index(r.product_id), cat.ids.tolist().index(r.neighbor_id)): r.score for r in knn.itertuples()
    }
    for u in sorted(set(hist_user.tolist())):
        seen = {x for x in hist_item[hist_user == u].tolist() if x >= 0}
        sums: dict[int, float] = {}
        for (j, i), c in cos.items():
            if i in seen and j not in seen:
                sums[j] = sums.get(j, 0.0) + c
        want += [(u, j, sums[j]) for j in sorted(sums, key=lambda j: (-sums[j], j))[:k]]
    assert list(zip(user.tolist(), item.tolist(), score.tolist(), strict=True)) == want


@pytest.mark.parametrize("k", [1, 3, 40, 500])
def test_may_be_top_keeps_every_row_of_the_top_k_ties_included(k):
    rng = np.random.default_rng(k)
    user = np.sort(rng.integers(0, 60, 5000))
    # Few distinct values, so many rows tie with each user's k-th best; one user has a single value.
    score = rng.integers(0, 30, len(user)) / 7.0
    score[user == 5] = 1.5

    def top(rows):
        order = rows[np.lexsort((rows, -score[rows], user[rows]))]
        first = np.r_[0, np.flatnonzero(np.diff(user[order])) + 1]
        pos = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
        return order[pos < k]

    kept = onepass._may_be_top(user, score, k)
    assert np.array_equal(top(np.flatnonzero(kept)), top(np.arange(len(user))))
    if k < 40:
        assert kept.sum() < len(user) / 2  # it does prune
    else:
        assert kept.all() == (k == 500)


def test_score_chunk_counts_unknown_candidates_then_drops_them_and_returns_arrow_lists():
    empty = pd.Series([], dtype=object)
    cat = onepass.blend_catalogue(
        pd.DataFrame({"product_id": ["a", "b", "c"], "category": ["x", "y", "x"], "available": [True, True, False]}),
        pd.DataFrame({"product_id": empty, "neighbor_id": empty, "score": pd.Series([], dtype=float)}),
        pd.DataFrame({"product_id": empty, "score": pd.Series([], dtype=float)}),
    )
    hist, cf, content = onepass.HISTORY, onepass.CF, onepass.CONTENT
    none = [None] * 4
    rows = pa.table(
        {
            # u1 bought a, its only catalogue candidate; u3's ghost (outside the catalogue) sets the CF max.
            # One history row per (user, product); one row of lists per user and candidate source.
            "user_id": ["u1", "u1", "u3", "u2", "u2"],
            "product_id": ["a", None, None, None, None],
            "kind": pa.array([hist, cf, cf, cf, content], pa.int8()),
            "purchased": [True, *none],
            "viewed": [True, *none],
            "product_ids": [None, ["a", "ghost"], ["b", "ghost"], ["b", "c"], ["b"]],
            "scores": [None, [2.0, 1.0], [1.0, 3.0], [1.0, 0.5], [0.3]],
        }
    )
    cfg = BlendConfig(cold_start_min_interactions=0)
    got = onepass.score_chunk(rows, cat, cfg=cfg, itemknn_k=5)
    assert got.schema == onepass.ARROW_SCHEMA
    assert got.column("product_ids").type.value_field.nullable is False
    # u1: empty lists, not null; u3: b is the CF min next to the ghost (0.0); u2: c is unavailable.
    assert got.to_pylist() == [
        {"user_id": "u1", "product_ids": [], "scores": [], "sources": []},
        {"user_id": "u3", "product_ids": ["b"], "scores": [0.0], "sources": [SOURCE_BITS["cf"]]},
        {
            "user_id": "u2",
            "product_ids": ["b"],
            "scores": [pytest.approx(cfg.weight_cf + cfg.weight_content)],
            "sources": [SOURCE_BITS["cf"] | SOURCE_BITS["content"]],
        },
    ]


@pytest.mark.parametrize("broadcast", [False, True], ids=["joins", "one-pass"])
def test_candidates_of_other_users_are_dropped_unless_the_sources_hold_only_the_users(spark, broadcast):
    cfg = dataclasses.replace(Config(), spark=dataclasses.replace(SparkConfig(), shuffle_partitions=3))
    events, products, cf, content = lake(spark, seed=5)
    popular, nbrs = popular_and_neighbors(events, products)

    def lists(users, cf, content, sources_of_users):
        recs = blended_lists(
            spark, cfg, events=events, users=users, cf=cf, content=content, popular=popular, nbrs=nbrs,
            products=products, broadcast=broadcast, sources_of_users=sources_of_users,
        )
        return recs.orderBy("user_id").toPandas()

    some = spark.createDataFrame([("u01",), ("u04",)], "user_id string")
    # The candidate tables hold 14 users: those outside `some` are dropped.
    filtered = lists(some, cf, content, sources_of_users=False)
    assert filtered["user_id"].tolist() == ["u01", "u04"]
    # Tables that hold only `some`'s candidates give the same lists without the join.
    only = lists(
        some, cf.join(some, "user_id", "left_semi"), content.join(some, "user_id", "left_semi"), sources_of_users=True
    )
    assert only["user_id"].tolist() == ["u01", "u04"]
    for f, o in zip(filtered.itertuples(), only.itertuples(), strict=True):
        assert list(f.product_ids) == list(o.product_ids), f.user_id
        np.testing.assert_allclose(f.scores, o.scores, rtol=1e-6)
    assert all(len(ids) for ids in only["product_ids"])
