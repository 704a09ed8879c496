"""Fault tests on loopback, bounded: a Redis restart during the bulk load, a Spark write that dies mid-way,
hostile input files. (A Redis restart while serving and a crashed API instance: test_load_balancing.py; a
stream consumer killed mid-batch: test_stream_consumer_kill.py.)"""

from __future__ import annotations

import argparse
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
import redis
from chispa import assert_df_equality
from delta.tables import DeltaTable
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.common import lake
from jobs.common.progress import Stages
from jobs.ingest import main as ingest
from jobs.load.main import EARLY_KINDS, run_load
from recsys.config import Config, LakeConfig
from tests.conftest import free_port
from tests.jobs.load.test_load import LOADED_KEYS, make_config, write_lake
from tests.ops.cluster import start_redis

pytestmark = [pytest.mark.spark, pytest.mark.slow]

INTERACTION_COLS = ["event_id", "user_id", "product_id", "event_type", "quantity"]


# --- Redis restarted during a bulk load ------------------------------------------------------------------
def _restart(port: int, procs: list[subprocess.Popen], directory: Path, *, down_s: float = 0.0) -> None:
    """Kill the newest server (no persistence: its keys are gone) and start a new one on the port."""
    procs[-1].kill()
    procs[-1].wait(timeout=10)
    time.sleep(down_s)
    procs.append(start_redis(port, directory))


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
        p.wait(timeout=10)


@pytest.mark.redis
def test_bulk_load_survives_a_redis_restart_and_ends_complete(spark, lake_root: Path, tmp_path: Path) -> None:
    port = free_port()
    procs = [start_redis(port, tmp_path / "redis")]  # no persistence: the restart loses what was written
    url = f"redis://127.0.0.1:{port}/0"
    cfg = make_config(lake_root, url)
    write_lake(spark, cfg)
    restarted = threading.Event()

    def restart_on_first_key() -> None:
        probe = redis.Redis.from_url(url, socket_timeout=1)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and probe.dbsize() == 0:
            time.sleep(0.005)
        probe.close()
        _restart(port, procs, tmp_path / "redis", down_s=0.5)  # the server dies while the load is writing
        restarted.set()

    watcher = threading.Thread(target=restart_on_first_key, daemon=True)
    watcher.start()
    try:
        out = run_load(spark, cfg, stages=Stages("load"))
        watcher.join(timeout=130)
        assert restarted.is_set()
        client = redis.Redis.from_url(url)
        got = sorted(k.decode() for k in client.keys("*"))
        # Every key of the full load is there after the restart: the run saw the server id change and loaded
        # again (out.rounds == 2), the writers retried through the outage (out.retries) instead of failing.
        assert got == sorted(LOADED_KEYS)
        assert out.rounds == 2 and out.keys["user"] == 2
        assert client.hget("model:current", "keys") == b"11"
        client.close()
    finally:
        _stop(procs)


class _RestartAfter(Stages):
    """Stages that kill the Redis server once the stage ``name`` has written its keys, then start a new one."""

    def __init__(self, name: str, port: int, procs: list[subprocess.Popen], directory: Path) -> None:
        super().__init__("load")
        self.name, self.port, self.procs, self.directory = name, port, procs, directory

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        with super().__call__(name):
            yield
        if name == self.name:
            _restart(self.port, self.procs, self.directory)


@pytest.mark.redis
def test_a_restart_during_the_second_part_of_the_load_writes_the_first_part_again(
    spark, lake_root: Path, tmp_path: Path
) -> None:
    # The pipeline's two parts (jobs.pipeline): the first part's keys are complete, then the server dies
    # once the second part has written the user lists; its next round writes both parts' keys.
    port = free_port()
    procs = [start_redis(port, tmp_path / "redis")]
    url = f"redis://127.0.0.1:{port}/0"
    cfg = make_config(lake_root, url)
    write_lake(spark, cfg)
    try:
        first = run_load(spark, cfg, stages=Stages("load"), kinds=EARLY_KINDS, finish=False)
        assert first.rounds == 1
        stages = _RestartAfter("load_user", port, procs, tmp_path / "redis")
        out = run_load(spark, cfg, stages=stages, kinds=("user",), after=first)
        client = redis.Redis.from_url(url)
        assert sorted(k.decode() for k in client.keys("*")) == sorted(LOADED_KEYS)
        assert out.rounds == 2 and out.server_id != first.server_id and len(procs) == 2
        # Round 1 wrote the user lists only; round 2 the user lists and the first part's kinds again.
        assert set(stages.seconds) == {"load_user", "model_current"} | {
            f"load_{k}_round2" for k in ("user", *EARLY_KINDS)
        }
        assert out.keys == {"user": 2, "similar": 2, "popular": 2, "product": 3, "history": 2, "model": 1}
        assert client.hget("model:current", "keys") == b"11"
        client.close()
    finally:
        _stop(procs)


# --- A Spark write killed mid-way ------------------------------------------------------------------------
def _rows(ids: list[str]) -> list[tuple]:
    now = datetime(2026, 1, 2)
    return [(i, "u1", "p1", "view", 1, now, None, "t", now, 0) for i in ids]


@pytest.mark.parametrize("how", ["merge", "append"])
def test_a_spark_write_dying_in_its_tasks_leaves_the_table_at_its_previous_version(
    spark, lake_root: Path, how: str
) -> None:
    path = str(lake_root / "interactions")
    spec = lake.TABLES["interactions"]
    lake.merge_upsert(
        spark, spark.createDataFrame(_rows(["e1", "e2", "e3"]), lake.INTERACTIONS_SCHEMA), path, spec
    )
    version = DeltaTable.forPath(spark, path).history(1).first()["version"]
    before = lake.read_table(spark, path).select(*INTERACTION_COLS)

    @F.udf(T.StringType())
    def dies_on_e5(event_id: str) -> str:
        if event_id == "e5":
            raise RuntimeError("executor killed mid-write")
        return event_id

    batch = spark.createDataFrame(_rows(["e4", "e5", "e6", "e7"]), lake.INTERACTIONS_SCHEMA).repartition(2)
    batch = batch.withColumn("event_id", dies_on_e5("event_id"))
    with pytest.raises((Py4JJavaError, PySparkException), match="executor killed mid-write"):
        if how == "merge":
            lake.merge_upsert(spark, batch, path, spec)
        else:
            lake.append(spark, batch, path, spec)

    assert DeltaTable.forPath(spark, path).history(1).first()["version"] == version
    after = lake.read_table(spark, path).select(*INTERACTION_COLS)
    assert_df_equality(after, before, ignore_row_order=True)
    assert sorted(r.event_id for r in after.collect()) == ["e1", "e2", "e3"]


# --- Malformed and hostile input files -------------------------------------------------------------------
HOSTILE_ROWS: list[tuple[bytes, str]] = [
    (b"ok1,u1,p1,view,1,2025-06-01T10:00:00Z", ""),
    (b"h01,u1'; DROP TABLE interactions;--,p1,view,1,2025-06-01T10:00:00Z", "user_id_charset"),
    (b'h02,=HYPERLINK("http://x"),p1,view,1,2025-06-01T10:00:00Z', "user_id_charset"),
    (b"h03,u3,../../etc/passwd,view,1,2025-06-01T10:00:00Z", "product_id_charset"),
    # A bare CR LF ends the record (CSV): the id is cut at the line end and the rest is a record of its own.
    (b"h04,u4,p1 *\r\nDEL *,view,1,2025-06-01T10:00:00Z", "product_id_charset,event_type_missing,ts_missing"),
    (b"h05," + b"U" * 5000 + b",p1,view,1,2025-06-01T10:00:00Z", "user_id_length"),
    (b"h06,u\x00x,p1,view,1,2025-06-01T10:00:00Z", "user_id_charset"),
    (b"h07,u\xff\xfe7,p1,view,1,2025-06-01T10:00:00Z", "user_id_charset"),
    (b"h08,u8,p8,view,abc,2025-06-01T10:00:00Z", "quantity_unparseable"),
    (b"h09,u9,p9,view,-5,2025-06-01T10:00:00Z", "quantity_range"),
    (b"h10,u10,p10,view,1,not-a-date", "ts_unparseable"),
    (b"h11,u11,p11,<script>alert(1)</script>,1,2025-06-01T10:00:00Z", "event_type_unknown"),
    (b"h12,u12,p12,view,99999999999999999999,2025-06-01T10:00:00Z", "quantity_unparseable"),
    (b"h13,u13,p13,view,1,9999-12-31T00:00:00Z", "ts_range"),
]


def test_hostile_input_rows_are_quarantined_with_their_reasons(
    spark, lake_root: Path, tmp_path: Path, capsys
):
    cfg = Config(lake=LakeConfig(root=str(lake_root), user_buckets=4))
    path = tmp_path / "hostile.csv"
    path.write_bytes(
        b"\n".join([b"event_id,user_id,product_id,event_type,quantity,ts"] + [r for r, _ in HOSTILE_ROWS])
    )
    parser = argparse.ArgumentParser()
    ingest.add_arguments(parser)
    args = parser.parse_args(["--skip-gx", "--table", "interactions", "--input", str(path)])

    code = ingest.run(args, cfg, spark)

    assert code == 1  # far more than quarantine_max_share of the rows were bad: the run says so
    accepted = lake.read_table(spark, cfg.table_path("interactions")).select("event_id", "user_id")
    assert_df_equality(
        accepted,
        spark.createDataFrame([("ok1", "u1")], "event_id string, user_id string"),
        ignore_nullable=True,
    )
    quarantine = lake.read_table(spark, cfg.table_path("quarantine")).select(
        F.get_json_object("raw", "$.event_id").alias("event_id"), "rule"
    )
    expected = [(r.split(b",")[0].decode(), rule) for r, rule in HOSTILE_ROWS if rule]
    expected.append(("DEL *", "event_id_charset,event_type_unknown,ts_missing"))  # the split-off half of h04
    assert sorted(tuple(r) for r in quarantine.collect()) == sorted(expected)
