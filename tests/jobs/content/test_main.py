"""The content job end to end on a tiny lake: outputs, run record, and a new product in the next run."""

from __future__ import annotations

import argparse
import json
from datetime import datetime

import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from jobs.common import lake
from jobs.common.scope import written_scope
from jobs.content import main
from recsys.config import load_config

pytestmark = [pytest.mark.spark, pytest.mark.slow]

NOW = datetime(2026, 1, 31, 12, 0)
PRODUCTS = [
    ("a1", "red cotton shirt", "Clothes", "acme", 10.0, True, NOW),
    ("a2", "blue cotton shirt", "Clothes", "acme", 12.0, True, NOW),
    ("a3", "red wool jumper", "Clothes", "zeta", 30.0, True, NOW),
    ("b1", "red ceramic mug", "Kitchen", "acme", 6.0, True, NOW),
    ("b2", "blue ceramic bowl", "Kitchen", "delta", 9.0, True, NOW),
]
EVENTS = [
    ("e1", "u1", "a1", "purchase", 1, NOW, None, "test", NOW, 0),
    ("e2", "u1", "b1", "view", 1, NOW, None, "test", NOW, 0),
    ("e3", "u2", "b2", "click", 1, NOW, None, "test", NOW, 0),
]


def _run(spark, root, users: str | None = None, *, full: bool = False) -> None:
    args = argparse.Namespace(full=full, sample_recall=5, lake=str(root), conf_file=None, users=users)
    assert main.run(args, load_config(), spark) == 0


def _seed(spark, root) -> None:
    for name, rows, schema in (
        ("products", PRODUCTS, lake.PRODUCTS_SCHEMA),
        ("interactions", EVENTS, lake.INTERACTIONS_SCHEMA),
    ):
        lake.merge_upsert(spark, spark.createDataFrame(rows, schema), str(root / name), lake.TABLES[name])


def test_outputs_runs_and_new_product_gets_neighbours(spark, lake_root):
    path = lambda name: str(lake_root / name)  # noqa: E731
    _seed(spark, lake_root)
    _run(spark, lake_root)
    first = lake.read_table(spark, path("item_neighbors"))
    assert first.columns == ["product_id", "neighbor_id", "score", "rank", "model_version"]
    assert {r["product_id"] for r in first.collect()} == {p[0] for p in PRODUCTS}
    table = lake.read_table(spark, path("content_candidates"))
    assert table.columns == ["user_id", "product_ids", "scores", "model_version"]
    [u1] = table.where(F.col("user_id") == "u1").collect()  # one row per user, candidates best first
    assert u1["product_ids"] and "a1" not in u1["product_ids"]  # a1 is purchased
    assert u1["scores"] == sorted(u1["scores"], reverse=True)
    n_candidates = sum(len(r["product_ids"]) for r in table.collect())

    new = [("a9", "green cotton shirt", "Clothes", "acme", 11.0, True, NOW)]
    lake.merge_upsert(
        spark, spark.createDataFrame(new, lake.PRODUCTS_SCHEMA), path("products"), lake.TABLES["products"]
    )
    _run(spark, lake_root)
    second = lake.read_table(spark, path("item_neighbors"))
    a9 = second.where(F.col("product_id") == "a9").orderBy("rank").collect()
    assert [r["rank"] for r in a9] == list(range(1, 6))  # 5 other products, top_k 50
    assert a9[0]["neighbor_id"] in {"a1", "a2"}
    assert second.where(F.col("neighbor_id") == "a9").count() == 5
    assert second.select("model_version").distinct().count() == 1

    runs = lake.read_table(spark, path("runs")).orderBy("started_at").collect()
    assert [r["job"] for r in runs] == ["content", "content"]
    assert (
        runs[1]["model_version"].startswith("content-") and runs[1]["model_version"] == a9[0]["model_version"]
    )
    metrics = json.loads(runs[1]["metrics"])
    assert metrics["neighbors_recall"] == pytest.approx(1.0)
    assert json.loads(runs[1]["row_counts"])["item_neighbors"] == 30
    assert json.loads(runs[0]["row_counts"])["content_candidates"] == n_candidates
    assert set(json.loads(runs[1]["timings"])) >= {"features", "similar_items", "recall_check"}
    assert json.loads(runs[1]["params"])["top_k"] == load_config().content.top_k


def test_users_table_limits_the_candidates_to_the_same_rows(spark, lake_root, tmp_path):
    _seed(spark, lake_root)
    table = str(lake_root / "content_candidates")
    _run(spark, lake_root)
    every = lake.read_table(spark, table).drop("model_version")
    assert {r["user_id"] for r in every.collect()} == {"u1", "u2"}
    users = str(tmp_path / "rescored_users")
    lake.overwrite_version(spark.createDataFrame([("u1",), ("u9",)], "user_id string"), users)
    _run(spark, lake_root, users=users)
    scoped = lake.read_table(spark, table).drop("model_version")
    # u1's candidates are the rows of the run over every user; u2 is not scored, u9 has no events.
    assert sorted(scoped.collect()) == sorted(every.where(F.col("user_id") == "u1").collect())
    assert written_scope(spark, table) == f"users:{users}@v0"
    runs = lake.read_table(spark, str(lake_root / "runs")).orderBy("started_at").collect()
    assert [json.loads(r["params"])["users"] for r in runs] == [None, f"users:{users}@v0"]


def test_a_users_run_reuses_the_neighbours_of_an_unchanged_catalogue(spark, lake_root, tmp_path):
    _seed(spark, lake_root)
    nbr_path, users = str(lake_root / "item_neighbors"), str(tmp_path / "rescored_users")
    lake.overwrite_version(spark.createDataFrame([("u1",)], "user_id string"), users)

    def neighbours() -> tuple[int, list]:
        version = DeltaTable.forPath(spark, nbr_path).history(1).first()["version"]
        return version, sorted(tuple(r) for r in lake.read_table(spark, nbr_path).drop("model_version").collect())

    def last_params() -> dict:
        row = lake.read_table(spark, str(lake_root / "runs")).orderBy(F.col("finished_at").desc()).first()
        return {"version": row["model_version"], **json.loads(row["params"]), "timings": json.loads(row["timings"])}

    _run(spark, lake_root)
    first, computed = last_params(), neighbours()
    assert (first["neighbours"], first["neighbours_version"]) == ("computed", first["version"])
    # Same products, same settings: the stored neighbours are read, not rewritten.
    _run(spark, lake_root, users=users)
    reused = last_params()
    assert (reused["neighbours"], reused["neighbours_version"]) == ("reused", first["version"])
    assert reused["products_version"] == first["products_version"]
    assert neighbours() == computed and "similar_items" not in reused["timings"]
    # --full recomputes them: a new table version with the same rows.
    _run(spark, lake_root, users=users, full=True)
    assert last_params()["neighbours"] == "computed"
    again = neighbours()
    assert again[0] == computed[0] + 1 and again[1] == computed[1]
    # A product added: the next users run recomputes, and the new product has neighbours.
    new = [("a9", "green cotton shirt", "Clothes", "acme", 11.0, True, NOW)]
    lake.merge_upsert(
        spark, spark.createDataFrame(new, lake.PRODUCTS_SCHEMA), str(lake_root / "products"), lake.TABLES["products"]
    )
    _run(spark, lake_root, users=users)
    assert last_params()["neighbours"] == "computed"
    assert {r[0] for r in neighbours()[1]} == {p[0] for p in PRODUCTS} | {"a9"}
