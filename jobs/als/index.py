"""The stable integer indexes of users and products that ALS needs, kept in Delta tables across runs."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from jobs.als import transforms as tr
from jobs.common import lake


def update_index(spark: SparkSession, path: str, ids: DataFrame, *, col_id: str, col_idx: str) -> DataFrame:
    """Adds indexes for new ids to the Delta index table at ``path`` (insert-only MERGE) and returns it."""
    schema = T.StructType(
        [T.StructField(col_id, T.StringType(), False), T.StructField(col_idx, T.IntegerType(), False)]
    )
    if lake.table_exists(spark, path):
        existing = lake.read_table(spark, path)
    else:
        existing = spark.createDataFrame([], schema)
    new = tr.new_index_rows(ids, existing, col_id=col_id, col_idx=col_idx).localCheckpoint()
    if not lake.table_exists(spark, path):
        new.write.format("delta").mode("overwrite").save(path)
    else:
        from delta.tables import DeltaTable

        (
            DeltaTable.forPath(spark, path)
            .alias("t")
            .merge(new.alias("s"), f"t.`{col_id}` = s.`{col_id}`")
            .whenNotMatchedInsertAll()
            .execute()
        )
    return lake.read_table(spark, path)
