"""stream-ingest SIGKILLed mid-run (a real process, not an exception): a rerun loses and repeats nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis as redis_py
from chispa import assert_df_equality

from jobs.common import lake
from jobs.stream_ingest.main import StreamReader, drain
from recsys.config import Config, LakeConfig, RedisConfig, ServingConfig
from tests.conftest import PROJECT_ROOT

pytestmark = [pytest.mark.spark, pytest.mark.redis, pytest.mark.slow]

GROUP = "stream-ingest"
N_EVENTS = 12
BATCH = 3


def _committed_data(log_dir: Path) -> bool:
    """A Delta commit adding data files exists (creating the empty table is a commit without one)."""
    return any('"add":{' in f.read_text() for f in log_dir.glob("*.json"))


def test_a_killed_consumer_resumes_without_loss_or_duplicates(
    spark, lake_root: Path, redis_server, redis_client
):
    from serving import create_app

    cfg = Config(
        lake=LakeConfig(root=str(lake_root)),
        redis=RedisConfig(url=redis_server),
        serving=ServingConfig(api_key="k", stream_batch=BATCH),
    )
    api = create_app(cfg).test_client()
    events = [
        {"event_id": f"e{i:02d}", "user_id": f"U{i % 4}", "product_id": f"P{i}", "event_type": "view"}
        for i in range(N_EVENTS)
    ]
    assert api.post("/v1/interactions", json=events, headers={"X-API-Key": "k"}).status_code == 202
    stream = cfg.serving.stream_key
    env = {
        **os.environ,
        "RECSYS__LAKE__ROOT": str(lake_root),
        "RECSYS__REDIS__URL": redis_server,
        "RECSYS__SERVING__STREAM_BATCH": str(BATCH),
        "RECSYS__SPARK__DRIVER_MEMORY": "1g",
        "RECSYS__SPARK__SHUFFLE_PARTITIONS": "1",
    }
    proc = subprocess.Popen(
        ["./spark-submit.sh", "stream-ingest", "--master", "local[1]", "--until-empty", "--consumer", "c1"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    log_dir = lake_root / "interactions" / "_delta_log"
    try:
        # Kill -9 the whole process tree (driver JVM and Python) as soon as the first batch is committed: the
        # first batch may or may not be acknowledged and the second is read or being committed.
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if _committed_data(log_dir):
                break
            time.sleep(0.02)
        assert proc.poll() is None, (
            f"the consumer exited before the kill: {proc.stderr.read().decode()[-2000:]}"
        )
        assert _committed_data(log_dir), "no batch was committed within the time limit"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()

    info = redis_client.xinfo_groups(stream)[0]
    unacked = int(info["pending"]) + int(info["lag"])
    committed = lake.read_table(spark, cfg.table_path("interactions")).count()
    # Killed mid-run: some entries were committed to the lake and some are not acknowledged (a batch committed
    # but not acknowledged counts in both).
    assert committed >= BATCH and unacked > 0 and committed + unacked >= N_EVENTS, (committed, unacked)

    reader = StreamReader(redis_py.Redis.from_url(redis_server, decode_responses=True), stream, GROUP, "c1")
    counts = drain(spark, cfg, reader, until_empty=True, claim_idle_ms=60_000, block_ms=0)
    assert counts.entries == unacked and counts.quarantined == 0
    print(
        f"\nkilled with {committed} rows committed and {unacked} entries not acknowledged; rerun drained them"
    )
    assert redis_client.xpending(stream, GROUP)["pending"] == 0
    got = (
        lake.read_table(spark, cfg.table_path("interactions"))
        .select("event_id", "user_id", "product_id", "event_type", "quantity", "source")
        .orderBy("event_id")
    )
    expected = spark.createDataFrame(
        [(e["event_id"], e["user_id"], e["product_id"], "view", 1, "api") for e in events],
        "event_id string, user_id string, product_id string, event_type string, quantity int, source string",
    )
    assert_df_equality(got, expected, ignore_nullable=True)  # every event once: no loss, no duplicate
