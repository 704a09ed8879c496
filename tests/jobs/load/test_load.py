"""The load job against a real Redis: exactly the expected keys, TTLs set, values read by the API's reader."""

from __future__ import annotations

import dataclasses
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import redis
from pyspark.sql import types as T

from jobs.blend.main import SIMILAR_ITEMS
from jobs.common import lake
from jobs.common.errors import JobError
from jobs.common.progress import Stages
from jobs.load.main import EARLY_KINDS, redis_error, run_load
from jobs.load.writer import Target, write_rows
from recsys.config import Config, LakeConfig, RedisConfig, ServingConfig
from recsys.encoding import SOURCE_BITS, decode_list
from recsys.localredis import free_port, start_redis, stop_redis
from serving.store import RedisStore

pytestmark = [pytest.mark.spark, pytest.mark.redis]

SCORED_AT = datetime(2026, 1, 2, 3, 4, 5)
RECS_SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.StringType(), False),
        T.StructField("product_ids", T.ArrayType(T.StringType(), False), False),
        T.StructField("scores", T.ArrayType(T.FloatType(), False), False),
        T.StructField("sources", T.ArrayType(T.IntegerType(), False), False),
        T.StructField("model_version", T.StringType(), False),
        T.StructField("scored_at", T.TimestampType(), False),
    ]
)


# Every key a full load of write_lake's tables writes (also checked after a Redis restart in tests/ops).
LOADED_KEYS = (
    "recommendations:user:u1",
    "recommendations:user:u2",
    "similar:item:p1",
    "similar:item:p2",
    "popular:global",
    "popular:category:home%20%26%20garden",
    "product:p1",
    "product:p2",
    "product:p3",
    "history:user:u1",
    "history:user:u2",
    "model:current",
)


def make_config(lake_root: Path, url: str) -> Config:
    return dataclasses.replace(
        Config(),
        lake=dataclasses.replace(LakeConfig(), root=str(lake_root), models_root=str(lake_root / "models")),
        redis=dataclasses.replace(
            RedisConfig(),
            url=url,
            ttl_seconds=3600,
            long_ttl_seconds=86400,
            pipeline_size=2,
            history_seed_length=2,
        ),
    )


def write_lake(spark, cfg: Config) -> None:
    recs = spark.createDataFrame(
        [
            ("u1", ["p2", "p3"], [0.9, 0.5], [1, 1 | 4], "blend-v2", SCORED_AT),
            ("u2", ["p1"], [0.7], [2], "blend-v2", SCORED_AT),
            ("u3", [], [], [], "blend-v1", SCORED_AT),
        ],
        RECS_SCHEMA,
    )
    recs.write.format("delta").save(cfg.table_path(lake.RECOMMENDATIONS))
    spark.createDataFrame(
        [("p1", "p2", 0.8, 8, 1), ("p1", "p3", 0.4, 2, 2), ("p2", "p1", 0.8, 10, 1)],
        "product_id string, neighbor_id string, score double, sources int, rank int",
    ).write.format("delta").save(cfg.table_path(SIMILAR_ITEMS))
    spark.createDataFrame(
        [(None, "p2", 9.0, 1), (None, "p1", 4.0, 2), ("Home & Garden", "p1", 4.0, 1)],
        "category string, product_id string, score double, rank int",
    ).write.format("delta").save(cfg.table_path(lake.POPULAR))
    spark.createDataFrame(
        [
            ("p1", "Mug", "Home & Garden", None, 2.5, True, SCORED_AT),
            ("p2", "Cup", "kitchen", "acme", None, True, SCORED_AT),
            ("p3", "Pot", "kitchen", None, 1.0, False, SCORED_AT),
        ],
        lake.PRODUCTS_SCHEMA,
    ).write.format("delta").save(cfg.table_path(lake.PRODUCTS))
    spark.createDataFrame(
        [
            ("e1", "u1", "p1", "purchase", 2, datetime(2026, 1, 1), None, "t", SCORED_AT, 0),
            ("e2", "u1", "p2", "view", 1, datetime(2026, 1, 2), None, "t", SCORED_AT, 0),
            ("e3", "u1", "p3", "view", 1, datetime(2025, 12, 1), None, "t", SCORED_AT, 0),
            ("e4", "u2", "p2", "view", 1, datetime(2026, 1, 1), None, "t", SCORED_AT, 0),
        ],
        lake.INTERACTIONS_SCHEMA,
    ).write.format("delta").save(cfg.table_path(lake.INTERACTIONS))


def test_full_load_writes_exactly_the_contract_keys(spark, lake_root, redis_server, redis_client) -> None:
    cfg = make_config(lake_root, redis_server)
    write_lake(spark, cfg)
    redis_client.set("recommendations:user:u3", b"stale", ex=60)  # an emptied list is deleted
    out = run_load(spark, cfg, stages=Stages("load"))

    got = sorted(k.decode() for k in redis_client.keys("*"))
    assert got == sorted(LOADED_KEYS)
    ttls = {k: redis_client.ttl(k) for k in got}
    for key, ttl in ttls.items():
        if key.startswith("recommendations:"):
            assert 3600 - 300 < ttl <= 3600, key  # minus a slow run's seconds
        elif key.startswith(("similar:", "popular:")):
            assert 86400 - 300 < ttl <= 86400, key
        elif key.startswith("history:"):
            assert ServingConfig().history_ttl_s - 300 < ttl <= ServingConfig().history_ttl_s, key
        else:
            assert ttl == -1, key  # product hashes and model:current are documented as persistent
    store = RedisStore(redis_client, ServingConfig(), 3600)
    u1, _ = store.cached_recs("u1")
    assert u1 is not None and u1.product_ids == ["p2", "p3"]
    assert u1.scores.tolist() == pytest.approx([0.9, 0.5], abs=1e-3)
    assert u1.source_names(1) == ["cf", "popular"] and u1.created_at == SCORED_AT.timestamp() - 0  # naive UTC
    sim = store.ranked("similar:item:p1")
    assert sim is not None and sim.product_ids == ["p2", "p3"] and sim.sources.tolist() == [8, 2]
    glob = store.popular()
    assert glob is not None and glob.product_ids == ["p2", "p1"]
    assert (glob.sources == SOURCE_BITS["popular"]).all()
    home = store.popular("Home & Garden")
    assert home is not None and home.product_ids == ["p1"]
    assert store.products(["p1", "p2", "p3"]) == [
        {"title": "Mug", "category": "Home & Garden", "brand": None, "price": 2.5, "available": True},
        {"title": "Cup", "category": "kitchen", "brand": "acme", "price": None, "available": True},
        {"title": "Pot", "category": "kitchen", "brand": None, "price": 1.0, "available": False},
    ]
    hist = store.history("u1")
    assert [(h.product_id, h.event_type, h.quantity) for h in hist] == [
        ("p2", "view", 1),
        ("p1", "purchase", 2),
    ]
    assert hist[0].ts == datetime(2026, 1, 2).timestamp() - 0
    model = {k.decode(): v.decode() for k, v in redis_client.hgetall("model:current").items()}
    assert model["model_version"] == "blend-v2" and model["users"] == "2" and model["keys"] == "11"
    assert out.users == 2 and out.deleted == 1 and out.rounds == 1
    assert out.keys == {"user": 2, "similar": 2, "popular": 2, "product": 3, "history": 2, "model": 1}
    assert out.memory_bytes_per_user > out.value_bytes_per_user > 0


def test_incremental_load_touches_only_that_version(spark, lake_root, redis_server, redis_client) -> None:
    cfg = make_config(lake_root, redis_server)
    write_lake(spark, cfg)
    redis_client.rpush("history:user:u1", '{"p":"p9","e":"view","q":1,"t":1.0,"i":"api"}')
    out = run_load(spark, cfg, stages=Stages("load"), version="blend-v1", kinds=("user", "history"))
    got = sorted(k.decode() for k in redis_client.keys("*"))
    # u3 (blend-v1) has an empty list: nothing to set; u1's API-written history is left alone.
    assert got == ["history:user:u1", "model:current"]
    assert redis_client.lrange("history:user:u1", 0, -1) == [b'{"p":"p9","e":"view","q":1,"t":1.0,"i":"api"}']
    assert out.users == 0 and out.deleted == 1


def test_a_load_in_two_parts_replays_the_first_after_a_redis_restart(spark, lake_root, tmp_path) -> None:
    # The pipeline's way: the keys that read no blend output first, the user lists and model:current after.
    port = free_port()
    server = start_redis(port, tmp_path / "redis")
    url = f"redis://127.0.0.1:{port}/0"
    cfg = make_config(lake_root, url)
    write_lake(spark, cfg)
    client = redis.Redis.from_url(url)
    try:
        only_u2 = spark.createDataFrame([("u2",)], "user_id string")
        first = run_load(spark, cfg, stages=Stages("load"), kinds=EARLY_KINDS, history_users=only_u2, finish=False)
        got = sorted(k.decode() for k in client.keys("*"))
        later = ("recommendations:", "model:", "history:user:u1")
        assert got == sorted(k for k in LOADED_KEYS if not k.startswith(later))
        assert first.keys == {"similar": 2, "popular": 2, "product": 3, "history": 1} and first.server_id
        second_stages = Stages("load")
        second = run_load(spark, cfg, stages=second_stages, kinds=("user",), history_users=only_u2, after=first)
        assert sorted(second_stages.seconds) == ["load_user", "model_current"]  # nothing written twice
        assert second.keys == {**first.keys, "user": 2, "model": 1} and second.rounds == 1
        assert client.hget("model:current", "keys") == b"10"

        first = run_load(spark, cfg, stages=Stages("load"), kinds=EARLY_KINDS, finish=False)
        stop_redis(server)  # no persistence: the first part's keys are gone
        server = start_redis(port, tmp_path / "redis")
        again = Stages("load")
        second = run_load(spark, cfg, stages=again, kinds=("user",), after=first)
        assert sorted(k.decode() for k in client.keys("*")) == sorted(LOADED_KEYS)
        assert set(again.seconds) == {f"load_{k}" for k in ("user", *EARLY_KINDS)} | {"model_current"}
        assert second.keys == {"user": 2, "similar": 2, "popular": 2, "product": 3, "history": 2, "model": 1}
        assert second.server_id != first.server_id
    finally:
        client.close()
        stop_redis(server)


def test_writer_retries_through_a_redis_restart(tmp_path: Path) -> None:
    port = free_port()
    proc = start_redis(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    target = Target(url, False, 0.5, pipeline_size=3, retries=20, backoff_s=0.05, max_backoff_s=0.5)
    rows = pd.DataFrame(
        {
            "id": [f"u{i}" for i in range(10)],
            "product_ids": [["a", "b"]] * 10,
            "scores": [[1.0, 0.5]] * 10,
            "sources": [[1, 2]] * 10,
            "created_at": [0.0] * 10,
        }
    )
    restarted: list[subprocess.Popen] = []

    def frames():
        yield rows.iloc[:5]
        proc.terminate()  # the server goes away mid-load and comes back 0.5 s later
        proc.wait(timeout=10)
        threading.Timer(0.5, lambda: restarted.append(start_redis(port, tmp_path))).start()
        yield rows.iloc[5:]

    try:
        stats = write_rows(frames(), kind="user", ttl=3600, target=target)
        client = redis.Redis.from_url(url)
        assert stats["retries"] > 0 and len(stats["server_ids"].split(",")) == 2
        present = sorted(k.decode() for k in client.keys("*"))
        # The restarted server lost the first batches; the run_id change is what makes run_load replay.
        assert set(present) >= {f"recommendations:user:u{i}" for i in range(6, 10)}
        assert decode_list(client.get("recommendations:user:u9")).product_ids == ["a", "b"]
        client.close()
    finally:
        time.sleep(0.6)
        for p in restarted:
            p.terminate()
            p.wait(timeout=10)


def test_a_redis_that_refuses_writes_stops_the_load_with_its_reply(spark, lake_root, tmp_path) -> None:
    # Reads work and writes get an error reply: as with a failed snapshot (MISCONF) or a full noeviction server.
    port = free_port()
    server = start_redis(port, tmp_path / "refusing", "--min-replicas-to-write", "1")
    try:
        cfg = make_config(lake_root, f"redis://127.0.0.1:{port}/0")
        write_lake(spark, cfg)
        with pytest.raises(JobError) as caught:
            run_load(spark, cfg, stages=Stages("load"))
        message = str(caught.value)
        expected = f"Redis at redis://127.0.0.1:{port}/0 refused the user keys: ResponseError: NOREPLICAS"
        assert message.startswith(expected)
        assert "Traceback" not in message and "\n" not in message
        assert redis.Redis(port=port).dbsize() == 0
    finally:
        stop_redis(server)


def test_redis_error_reads_the_last_redis_exception_of_a_worker_traceback() -> None:
    text = (
        "An exception was thrown from the Python worker:\nTraceback (most recent call last):\n"
        '  File "jobs/load/resp.py", line 128, in _raise_reply\n    raise ResponseError(message)\n'
        "redis.exceptions.ResponseError: OOM command not allowed when used memory > 'maxmemory'.\n"
    )
    assert redis_error(RuntimeError(text)) == "ResponseError: OOM command not allowed when used memory > 'maxmemory'."
    assert redis_error(RuntimeError("ValueError: a user factor array is null")) is None
