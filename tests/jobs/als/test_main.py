"""The als job end to end on a tiny lake: factors, candidates, serving bundle and run record."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta

import numpy as np
import pytest
from chispa import assert_df_equality

from jobs.als import main as als_main
from jobs.common import lake
from jobs.common.candidate_lists import to_rows
from jobs.common.errors import JobError
from jobs.common.scope import written_scope
from recsys.bundle import current_bundle_dir, load_bundle
from recsys.config import AlsConfig, Config, LakeConfig
from recsys.foldin import fold_in

pytestmark = [pytest.mark.spark, pytest.mark.slow]

END = datetime(2026, 3, 1)


def _events(spark, lake_root):
    rows = []
    for u in range(12):  # two taste groups; each user misses one product of their group
        group = range(4) if u < 6 else range(4, 8)
        for i in group:
            if i % 4 != u % 4:
                ts = END - timedelta(days=60 if u == 11 else 1 + i)  # u11 is inactive for 30 days
                rows.append((f"e{u}-{i}", f"u{u}", f"p{i}", "purchase", 1, ts, None, "test", END, 0))
    df = spark.createDataFrame(rows, lake.INTERACTIONS_SCHEMA)
    df.write.format("delta").save(str(lake_root / "interactions"))


# 8 items x rank 4 x 4 bytes: broadcast under the default limit, Spark's recommendForUserSubset under 0 MB.
@pytest.mark.parametrize(("max_mb", "scoring"), [(1024, "broadcast"), (0, "recommendForUserSubset")])
def test_als_job_writes_every_output(spark, lake_root, tmp_path, max_mb, scoring):
    _events(spark, lake_root)
    cfg = Config(
        lake=LakeConfig(
            root=str(lake_root), models_root=str(tmp_path / "models"), checkpoint_dir=str(tmp_path / "ckpt")
        ),
        als=AlsConfig(
            rank=4, max_iter=10, top_n=2, alpha=5.0, reg_param=0.05, seed=1, candidates_broadcast_max_mb=max_mb
        ),
    )
    args = argparse.Namespace(all_users=False, as_of=None, no_bundle=False, users=None, refit=False)
    assert als_main.run(args, cfg, spark) == 0

    table = lake.read_table(spark, cfg.table_path(lake.CF_CANDIDATES))
    # One row per user, the candidates best first in lists (jobs.common.candidate_lists).
    assert table.columns == ["user_id", "product_ids", "scores", "model_version"]
    assert table.count() == table.select("user_id").distinct().count() == 11
    cands = to_rows(table)
    version = cands.first()["model_version"]
    assert version.startswith("als-") and version.endswith("Z")
    # Each active user's one missing product of their group ranks first; u11 (inactive) gets none.
    firsts = cands.where("rank = 1").select("user_id", "product_id")
    expected = spark.createDataFrame(
        [(f"u{u}", f"p{(4 if u >= 6 else 0) + u % 4}") for u in range(11)],
        "user_id string, product_id string",
    )
    assert_df_equality(firsts, expected, ignore_row_order=True, ignore_nullable=True)
    seen = lake.read_table(spark, cfg.table_path(lake.INTERACTIONS)).select("user_id", "product_id")
    assert cands.join(seen, ["user_id", "product_id"], "left_semi").count() == 0

    bundle = load_bundle(current_bundle_dir(cfg.model_path("als")))
    assert bundle.model_version == version and bundle.item_factors.shape == (8, 4)
    users = lake.read_table(spark, cfg.table_path(lake.ALS_USER_FACTORS))
    u0 = users.where("user_id = 'u0'").first()
    np.testing.assert_allclose(bundle.user_vector("u0"), np.array(u0["factors"]), rtol=1e-6)
    rows = np.array([bundle.item_index[p] for p in ("p1", "p2", "p3")])
    folded = fold_in(bundle.item_factors, bundle.gram, rows, np.ones(3), reg_param=0.05, alpha=5.0)
    np.testing.assert_allclose(folded, bundle.user_vector("u0"), rtol=1e-3, atol=1e-4)

    run = lake.read_table(spark, cfg.table_path(lake.RUNS)).first()
    assert (run["job"], run["model_version"]) == ("als", version)
    assert json.loads(run["row_counts"])["pairs"] == 36
    assert set(json.loads(run["timings"])) >= {"matrix", "fit", "candidates", "bundle"}
    assert json.loads(run["params"])["rank"] == 4
    assert json.loads(run["params"])["candidates_scoring"] == scoring
    assert json.loads(run["metrics"])["candidate_users_share"] == pytest.approx(11 / 12)


def test_users_table_limits_the_candidates_and_tags_the_commit(spark, lake_root, tmp_path):
    _events(spark, lake_root)
    cfg = Config(
        lake=LakeConfig(
            root=str(lake_root), models_root=str(tmp_path / "models"), checkpoint_dir=str(tmp_path / "ckpt")
        ),
        als=AlsConfig(rank=4, max_iter=10, top_n=2, alpha=5.0, reg_param=0.05, seed=1),
    )
    users = str(tmp_path / "rescored_users")
    # u11 is inactive (no candidates in any run); u99 has no interactions.
    lake.overwrite_version(spark.createDataFrame([("u0",), ("u7",), ("u11",), ("u99",)], "user_id string"), users)
    args = argparse.Namespace(all_users=False, as_of=None, no_bundle=True, users=users, refit=False)
    assert als_main.run(args, cfg, spark) == 0

    path = cfg.table_path(lake.CF_CANDIDATES)
    cands = to_rows(lake.read_table(spark, path))
    assert sorted({r["user_id"] for r in cands.collect()}) == ["u0", "u7"]
    firsts = {r["user_id"]: r["product_id"] for r in cands.where("rank = 1").collect()}
    assert firsts == {"u0": "p0", "u7": "p7"}
    assert written_scope(spark, path) == f"users:{users}@v0"
    run = lake.read_table(spark, cfg.table_path(lake.RUNS)).first()
    assert json.loads(run["params"])["users"] == f"users:{users}@v0"
    assert json.loads(run["row_counts"])["users"] == 12  # the model is still fitted on every user

    # Without --users the table holds every active user again, untagged.
    args = argparse.Namespace(all_users=False, as_of=None, no_bundle=True, users=None, refit=False)
    assert als_main.run(args, cfg, spark) == 0
    assert lake.read_table(spark, path).select("user_id").distinct().count() == 11
    assert written_scope(spark, path) is None


def test_negative_broadcast_limit_is_an_error_naming_the_key(spark, tmp_path):
    cfg = Config(lake=LakeConfig(root=str(tmp_path / "lake")), als=AlsConfig(candidates_broadcast_max_mb=-1))
    args = argparse.Namespace(all_users=False, as_of=None, no_bundle=False, users=None, refit=False)
    with pytest.raises(JobError, match="als.candidates_broadcast_max_mb must be >= 0"):
        als_main.run(args, cfg, spark)
