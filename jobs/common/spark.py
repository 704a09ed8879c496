"""The SparkSession with Delta Lake, built the same way for spark-submit, tests and notebooks."""

from __future__ import annotations

import glob
import logging
import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from recsys.config import SparkConfig

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
JARS_DIR = PROJECT_ROOT / ".jars"

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}

# Local defaults sized for a 2-core machine; a cluster overrides them through spark.extra in its config.
LOCAL_DEFAULTS = {
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.databricks.delta.optimizeWrite.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.driver.extraJavaOptions": "-Dlog4j2.level=WARN",
    # Plan strings (built for every query's UI/listener event) of long lineages that reuse a sub-plan
    # several times grow exponentially; an evaluation sweep died of "OutOfMemoryError: Java heap space"
    # in QueryExecution.explainString. Truncated plan strings cost nothing else.
    "spark.sql.maxPlanStringLength": "1000000",
    # Cached DataFrames (the ingest's tagged batch above all) are kept uncompressed: its ids and raw text are
    # mostly unique, so compression barely shrinks the cache while encoding it costs the ingest's quality pass
    # CPU on every batch (docs/lake.md). A cluster short of memory can set it back to true in spark.extra.
    "spark.sql.inMemoryColumnarStorage.compressed": "false",
}


def local_jars() -> list[str]:
    """The jars fetched by ``make setup`` into ``.jars/``."""
    return sorted(glob.glob(str(JARS_DIR / "*.jar")))


def launched_by_spark_submit() -> bool:
    """True inside ``spark-submit``: it then owns the master, the jars and the driver memory."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_spark(cfg: SparkConfig, app_name: str | None = None, *, ui: bool = False) -> SparkSession:
    """Builds (or returns) the SparkSession with Delta Lake enabled.

    Under ``spark-submit`` the master and jars come from the command line; elsewhere (tests, notebooks,
    benchmarks) they come from ``cfg`` and ``.jars/``, with the venv's Python for the workers.

    Args:
        cfg: The ``spark`` section of the configuration.
        app_name: Application name; defaults to ``cfg.app_name``.
        ui: Start the Spark web UI (off by default for local runs).

    Example:
        >>> spark = build_spark(load_config("conf/local.yaml").spark, "ingest")
    """
    builder = SparkSession.builder.appName(app_name or cfg.app_name)
    if not launched_by_spark_submit():
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        jars = local_jars()
        if not jars:
            raise RuntimeError(f"no Delta jars in {JARS_DIR}: run `make setup` first")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        builder = (
            builder.master(cfg.master)
            .config("spark.jars", ",".join(jars))
            .config("spark.driver.memory", cfg.driver_memory)
            .config("spark.ui.enabled", str(ui).lower())
        )
    settings = {**DELTA_CONF, **LOCAL_DEFAULTS, "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions)}
    settings.update(cfg.extra)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.log_level)
    return spark
