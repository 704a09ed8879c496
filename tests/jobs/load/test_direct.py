"""The direct-read path of user lists against a real Delta table and Redis: the Spark path's keys, byte for byte."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from jobs.blend.main import write_recommendations
from jobs.common import lake
from jobs.common.errors import JobError
from jobs.common.progress import Stages
from jobs.load import direct
from jobs.load.main import LoadOutcome, run_load
from jobs.load.writer import Target
from recsys.config import Config
from recsys.encoding import decode_list
from tests.jobs.load.test_load import RECS_SCHEMA, make_config

pytestmark = [pytest.mark.spark, pytest.mark.redis]

# Sub-second microseconds: created_at must be Spark's cast("double") of them exactly.
SCORED_AT = datetime(2026, 1, 2, 3, 4, 5, 123457)
RESCORED_AT = datetime(2026, 1, 3, 0, 0, 1, 999999)
FULL = [
    ("u1", ["p2", "p3"], [0.9, 0.5], [1, 5], "blend-v2", SCORED_AT),
    ("u2", ["p1"], [0.7], [2], "blend-v2", SCORED_AT),
    ("u3", [], [], [], "blend-v1", SCORED_AT),
    ("u4", ["p3", "p1", "p2"], [0.3, 0.2, 0.1], [8, 8, 2], "blend-v1", SCORED_AT),
]
RESCORED = [
    ("u1", ["p1"], [0.6], [4], "blend-v3", RESCORED_AT),
    ("u5", ["p2", "p1"], [0.8, 0.4], [1, 2], "blend-v3", RESCORED_AT),
]
Snapshot = dict[str, bytes]


def blend_full(spark, cfg: Config, *, partitions: int = 1) -> str:
    """The recommendations table as a full blend writes it (and the empty events table the load opens)."""
    lake.ensure_table(spark, cfg.table_path(lake.INTERACTIONS), lake.TABLES[lake.INTERACTIONS])
    path = cfg.table_path(lake.RECOMMENDATIONS)
    recs = spark.createDataFrame(FULL, RECS_SCHEMA).repartition(partitions)
    spark.conf.set("spark.databricks.delta.optimizeWrite.enabled", "false")  # one file per partition
    try:
        write_recommendations(spark, recs, path, incremental=False)
    finally:
        spark.conf.unset("spark.databricks.delta.optimizeWrite.enabled")
    return path


def user_keys(client) -> Snapshot:
    """Every ``recommendations:user`` key the load wrote and its value, after checking its TTL."""
    got = {}
    for key in client.keys("recommendations:user:*"):
        if (value := client.get(key)) != b"stale":
            assert 3600 - 300 < client.ttl(key) <= 3600, key  # minus a slow run's seconds
            got[key.decode()] = value
    return got


def load(spark, cfg: Config, client, *, direct_read: bool, version: str | None = None) -> tuple[Snapshot, LoadOutcome]:
    """A user-lists load into an emptied Redis holding a stale list of u3 (whose list is empty: deleted)."""
    client.flushall()
    client.set("recommendations:user:u3", b"stale", ex=60)
    cfg = dataclasses.replace(cfg, redis=dataclasses.replace(cfg.redis, load_direct_read=direct_read))
    out = run_load(spark, cfg, stages=Stages("load"), version=version, kinds=("user",))
    return user_keys(client), out


def decoded(snapshot: Snapshot) -> dict[str, tuple[list[str], list[float], list[int], float]]:
    out = {}
    for key, value in snapshot.items():
        lst = decode_list(value)
        out[key.rsplit(":", 1)[1]] = (lst.product_ids, lst.scores.tolist(), lst.sources.tolist(), lst.created_at)
    return out


def assert_lists(snapshot: Snapshot, expected: dict[str, tuple[list[str], list[float], list[int], datetime]]) -> None:
    got = decoded(snapshot)
    assert sorted(got) == sorted(expected)
    for user, (ids, scores, sources, at) in expected.items():
        assert got[user][0] == ids and got[user][2] == sources, user
        assert got[user][1] == pytest.approx(scores, abs=1e-3), user  # float16 on the wire
        assert got[user][3] == pytest.approx(at.timestamp(), abs=1e-6), user  # naive UTC, as in test_load


def scored_at_types(files: list[str]) -> set[str]:
    """The Parquet physical type of ``scored_at`` in each file."""
    out = set()
    for uri in files:
        fs, path = direct.file_system(uri)
        meta = pq.ParquetFile(path, filesystem=fs).metadata
        cols = [meta.schema.column(i) for i in range(meta.num_columns)]
        out |= {c.physical_type for c in cols if c.path == "scored_at"}
    return out


def test_direct_read_writes_the_spark_paths_keys_and_bytes(
    spark, lake_root, redis_server, redis_client, caplog
) -> None:
    cfg = make_config(lake_root / "a lake", redis_server)  # a space: Spark's file: paths are not URI-escaped
    path = blend_full(spark, cfg, partitions=2)
    files = direct.plain_files(spark, path)
    assert len(files) == 2 and all(f.startswith("file:/") and "/a lake/" in f for f in files)  # two tasks
    assert scored_at_types(files) == {"INT96"}  # Spark's default timestamp encoding

    with caplog.at_level(logging.INFO, logger="jobs.load"):
        by_spark, spark_out = load(spark, cfg, redis_client, direct_read=False)
        assert "redis.load_direct_read is false" in caplog.text and "direct pyarrow read" not in caplog.text
        caplog.clear()
        by_direct, direct_out = load(spark, cfg, redis_client, direct_read=True)
        assert "direct pyarrow read" in caplog.text
    assert by_direct == by_spark
    assert_lists(
        by_direct,
        {
            "u1": (["p2", "p3"], [0.9, 0.5], [1, 5], SCORED_AT),
            "u2": (["p1"], [0.7], [2], SCORED_AT),
            "u4": (["p3", "p1", "p2"], [0.3, 0.2, 0.1], [8, 8, 2], SCORED_AT),
        },
    )
    counts = [(o.users, o.deleted, o.value_bytes_per_user, o.rounds) for o in (spark_out, direct_out)]
    assert counts[0] == counts[1] and counts[1][:2] == (3, 1) and counts[1][3] == 1
    assert direct_out.memory_bytes_per_user > direct_out.value_bytes_per_user > 0

    v1_spark, _ = load(spark, cfg, redis_client, direct_read=False, version="blend-v1")
    v1_direct, v1_out = load(spark, cfg, redis_client, direct_read=True, version="blend-v1")
    assert v1_direct == v1_spark
    assert_lists(v1_direct, {"u4": (["p3", "p1", "p2"], [0.3, 0.2, 0.1], [8, 8, 2], SCORED_AT)})
    assert (v1_out.users, v1_out.deleted) == (1, 1)  # u3 of blend-v1 is emptied: its stale key deleted


def test_direct_read_after_an_incremental_merge(spark, lake_root, redis_server, redis_client) -> None:
    cfg = make_config(lake_root, redis_server)
    path = blend_full(spark, cfg)
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    try:
        write_recommendations(spark, spark.createDataFrame(RESCORED, RECS_SCHEMA), path, incremental=True)
    finally:
        spark.conf.unset("spark.sql.parquet.outputTimestampType")
    files = direct.plain_files(spark, path)
    assert files is not None  # no deletion vectors: the MERGE rewrote u1's file
    on_disk = {f"file:{p}" for p in map(str, Path(path).glob("*.parquet"))}
    assert set(files) < on_disk  # the replaced file is still there; only the snapshot's files are read
    assert "INT64" in scored_at_types(files)  # the rewritten rows: INT64 microseconds

    by_spark, _ = load(spark, cfg, redis_client, direct_read=False)
    by_direct, out = load(spark, cfg, redis_client, direct_read=True)
    assert by_direct == by_spark
    assert_lists(
        by_direct,
        {
            "u1": (["p1"], [0.6], [4], RESCORED_AT),
            "u2": (["p1"], [0.7], [2], SCORED_AT),
            "u4": (["p3", "p1", "p2"], [0.3, 0.2, 0.1], [8, 8, 2], SCORED_AT),
            "u5": (["p2", "p1"], [0.8, 0.4], [1, 2], RESCORED_AT),
        },
    )
    v3_spark, _ = load(spark, cfg, redis_client, direct_read=False, version="blend-v3")
    v3_direct, _ = load(spark, cfg, redis_client, direct_read=True, version="blend-v3")
    assert v3_direct == v3_spark
    assert_lists(
        v3_direct, {"u1": (["p1"], [0.6], [4], RESCORED_AT), "u5": (["p2", "p1"], [0.8, 0.4], [1, 2], RESCORED_AT)}
    )
    # u3 (blend-v1) is not in this load: its stale key stays until it expires
    assert redis_client.get("recommendations:user:u3") == b"stale"


def test_deletion_vectors_fall_back_to_the_spark_read(spark, lake_root, redis_server, redis_client, caplog) -> None:
    cfg = make_config(lake_root, redis_server)
    path = blend_full(spark, cfg)
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')")
    spark.sql(f"DELETE FROM delta.`{path}` WHERE user_id = 'u2'")
    write_recommendations(spark, spark.createDataFrame(RESCORED, RECS_SCHEMA), path, incremental=True)
    # What a plain read of the snapshot's files would load: u2 is still in them, and u1's old row.
    stale = pa.concat_tables(
        pq.read_table(direct.file_system(f)[1], columns=["user_id"]) for f in lake.read_table(spark, path).inputFiles()
    )
    in_files = stale.column("user_id").to_pylist()
    assert in_files.count("u2") == 1 and in_files.count("u1") == 2

    with caplog.at_level(logging.INFO, logger="jobs.load"):
        assert direct.plain_files(spark, path) is None
        assert "deletion vectors" in caplog.text
        got, out = load(spark, cfg, redis_client, direct_read=True)
    assert_lists(
        got,
        {
            "u1": (["p1"], [0.6], [4], RESCORED_AT),
            "u4": (["p3", "p1", "p2"], [0.3, 0.2, 0.1], [8, 8, 2], SCORED_AT),
            "u5": (["p2", "p1"], [0.8, 0.4], [1, 2], RESCORED_AT),
        },
    )
    assert (out.users, out.deleted) == (3, 1)


def test_a_file_without_a_column_names_file_and_column(spark, tmp_path, redis_server, redis_client) -> None:
    bad = tmp_path / "part-0.parquet"
    pq.write_table(pa.table({"user_id": ["u1"], "product_ids": [["p1"]], "sources": [[1]]}), bad)
    target = Target(redis_server, False, 2.0, 10)
    with pytest.raises(JobError, match=rf"file:{bad}: no column 'scores'"):
        direct.write_user_lists(spark, [f"file:{bad}"], ttl=60, target=target)
    assert redis_client.keys("*") == []


def test_file_batches_split_a_file_by_row_group_and_skip_other_versions(tmp_path) -> None:
    at = pa.array([1_767_323_045_123_457, -1, 0, 1, 2], pa.timestamp("us", tz="UTC"))  # INT64 micros
    table = pa.table(
        {
            "user_id": ["u0", "u1", "u2", "u3", "u4"],
            "product_ids": [["p1", "p2"], ["p3"], [], ["p1"], ["p2"]],
            "scores": pa.array([[0.5, 0.25], [1.0], [], [0.1], [0.2]], pa.list_(pa.float32())),
            "sources": pa.array([[1, 2], [4], [], [8], [1]], pa.list_(pa.int32())),
            "model_version": ["v1", "v1", "v2", "v2", "v3"],  # sorted: each row group's min/max rules out others
            "scored_at": at,
        }
    )
    pq.write_table(table, tmp_path / "p.parquet", row_group_size=2)  # row groups {u0, u1}, {u2, u3}, {u4}
    uri = f"file:{tmp_path / 'p.parquet'}"

    def rows(**kw) -> list[tuple]:
        batches = direct.file_batches(uri, batch_size=10, **kw)
        return [tuple(r.values()) for b in batches for r in b.to_pylist()]

    everything = rows()
    assert everything == [
        ("u0", "p1\x00p2", [0.5, 0.25], [1, 2], 1_767_323_045_123_457 / 1e6),
        ("u1", "p3", [1.0], [4], -1 / 1e6),
        ("u2", "", [], [], 0.0),
        ("u3", "p1", [pytest.approx(0.1)], [8], 1 / 1e6),
        ("u4", "p2", [pytest.approx(0.2)], [1], 2 / 1e6),
    ]
    assert rows(part=0, parts=2) == everything[:2] + everything[4:]
    assert rows(part=1, parts=2) == everything[2:4]
    assert rows(part=3, parts=4) == []
    assert rows(version="v2") == everything[2:4]
    assert rows(version="v2", part=0, parts=2) == []
    meta = pq.ParquetFile(tmp_path / "p.parquet").metadata
    assert direct._row_groups(meta, part=0, parts=1, version="v2") == [1]  # the others not even read
    assert rows(version="v9") == []


def test_file_system_reads_spark_paths() -> None:
    for uri, path in [
        ("file:/lake/a b/part-0.parquet", "/lake/a b/part-0.parquet"),
        ("file:///lake/a%20b/p.parquet", "/lake/a%20b/p.parquet"),  # Hadoop paths are not escaped
        ("file://localhost/lake/p.parquet", "/lake/p.parquet"),
        ("/lake/p:1.parquet", "/lake/p:1.parquet"),
    ]:
        fs, got = direct.file_system(uri)
        assert isinstance(fs, pafs.LocalFileSystem) and got == path, uri
    with pytest.raises(ValueError, match="s3a"):
        direct.file_system("s3a://bucket/lake/p.parquet")
    with pytest.raises(ValueError, match="other-host"):
        direct.file_system("file://other-host/lake/p.parquet")
