"""The record of ingested files (what counts as new), and two tables' ingests writing their record and their
quarantined rows at the same time."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

import pytest
from delta.tables import DeltaTable

from jobs.common import lake
from jobs.ingest import ledger
from jobs.ingest import main as ingest
from jobs.ingest.sources import InputFile
from recsys.config import Config, LakeConfig

pytestmark = pytest.mark.spark

NOW = datetime(2026, 11, 29, 2, 30)


def test_a_file_is_new_until_recorded_with_the_same_size_and_time(spark, lake_root: Path) -> None:
    cfg = Config(lake=LakeConfig(root=str(lake_root)))
    a, b = InputFile("file:/raw/a.csv", 10, 1_000), InputFile("file:/raw/b.csv", 20, 2_000)
    assert ledger.unrecorded(spark, cfg, "interactions", [a, b]) == [a, b]  # no record yet
    ledger.record(spark, cfg, "interactions", [a], run_id="r1", now=NOW)
    assert ledger.unrecorded(spark, cfg, "interactions", [a, b]) == [b]
    assert ledger.unrecorded(spark, cfg, "products", [a]) == [a]  # recorded for another table only
    rewritten, touched = InputFile(a.path, 11, 1_000), InputFile(a.path, 10, 3_000)
    assert ledger.unrecorded(spark, cfg, "interactions", [rewritten, touched]) == [rewritten, touched]
    ledger.record(spark, cfg, "interactions", [rewritten], run_id="r2", now=NOW)
    rows = lake.read_table(spark, cfg.table_path(lake.INGESTED_FILES)).collect()
    assert [(r["table"], r["path"], r["size"], r["modified"], r["run_id"]) for r in rows] == [
        ("interactions", a.path, 11, 1_000, "r2")
    ]


def in_two_threads(write) -> list[BaseException]:
    """Runs ``write(table, night)`` for 4 nights in one thread per table at once; returns the errors."""
    errors: list[BaseException] = []

    def nightly(table: str) -> None:
        for night in range(4):
            try:
                write(table, night)
            except Exception as exc:  # noqa: BLE001 - collected and asserted by the caller
                errors.append(exc)

    threads = [threading.Thread(target=nightly, args=(t,)) for t in ("interactions", "products")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_two_tables_record_their_files_at_the_same_time(spark, lake_root: Path) -> None:
    # Both threads also race to create the table; without the per-table partition and the retry, Delta failed
    # about half of these MERGEs with ConcurrentAppendException. Without lake.ensure_table's wait for the other
    # writer's first commit, the creation failed now and then (DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION).
    cfg = Config(lake=LakeConfig(root=str(lake_root)))

    def write(table: str, night: int) -> None:
        files = [InputFile(f"file:/raw/{table}/day-{night}.csv", night, night)]
        ledger.record(spark, cfg, table, files, run_id=f"{table}-{night}", now=NOW)

    assert in_two_threads(write) == []
    path = cfg.table_path(lake.INGESTED_FILES)
    rows = lake.read_table(spark, path).collect()
    assert sorted((r["table"], r["run_id"]) for r in rows) == sorted(
        (t, f"{t}-{n}") for t in ("interactions", "products") for n in range(4)
    )
    assert list(DeltaTable.forPath(spark, path).detail().first()["partitionColumns"]) == ["table"]


def test_two_tables_quarantine_rows_at_the_same_time(spark, lake_root: Path) -> None:
    cfg = Config(lake=LakeConfig(root=str(lake_root)))
    path = cfg.table_path(lake.QUARANTINE)

    def write(table: str, night: int) -> None:
        rows = spark.createDataFrame(
            [(table, "user_id_charset", f"file:/raw/{table}/day-{night}.csv", '{"user_id":"u 1"}', "r", NOW)],
            lake.QUARANTINE_SCHEMA,
        )
        ingest.write_quarantine(spark, rows, path, table=table)

    assert in_two_threads(write) == []
    rows = lake.read_table(spark, path).collect()
    assert sorted((r["table"], r["source_file"]) for r in rows) == sorted(
        (t, f"file:/raw/{t}/day-{n}.csv") for t in ("interactions", "products") for n in range(4)
    )
