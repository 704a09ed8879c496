"""Shared fixtures: one SparkSession for the whole run and a real redis-server on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys.localredis import LocalRedis, free_port

__all__ = ["ONLINE_RETAIL", "PROJECT_ROOT", "free_port"]  # free_port: imported from here by many tests

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = PROJECT_ROOT.parent / "shared" / "datasets"
ONLINE_RETAIL = SHARED_DATASETS / "online-retail" / "online_retail.csv.gz"


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory):
    """The one SparkSession of the test run: local[2], few shuffle partitions, UI off, Delta enabled.

    The driver heap is conf/base.yaml's 4g, as in production: this one JVM runs every Spark test of the run."""
    from jobs.common.spark import build_spark
    from recsys.config import SparkConfig

    warehouse = tmp_path_factory.mktemp("warehouse")
    cfg = SparkConfig(
        master="local[2]",
        app_name="recsys-tests",
        driver_memory="4g",
        shuffle_partitions=2,
        log_level="ERROR",
        extra={
            "spark.sql.warehouse.dir": str(warehouse),
            "spark.default.parallelism": "2",
            "spark.databricks.delta.snapshotPartitions": "1",
            "spark.sql.adaptive.enabled": "false",
            # Tungsten's page size defaults to 64 MB at this heap: every hash aggregate and sort of a test's
            # few rows would allocate (and zero) a 64 MB long[] page. Production keeps the default.
            "spark.buffer.pageSize": "1m",
            # A test's queries run on a few rows, where compiling each new query's generated Java (Janino)
            # costs more than running it; Spark's interpreted evaluation gives the same results. Production,
            # benches and notebooks keep code generation.
            "spark.sql.codegen.wholeStage": "false",
            "spark.sql.codegen.factoryMode": "NO_CODEGEN",
        },
    )
    session = build_spark(cfg, "recsys-tests")
    session.sparkContext.setCheckpointDir(str(tmp_path_factory.mktemp("checkpoints")))
    yield session
    session.stop()


@pytest.fixture(scope="module", autouse=True)
def _release_spark_caches() -> Iterator[None]:
    """After each test module, drop the DataFrames the module (and the jobs it ran) cached and Delta's table
    cache: no later module needs them, and in this one long-lived JVM they would otherwise stay, with their
    plans, for the rest of the run. Does not start a session."""
    yield
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        session.catalog.clearCache()
        session._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()  # type: ignore[union-attr]


@pytest.fixture
def lake_root(tmp_path: Path) -> Path:
    """An empty lake folder per test."""
    root = tmp_path / "lake"
    root.mkdir()
    return root


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port for the whole run; yields its URL."""
    server = LocalRedis(tmp_path_factory.mktemp("redis"), "--protected-mode", "yes")
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server.url
    server.stop()


@pytest.fixture
def redis_client(redis_server: str):
    """A client of the test Redis, flushed before each test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="session")
def online_retail_path() -> Path:
    if not ONLINE_RETAIL.is_file():
        pytest.skip(f"the Online Retail data set is absent ({ONLINE_RETAIL}); it lives in ../shared/datasets")
    return ONLINE_RETAIL
