"""The session's settings: local defaults, and spark.extra overriding them."""

from __future__ import annotations

from jobs.common.spark import LOCAL_DEFAULTS


def test_cached_dataframes_are_uncompressed_by_default(spark) -> None:
    assert LOCAL_DEFAULTS["spark.sql.inMemoryColumnarStorage.compressed"] == "false"
    assert spark.conf.get("spark.sql.inMemoryColumnarStorage.compressed") == "false"


def test_spark_extra_overrides_a_local_default(spark) -> None:
    # conftest's spark.extra turns adaptive execution off; the local default turns it on.
    assert LOCAL_DEFAULTS["spark.sql.adaptive.enabled"] == "true"
    assert spark.conf.get("spark.sql.adaptive.enabled") == "false"
