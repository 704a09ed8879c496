"""Spark implicit ALS, built from config, on a tiny planted data set recovers the planted neighbours."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.als.model import build_als, stream_factors
from recsys.config import AlsConfig

pytestmark = [pytest.mark.spark, pytest.mark.slow]

# Two taste groups: users 0-5 buy from items 0-3, users 6-11 from items 4-7; each user misses one item of
# their group, so the group structure is the only thing there is to learn.
PLANTED = [(u, i, 1.0) for u in range(12) for i in (range(4) if u < 6 else range(4, 8)) if i % 4 != u % 4]


@pytest.fixture(scope="module")
def planted_model(spark):
    data = spark.createDataFrame(PLANTED, "user_idx int, item_idx int, rating float")
    cfg = AlsConfig(rank=4, max_iter=10, reg_param=0.05, alpha=5.0, seed=1)
    return build_als(cfg).fit(data)


def _factors(df, rank):
    rows = sorted((r.id, r.features) for r in df.collect())
    return stream_factors(rows, len(rows), rank)


def test_item_neighbours_are_the_planted_group(planted_model):
    ids, y = _factors(planted_model.itemFactors, 4)
    unit = y / np.linalg.norm(y, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    group = np.array([int(i) // 4 for i in ids])
    nearest = sim.argmax(axis=1)
    assert (group[nearest] == group).all()


def test_each_user_gets_the_missing_item_of_their_group_first(planted_model):
    ids, y = _factors(planted_model.itemFactors, 4)
    uids, x = _factors(planted_model.userFactors, 4)
    scores = x @ y.T
    for r, u in enumerate(uids):
        seen = {i for uu, i, _ in PLANTED if uu == int(u)}
        ranked = [int(ids[j]) for j in np.argsort(-scores[r]) if int(ids[j]) not in seen]
        expected = (4 if int(u) >= 6 else 0) + int(u) % 4
        assert ranked[0] == expected, f"user {u}: {ranked}"
