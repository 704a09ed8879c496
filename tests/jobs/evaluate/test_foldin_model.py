"""``als-foldin:<days>``: ALS with item factors ``days`` old and users folded in, as a nightly run without a refit
would score them."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest
from pyspark.sql import functions as F

from jobs.evaluate.models import MODELS, ModelContext, resolve
from recsys import schema as S
from recsys.config import Config

pytestmark = pytest.mark.spark

SCHEMA = "user_id string, product_id string, event_type string, quantity int, ts timestamp"
SPLIT = datetime(2026, 3, 1)


def _events(spark):
    """Eight users over six products in January; ``late`` touches only ``new``, in the last week of February."""
    rows = []
    for u in range(8):
        for j in range(6):
            if (u + j) % 3 != 0:
                rows.append((f"u{u}", f"p{j}", "view", 1, datetime(2026, 1, 3 + u, j)))
    rows.append(("late", "new", "purchase", 1, datetime(2026, 2, 25)))
    rows.append(("u0", "new", "view", 1, datetime(2026, 2, 26)))
    return spark.createDataFrame(rows, SCHEMA)


def _ctx(spark, train, **params):
    cfg = Config()
    cfg = dataclasses.replace(cfg, als=dataclasses.replace(cfg.als, rank=4, max_iter=10))
    users = train.select(S.COL_USER).distinct().cache()
    return ModelContext(cfg=cfg, k=10, split_time=SPLIT, users=users, params=params)


def _lists(df) -> dict[str, list[tuple[str, float]]]:
    out: dict[str, list[tuple[str, float]]] = {}
    for r in df.orderBy(S.COL_USER, F.col("score").desc(), S.COL_ITEM).collect():
        out.setdefault(r[S.COL_USER], []).append((r[S.COL_ITEM], r["score"]))
    return out


def test_foldin_against_a_fit_on_all_data_gives_the_als_lists(spark):
    train = _events(spark)
    ctx = _ctx(spark, train)
    als = _lists(MODELS["als"](train, None, ctx))
    folded = _lists(resolve("als-foldin:0")(train, None, ctx))
    assert folded.keys() == als.keys() and len(als) == 9
    for user, items in als.items():
        # k exceeds the catalogue, so each list holds every product the user has not touched. Spark's last
        # half-step is the same solve: the same scores, to float precision.
        want = dict(items)
        assert dict(folded[user]).keys() == want.keys(), user
        assert dict(folded[user]) == pytest.approx(want, abs=1e-4), user


def test_stale_item_factors_cannot_offer_newer_products(spark):
    train = _events(spark)
    got = _lists(resolve("als-foldin:7")(train, None, _ctx(spark, train)))
    # Fitted up to Feb 22: "new" (Feb 25) has no factors; "late" touched only it, so gets no list.
    assert "late" not in got
    assert len(got) == 8
    assert all(p != "new" for items in got.values() for p, _ in items)
    # u0 is folded in from all its training events, the newer one included: its seen products stay out.
    assert {p for p, _ in got["u0"]}.isdisjoint({"p1", "p2", "p4", "p5", "new"})


@pytest.mark.parametrize("spec", ["x", "-1", ""])
def test_bad_days_name_the_family(spec):
    with pytest.raises(ValueError, match=r"als-foldin:<days>"):
        resolve(f"als-foldin:{spec}")

