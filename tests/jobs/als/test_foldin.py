"""An incremental als run folds its users in against the stored fit instead of fitting again (als.refit_every_days)."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta

import numpy as np
import pytest
from chispa import assert_df_equality

from jobs.als import main as als_main
from jobs.als import transforms as tr
from jobs.als.foldin import FIT_PARAMS, StoredFit, refit_reason
from jobs.als.model import build_als
from jobs.common import lake
from jobs.common.candidate_lists import to_rows
from recsys.bundle import current_bundle_dir
from recsys.config import AlsConfig, Config, LakeConfig

END = datetime(2026, 3, 1)
PARAMS = {key: getattr(AlsConfig(), key) for key in FIT_PARAMS}
FIT = StoredFit("als-1", as_of=END, finished_at=END, params=PARAMS, items=8)


def reason(fit: StoredFit | None = FIT, *, every: float = 7, as_of: datetime = END, now: datetime = END, **params):
    return refit_reason(fit, every_days=every, params={**PARAMS, **params}, as_of=as_of, now=now)


def test_refit_reason_names_why_a_fit_is_needed() -> None:
    assert reason() is None
    assert reason(as_of=END + timedelta(days=6.9), now=END + timedelta(days=6.9)) is None
    assert reason(None) == "no stored fit"
    assert reason(every=0) == "als.refit_every_days is 0"
    assert reason(rank=32) == "als.rank changed since the fit als-1 (64 -> 32)"
    assert reason(binary_confidence=False) == "als.binary_confidence changed since the fit als-1 (True -> False)"
    assert reason(as_of=END + timedelta(days=7)) == (
        "the fit als-1 is 7.0 days old by the data (als.refit_every_days 7)"
    )
    # No new data for a week still refits: the clock counts too.
    assert reason(now=END + timedelta(days=8)) == "the fit als-1 is 8.0 days old by the clock (als.refit_every_days 7)"
    assert reason(as_of=END - timedelta(days=1)) == (
        "--as-of 2026-02-28T00:00:00 is before the fit's cut-off 2026-03-01T00:00:00"
    )
    with pytest.raises(ValueError, match="als.refit_every_days must be >= 0"):
        reason(every=-1)


def _ratings(spark):
    rows = []
    for u in range(12):  # two taste groups; each user misses one product of their group
        for i in range(4) if u < 6 else range(4, 8):
            if i % 4 != u % 4:
                rows.append((u, i, 1.0))
    return spark.createDataFrame(rows, "user_idx int, item_idx int, rating float")


@pytest.mark.spark
def test_fold_in_users_gives_back_sparks_own_user_vectors(spark) -> None:
    """ALS ends on a user half-step, the same solve as the fold-in: folding every user in against the fitted
    item factors reproduces the fitted user factors. An unknown item is ignored; a user with only unknown
    items gets no vector."""
    train = _ratings(spark)
    cfg = AlsConfig(rank=4, max_iter=10, alpha=5.0, reg_param=0.05, seed=1)
    model = build_als(cfg).fit(train)
    items = sorted((r["id"], r["features"]) for r in model.itemFactors.collect())
    y = np.array([f for _, f in items], dtype=np.float32)
    bc = spark.sparkContext.broadcast(tr.item_matrix(np.array([i for i, _ in items]), y))
    extra = spark.createDataFrame([(0, 99, 1.0), (50, 99, 1.0)], "user_idx int, item_idx int, rating float")
    y64 = y.astype(np.float64)
    out = tr.fold_in_users(
        train.unionByName(extra), item_factors=bc, gram=y64.T @ y64, reg_param=0.05, alpha=5.0
    ).collect()
    folded = {r["id"]: np.array(r["features"]) for r in out}
    expected = {r["id"]: np.array(r["features"]) for r in model.userFactors.collect()}
    assert sorted(folded) == sorted(expected) == list(range(12))  # user 50 (only item 99) has no vector
    for u, x in expected.items():
        np.testing.assert_allclose(folded[u], x, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="gram must be a square matrix"):
        tr.fold_in_users(train, item_factors=bc, gram=np.ones(3), reg_param=0.05, alpha=5.0)


def _event(eid: str, user: str, pid: str, ts: datetime) -> tuple:
    return (eid, user, pid, "purchase", 1, ts, None, "test", END, 0)


def _lake(spark, lake_root) -> None:
    rows = []
    for u in range(12):
        for i in range(4) if u < 6 else range(4, 8):
            if i % 4 != u % 4:
                rows.append(_event(f"e{u}-{i}", f"u{u}", f"p{i}", END - timedelta(days=1 + i)))
    spark.createDataFrame(rows, lake.INTERACTIONS_SCHEMA).write.format("delta").save(str(lake_root / "interactions"))


def _args(users: str | None, *, refit: bool = False) -> argparse.Namespace:
    return argparse.Namespace(all_users=False, as_of=None, no_bundle=False, users=users, refit=refit)


def _last_run(spark, cfg: Config) -> dict:
    row = lake.read_table(spark, cfg.table_path(lake.RUNS)).orderBy("finished_at", ascending=False).first()
    return {"version": row["model_version"], **json.loads(row["params"]), "counts": json.loads(row["row_counts"])}


@pytest.mark.spark
@pytest.mark.slow
def test_incremental_run_folds_in_until_the_fit_is_old(spark, lake_root, tmp_path) -> None:
    _lake(spark, lake_root)
    cfg = Config(
        lake=LakeConfig(
            root=str(lake_root), models_root=str(tmp_path / "models"), checkpoint_dir=str(tmp_path / "ckpt")
        ),
        als=AlsConfig(rank=4, max_iter=10, top_n=3, alpha=5.0, reg_param=0.05, seed=1),
    )
    assert als_main.run(_args(None), cfg, spark) == 0
    fit = _last_run(spark, cfg)
    assert (fit["fit"], fit["refit_reason"]) == ("refit", "no --users: every user is scored")
    bundle = current_bundle_dir(cfg.model_path("als"))
    item_factors = lake.read_table(spark, cfg.table_path(lake.ALS_ITEM_FACTORS)).orderBy("item_idx").collect()

    # u0 buys p0 (the one product of its group it missed) and p5; u12 is new and buys p4 and p9, a product
    # first seen after the fit (no factors: it cannot be folded in or recommended).
    new = [_event("n1", "u0", "p0", END), _event("n2", "u0", "p5", END), _event("n3", "u12", "p4", END),
           _event("n4", "u12", "p9", END)]
    spark.createDataFrame(new, lake.INTERACTIONS_SCHEMA).write.format("delta").mode("append").save(
        str(lake_root / "interactions")
    )
    users = str(tmp_path / "rescored_users")
    lake.overwrite_version(spark.createDataFrame([("u0",), ("u12",)], "user_id string"), users)
    assert als_main.run(_args(users), cfg, spark) == 0

    run = _last_run(spark, cfg)
    assert (run["fit"], run["refit_reason"], run["fitted_version"]) == ("fold-in", None, fit["version"])
    assert run["version"] != fit["version"] and run["counts"]["users"] == 2 and run["counts"]["pairs"] == 7
    # The item factors and the serving bundle are the fit's; u0 and u12 have vectors in the fit's space.
    assert lake.read_table(spark, cfg.table_path(lake.ALS_ITEM_FACTORS)).orderBy("item_idx").collect() == item_factors
    assert current_bundle_dir(cfg.model_path("als")) == bundle
    user_f = lake.read_table(spark, cfg.table_path(lake.ALS_USER_FACTORS))
    assert user_f.count() == 13
    assert {r["user_id"] for r in user_f.where(f"model_version = '{fit['version']}'").collect()} == {
        f"u{u}" for u in range(13)
    }
    # Candidates for the two users only, none of their products, none without factors: u0 has every product
    # of group A now and gets the rest of group B; u12 (p4) gets group B.
    cands = to_rows(lake.read_table(spark, cfg.table_path(lake.CF_CANDIDATES)))
    expected = spark.createDataFrame(
        [("u0", "p4"), ("u0", "p6"), ("u0", "p7"), ("u12", "p5"), ("u12", "p6"), ("u12", "p7")],
        "user_id string, product_id string",
    )
    assert_df_equality(
        cands.select("user_id", "product_id"), expected, ignore_row_order=True, ignore_nullable=True
    )
    assert {r["model_version"] for r in cands.collect()} == {run["version"]}

    # --refit fits on everyone again (als.refit_every_days 0 too: the reasons above); p9 gets factors then.
    assert als_main.run(_args(users, refit=True), cfg, spark) == 0
    last = _last_run(spark, cfg)
    assert (last["fit"], last["refit_reason"], last["counts"]["items"]) == ("refit", "--refit", 9)
    assert lake.read_table(spark, cfg.table_path(lake.ALS_ITEM_FACTORS)).first()["model_version"] == last["version"]
