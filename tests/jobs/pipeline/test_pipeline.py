"""The pipeline's incremental mode: only users with new interactions are rescored and reloaded."""

from __future__ import annotations

import argparse
import dataclasses
import threading
from datetime import datetime
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from jobs.blend.main import run_blend
from jobs.common import lake
from jobs.common.candidate_lists import to_rows
from jobs.common.errors import JobError
from jobs.common.progress import Stages
from jobs.common.scope import written_scope
from jobs.pipeline.main import run_job, run_pipeline
from recsys.config import Config, LakeConfig, RedisConfig, SparkConfig
from recsys.encoding import decode_list

pytestmark = [pytest.mark.spark, pytest.mark.redis, pytest.mark.slow]

T0 = datetime(2026, 1, 10)
T1 = datetime(2026, 1, 11)


def config(lake_root: Path, url: str) -> Config:
    return dataclasses.replace(
        Config(),
        lake=dataclasses.replace(LakeConfig(), root=str(lake_root), models_root=str(lake_root / "models")),
        redis=dataclasses.replace(RedisConfig(), url=url),
        spark=dataclasses.replace(SparkConfig(), shuffle_partitions=2),
    )


def event(eid: str, user: str, pid: str, etype: str, ts: datetime, ingested: datetime) -> tuple:
    return (eid, user, pid, etype, 1, ts, None, "test", ingested, 0)


def seed_lake(spark, cfg: Config) -> None:
    spark.createDataFrame(
        [
            (p, p.upper(), c, None, 1.0, True, T0)
            for p, c in [("p1", "a"), ("p2", "a"), ("p3", "b"), ("p4", "b"), ("p5", "c")]
        ],
        lake.PRODUCTS_SCHEMA,
    ).write.format("delta").save(cfg.table_path(lake.PRODUCTS))
    spark.createDataFrame(
        [
            event("e1", "u1", "p1", "purchase", T0, T0),
            event("e2", "u1", "p2", "view", T0, T0),
            event("e3", "u2", "p3", "purchase", T0, T0),
            event("e4", "u3", "p1", "view", T0, T0),
        ],
        lake.INTERACTIONS_SCHEMA,
    ).write.format("delta").save(cfg.table_path(lake.INTERACTIONS))
    spark.createDataFrame(
        [
            ("u1", ["p3", "p4"], [0.9, 0.5], "als-1"),
            ("u2", ["p1", "p5"], [0.8, 0.3], "als-1"),
        ],
        "user_id string, product_ids array<string>, scores array<float>, model_version string",
    ).write.format("delta").save(cfg.table_path(lake.CF_CANDIDATES))


def args(**kw) -> argparse.Namespace:
    base = {
        "full": False,
        "events": None,
        "products": None,
        "format": None,
        "preset": None,
        "skip": "ingest",
        "reingest": False,
        "refit": False,
        "serial": False,
    }
    return argparse.Namespace(**{**base, **kw})


def versions(spark, cfg: Config) -> dict[str, int]:
    return {
        name: DeltaTable.forPath(spark, cfg.table_path(name)).history(1).first()["version"]
        for name in (lake.RECOMMENDATIONS, lake.RUNS, lake.POPULAR)
    }


def test_incremental_rescores_only_changed_users(spark, lake_root, redis_server, redis_client) -> None:
    cfg = config(lake_root, redis_server)
    seed_lake(spark, cfg)
    ran: list[str] = []

    def runner(name, argv, cfg_, spark_):  # ALS and content outputs are seeded above
        ran.append(name)
        return True

    first = run_pipeline(args(), cfg, spark, runner=runner)
    assert first.mode == "full (first run)" and first.users_scored == 3 and sorted(ran) == ["als", "content"]
    recs = lake.read_table(spark, cfg.table_path(lake.RECOMMENDATIONS))
    v1 = {r["user_id"]: r["model_version"] for r in recs.collect()}
    assert sorted(v1) == ["u1", "u2", "u3"]
    assert decode_list(redis_client.get("recommendations:user:u2")).product_ids[0] == "p1"
    redis_client.delete("recommendations:user:u1")  # an unchanged user's key must not be rewritten

    # u2 buys p1 (ingested later): only u2 is rescored, and p1 leaves u2's list.
    spark.createDataFrame(
        [event("e5", "u2", "p1", "purchase", T1, T1)], lake.INTERACTIONS_SCHEMA
    ).write.format("delta").mode("append").save(cfg.table_path(lake.INTERACTIONS))
    second = run_pipeline(args(), cfg, spark, runner=runner)
    assert second.mode == "incremental" and second.users_scored == 1
    recs = lake.read_table(spark, cfg.table_path(lake.RECOMMENDATIONS))
    v2 = {r["user_id"]: r["model_version"] for r in recs.collect()}
    assert v2["u1"] == v1["u1"] and v2["u3"] == v1["u3"] and v2["u2"] != v1["u2"]
    assert redis_client.get("recommendations:user:u1") is None
    u2 = decode_list(redis_client.get("recommendations:user:u2")).product_ids
    assert "p1" not in u2 and "p3" not in u2
    assert {k.decode() for k in redis_client.keys("recommendations:user:*")} == {
        "recommendations:user:u2",
        "recommendations:user:u3",
    }

    # No new data: nothing to do, no table gets a new version, no stage but the checks runs.
    before = versions(spark, cfg)
    ran.clear()
    third = run_pipeline(args(), cfg, spark, runner=runner)
    assert third.notes == {"reason": "no new data"} and third.users_scored == 0 and ran == []
    assert versions(spark, cfg) == before
    assert recs.where(F.col("user_id") == "u2").count() == 1


def test_incremental_run_scores_candidates_of_its_users_only(spark, lake_root, redis_server) -> None:
    cfg = config(lake_root, redis_server)
    cfg = dataclasses.replace(
        cfg,
        lake=dataclasses.replace(cfg.lake, checkpoint_dir=str(lake_root / "checkpoints")),
        als=dataclasses.replace(cfg.als, rank=4, max_iter=2),
        content=dataclasses.replace(cfg.content, recall_sample=0),
    )
    seed_lake(spark, cfg)
    paths = {name: cfg.table_path(name) for name in (lake.CF_CANDIDATES, lake.CONTENT_CANDIDATES)}

    def users_of(path: str) -> set[str]:
        return {r["user_id"] for r in lake.read_table(spark, path).select("user_id").distinct().collect()}

    first = run_pipeline(args(), cfg, spark)  # the real als and content jobs
    assert first.users_scored == 3
    for path in paths.values():
        assert users_of(path) == {"u1", "u2", "u3"} and written_scope(spark, path) is None

    # u2 buys p1: the incremental run fits the models on every user but scores candidates for u2 only.
    spark.createDataFrame(
        [event("e5", "u2", "p1", "purchase", T1, T1)], lake.INTERACTIONS_SCHEMA
    ).write.format("delta").mode("append").save(cfg.table_path(lake.INTERACTIONS))
    second = run_pipeline(args(), cfg, spark)
    assert second.mode == "incremental" and second.users_scored == 1
    tag = f"users:{cfg.table_path(lake.RESCORED_USERS)}@v0"
    for path in paths.values():
        assert users_of(path) == {"u2"} and written_scope(spark, path) == tag
        bought = to_rows(lake.read_table(spark, path)).where(F.col("product_id").isin("p1", "p3")).count()
        assert bought == 0
    recs = lake.read_table(spark, cfg.table_path(lake.RECOMMENDATIONS))
    assert {r["user_id"] for r in recs.collect()} == {"u1", "u2", "u3"}  # the others keep their lists

    # A blend of every user would read u2's candidates only: it stops first, naming the table and the job.
    with pytest.raises(JobError, match=r"cf_candidates at .* holds only the candidates of the users in .*als"):
        run_blend(spark, cfg, version="blend-test", stages=Stages("blend"))
    # --full scores every user's candidates again.
    third = run_pipeline(args(full=True), cfg, spark)
    assert third.users_scored == 3
    for path in paths.values():
        assert users_of(path) == {"u1", "u2", "u3"} and written_scope(spark, path) is None


def test_the_ingest_reads_only_files_not_ingested_before(spark, lake_root, tmp_path, redis_server, capsys) -> None:
    cfg = config(lake_root, redis_server)
    seed_lake(spark, cfg)
    events, products = tmp_path / "events", tmp_path / "products.csv"
    events.mkdir()
    header = "event_id,user_id,product_id,event_type,ts\n"
    (events / "day-1.csv").write_text(header + "n1,u1,p3,purchase,2026-01-10\n")
    products.write_text("product_id,title,category\np1,P1,a\n")
    ran: list[tuple[str, list[str]]] = []
    threads: dict[str, str] = {}

    def runner(name, argv, cfg_, spark_):  # the real ingest (without the gx report); ALS and content are seeded
        ran.append((name, argv))
        threads[argv[1] if name == "ingest" else name] = threading.current_thread().name
        return run_job(name, [*argv, "--skip-gx"], cfg_, spark_) if name == "ingest" else True

    def ingested() -> list[str]:
        rows = lake.read_table(spark, cfg.table_path(lake.INTERACTIONS)).where("event_id LIKE 'n%'").collect()
        return sorted(r["event_id"] for r in rows)

    inputs = {"events": str(events), "products": str(products), "skip": ""}
    run_pipeline(args(**inputs), cfg, spark, runner=runner)
    assert sorted(ran[:2]) == [  # at the same time, in either order
        ("ingest", ["--table", "interactions", "--input", str(events), "--new-files-only"]),
        ("ingest", ["--table", "products", "--input", str(products), "--new-files-only"]),
    ]
    assert threads["products"] == "pipeline-ingest-products"
    assert threads["interactions"] == "pipeline-ingest-interactions"
    assert sorted(ran[2:]) == [("als", []), ("content", [])]  # at the same time, in either order
    assert ingested() == ["n1"]

    # The same files: the ingest lists them and reads nothing; no new interactions, so nothing else runs.
    names = (lake.INTERACTIONS, lake.PRODUCTS, lake.INGESTED_FILES)
    before = {n: DeltaTable.forPath(spark, cfg.table_path(n)).history(1).first()["version"] for n in names}
    capsys.readouterr()
    ran.clear()
    assert run_pipeline(args(**inputs), cfg, spark, runner=runner).notes == {"reason": "no new data"}
    assert [name for name, _ in ran] == ["ingest", "ingest"]
    assert capsys.readouterr().out.count(": no new files (1 files, each ingested before") == 2
    assert {n: DeltaTable.forPath(spark, cfg.table_path(n)).history(1).first()["version"] for n in names} == before

    # A new file: only its event is read, and only its user is rescored.
    (events / "day-2.csv").write_text(header + "n2,u3,p5,purchase,2026-01-11\n")
    second = run_pipeline(args(**inputs), cfg, spark, runner=runner)
    out = capsys.readouterr().out
    assert second.mode == "incremental" and second.users_scored == 1
    assert "interactions from" in out and "read                         1" in out
    assert ingested() == ["n1", "n2"]

    # --reingest reads every file again (and changes nothing).
    ran.clear()
    run_pipeline(args(**inputs, reingest=True), cfg, spark, runner=runner)
    assert sorted(argv for name, argv in ran if name == "ingest") == [
        ["--table", "interactions", "--input", str(events)],
        ["--table", "products", "--input", str(products)],
    ]
    assert "read                         2" in capsys.readouterr().out
