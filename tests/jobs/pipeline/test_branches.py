"""run_branches: the pipeline's als and content branches run at the same time on one Spark session; the
summary's total is the run's wall time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pandas as pd
import pytest

from jobs.common.errors import JobError
from jobs.pipeline.main import Summary, run_branches


@pytest.mark.spark
def test_branches_run_at_the_same_time_each_with_its_spark_jobs(spark) -> None:
    met = threading.Event()
    seen: dict[str, object] = {}

    def first() -> None:
        seen["first_sum"] = spark.range(10).groupBy().sum("id").first()[0]
        # Returns only once the other branch has started: a serial run would wait here in vain.
        seen["met"] = met.wait(timeout=60)

    def second() -> None:
        met.set()
        seen["second_count"] = spark.range(7).count()

    run_branches(spark, {"first": first, "second": second})
    assert seen == {"first_sum": 45, "met": True, "second_count": 7}


@pytest.mark.spark
def test_serial_runs_the_branches_in_order_in_the_calling_thread(spark) -> None:
    ran: list[tuple[str, str]] = []
    branches = {
        name: (lambda name=name: ran.append((name, threading.current_thread().name))) for name in ("als", "content")
    }
    run_branches(spark, branches, serial=True)
    main = threading.current_thread().name
    assert ran == [("als", main), ("content", main)]


def _slow(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for batch in batches:
        time.sleep(60)
        yield batch


@pytest.mark.spark
def test_the_first_failure_is_raised_and_cancels_the_other_branchs_jobs(spark) -> None:
    outcome: dict[str, str] = {}

    def slow() -> None:
        try:
            spark.range(2, numPartitions=2).mapInPandas(_slow, "id long").count()
            outcome["slow"] = "finished"
        except Exception as exc:  # the cancellation, as Spark reports it
            outcome["slow"] = f"{type(exc).__name__}: {exc}"

    def bad() -> None:
        tracker = spark.sparkContext.statusTracker()
        for _ in range(600):  # until the slow branch's job runs (at most 60 s)
            if tracker.getActiveJobsIds():
                break
            time.sleep(0.1)
        raise JobError("content: bad input")

    with pytest.raises(JobError, match="content: bad input"):
        run_branches(spark, {"als": slow, "content": bad})
    assert "cancel" in outcome["slow"].lower()


def test_summary_gives_each_stages_seconds_and_the_wall_total() -> None:
    side_by_side = Summary(
        mode="full",
        users_scored=3,
        keys_loaded=7,
        seconds={"ingest": 1.0, "als": 5.0, "content": 4.0, "blend": 2.0, "load": 1.0},
        notes={"overlap": "als ran alongside content"},
        wall=9.5,
    )
    assert side_by_side.line() == (
        "pipeline (full): 3 users scored, 7 keys loaded; ingest 1.0s, als 5.0s, content 4.0s, blend 2.0s, "
        "load 1.0s; total 9.5s (als ran alongside content)"
    )
    # Without a wall time (a summary built by hand), the total is the stages' sum.
    assert Summary(seconds={"ingest": 1.0, "als": 2.5}).line().endswith("ingest 1.0s, als 2.5s; total 3.5s")
