"""stream-ingest: the API's stream drained into the lake; a killed consumer loses and duplicates nothing."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
import redis as redis_py
from chispa import assert_df_equality
from pyspark.sql import types as T

from jobs.common import lake
from jobs.stream_ingest.main import StreamReader, drain
from recsys.config import Config, LakeConfig, RedisConfig, ServingConfig

pytestmark = [pytest.mark.spark, pytest.mark.redis]

STREAM = "interactions:stream"
GROUP = "stream-ingest"
EXPECTED_SCHEMA = T.StructType(
    [
        T.StructField("event_id", T.StringType(), False),
        T.StructField("user_id", T.StringType(), False),
        T.StructField("product_id", T.StringType(), False),
        T.StructField("event_type", T.StringType(), False),
        T.StructField("quantity", T.IntegerType(), False),
        T.StructField("source", T.StringType(), True),
    ]
)


class Killed(Exception):
    """Stands for the consumer process dying at the injected point."""


@pytest.fixture
def cfg(lake_root, redis_server) -> Config:
    return Config(
        lake=LakeConfig(root=str(lake_root)),
        redis=RedisConfig(url=redis_server),
        serving=ServingConfig(api_key="k", stream_batch=3),
    )


@pytest.fixture
def api(cfg, redis_client):
    from serving import create_app

    return create_app(cfg).test_client()


def _post(api, events) -> None:
    r = api.post("/v1/interactions", json=events, headers={"X-API-Key": "k"})
    assert r.status_code == 202, r.get_json()


def _reader(cfg, name: str) -> StreamReader:
    return StreamReader(redis_py.Redis.from_url(cfg.redis.url, decode_responses=True), STREAM, GROUP, name)


def _lake(spark, cfg):
    return (
        lake.read_table(spark, cfg.table_path("interactions"))
        .select("event_id", "user_id", "product_id", "event_type", "quantity", "source")
        .orderBy("event_id")
    )


def _events(n: int, start: int = 0) -> list[dict]:
    return [
        {"event_id": f"e{i:02d}", "user_id": f"U{i % 3}", "product_id": f"P{i}", "event_type": "view"}
        for i in range(start, start + n)
    ]


def test_killed_after_commit_before_ack_then_restarted(spark, cfg, api, redis_client) -> None:
    _post(api, _events(7))
    # An update of e01 (PUT) and a bad entry written by something other than the API.
    r = api.put(
        "/v1/interactions/e01",
        json={"user_id": "U1", "product_id": "P1", "event_type": "purchase", "quantity": 2},
        headers={"X-API-Key": "k"},
    )
    assert r.status_code == 202
    redis_client.xadd(STREAM, {"event_id": "bad1", "user_id": "U1", "product_id": "P1", "event_type": "like"})

    def die(batch):
        raise Killed

    with pytest.raises(Killed):
        drain(
            spark,
            cfg,
            _reader(cfg, "c1"),
            until_empty=True,
            claim_idle_ms=60_000,
            block_ms=0,
            after_commit=die,
        )
    assert redis_client.xpending(STREAM, GROUP)["pending"] == 3  # committed, never acknowledged
    counts = drain(spark, cfg, _reader(cfg, "c1"), until_empty=True, claim_idle_ms=60_000, block_ms=0)
    assert counts.entries == 9 and counts.quarantined == 1
    assert redis_client.xpending(STREAM, GROUP)["pending"] == 0
    expected = [(f"e{i:02d}", f"U{i % 3}", f"P{i}", "view", 1, "api") for i in range(7)]
    expected[1] = ("e01", "U1", "P1", "purchase", 2, "api")
    assert_df_equality(
        _lake(spark, cfg), spark.createDataFrame(expected, EXPECTED_SCHEMA), ignore_nullable=True
    )
    quarantine = lake.read_table(spark, cfg.table_path("quarantine")).select("rule", "source_file").collect()
    assert [(q["rule"], q["source_file"].split("/")[0]) for q in quarantine] == [
        ("event_type_unknown,ts_missing", "redis-stream:interactions:stream")
    ]

    # Replaying the whole stream (the group reset to the start) inserts and quarantines nothing; e01 goes
    # back to its first version in the first batch and forward to the PUT's in the last (2 updates).
    redis_client.xgroup_setid(STREAM, GROUP, "0")
    again = drain(spark, cfg, _reader(cfg, "c2"), until_empty=True, claim_idle_ms=60_000, block_ms=0)
    assert (again.entries, again.inserted, again.updated, again.quarantined) == (9, 0, 2, 0)
    assert_df_equality(
        _lake(spark, cfg), spark.createDataFrame(expected, EXPECTED_SCHEMA), ignore_nullable=True
    )


def test_a_dead_consumers_pending_entries_are_claimed(spark, cfg, api, redis_client) -> None:
    _post(api, _events(4))
    dead = _reader(cfg, "dead")
    dead.ensure_group()
    assert len(dead.next_batch(2, 0)) == 2  # read, then the process dies before committing
    # A new consumer with another name takes the dead one's entries over (idle threshold 0 for the test).
    counts = drain(spark, cfg, _reader(cfg, "fresh"), until_empty=True, claim_idle_ms=0, block_ms=0)
    assert (counts.entries, counts.inserted) == (4, 4)
    assert redis_client.xpending(STREAM, GROUP)["pending"] == 0
    expected = [(f"e{i:02d}", f"U{i % 3}", f"P{i}", "view", 1, "api") for i in range(4)]
    assert_df_equality(
        _lake(spark, cfg), spark.createDataFrame(expected, EXPECTED_SCHEMA), ignore_nullable=True
    )


def test_stream_entry_timestamps_round_trip(spark, cfg, api) -> None:
    ts = "2026-01-02T03:04:05Z"
    _post(
        api,
        [
            {
                "event_id": "t1",
                "user_id": "U1",
                "product_id": "P1",
                "event_type": "click",
                "ts": ts,
                "session_id": "s9",
            }
        ],
    )
    drain(spark, cfg, _reader(cfg, "c"), until_empty=True, claim_idle_ms=60_000, block_ms=0)
    row = lake.read_table(spark, cfg.table_path("interactions")).first()
    spark_ts = row["ts"] if row["ts"].tzinfo else row["ts"].astimezone().astimezone(UTC)
    assert spark_ts.astimezone(UTC) == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (row["session_id"], row["event_type"]) == ("s9", "click")
    assert dataclasses.asdict(cfg.serving)["stream_group"] == GROUP
