"""Creating a lake table while another writer creates it, and where another tool's files are."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.errors import PySparkException

from jobs.common import lake
from jobs.common.errors import JobError

pytestmark = pytest.mark.spark

SPEC = lake.TABLES[lake.INGESTED_FILES]
FIRST_COMMIT = "_delta_log/00000000000000000000.json"


def test_a_writer_waits_for_the_first_commit_of_a_table_another_writer_is_creating(spark, tmp_path: Path) -> None:
    # What the second of two first writers can find: the other's _delta_log folder, and no commit in it yet.
    # (Met a moment later, the same race gives Delta's other refusals in lake._BEING_CREATED; seen by
    # tests/jobs/ingest/test_ledger.py's two writers, not reproducible from files at rest.)
    other, path = tmp_path / "other", tmp_path / "table"
    lake.ensure_table(spark, str(other), SPEC)
    (path / "_delta_log").mkdir(parents=True)
    # Without waiting (or left there by a writer that died): a message naming the folder and what to do.
    with pytest.raises(JobError, match=r"_delta_log folder still holds no commit after 0 s") as err:
        lake.ensure_table(spark, str(path), SPEC, wait_s=0)
    assert str(path) in str(err.value) and "remove the folder" in str(err.value)
    assert isinstance(err.value.__cause__, PySparkException)
    assert err.value.__cause__.getCondition() == "DELTA_TABLE_NOT_FOUND"

    outcome: list[object] = []

    def second_writer() -> None:
        try:
            outcome.append(lake.ensure_table(spark, str(path), SPEC, wait_s=60))
        except Exception as exc:  # noqa: BLE001 - asserted below
            outcome.append(exc)

    thread = threading.Thread(target=second_writer)
    thread.start()
    time.sleep(2)
    assert thread.is_alive() and outcome == []  # still waiting: the location is no table yet
    shutil.copy(other / FIRST_COMMIT, tmp_path / "commit.json")
    os.replace(tmp_path / "commit.json", path / FIRST_COMMIT)  # the first writer's commit lands, whole
    thread.join(60)
    assert len(outcome) == 1 and isinstance(outcome[0], DeltaTable), outcome
    detail = DeltaTable.forPath(spark, str(path)).detail().first()
    assert list(detail["partitionColumns"]) == ["table"]
    assert outcome[0].toDF().schema == SPEC.schema
    assert outcome[0].history().count() == 1  # the first writer's table, not created again


def test_a_location_holding_another_tools_files_is_refused_by_name(spark, tmp_path: Path) -> None:
    path = tmp_path / "exports"
    path.mkdir()
    (path / "part-0.csv").write_text("user_id,product_id\nu1,p1\n")
    with pytest.raises(PySparkException, match="DELTA_MISSING_DELTA_TABLE") as err:
        lake.ensure_table(spark, str(path), SPEC, wait_s=60)  # at once: no writer is creating a table there
    assert str(path) in str(err.value)
    assert [p.name for p in path.iterdir()] == ["part-0.csv"]  # nothing written there
