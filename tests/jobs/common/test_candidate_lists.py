"""The candidate tables' shape: one row of lists per user, and the conversions from and to rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema

from jobs.common import candidate_lists as CL
from jobs.content.candidates import CANDIDATES_SCHEMA

pytestmark = pytest.mark.spark

ROWS = "user_id string, product_id string, score double, rank int, model_version string"


def test_to_lists_orders_by_rank_and_to_rows_gives_the_rows_back(spark) -> None:
    rows = spark.createDataFrame(
        [
            ("u1", "p2", 0.5, 2, "m"),
            ("u1", "p9", 0.9, 1, "m"),
            ("u1", "p1", 0.1, 3, "m"),
            ("u2", "p4", 2.0, 1, "m"),
        ],
        ROWS,
    )
    lists = CL.to_lists(rows, score_type="float")
    assert lists.columns == ["user_id", "product_ids", "scores"]
    got = {r["user_id"]: (r["product_ids"], r["scores"]) for r in lists.collect()}
    assert got["u1"][0] == ["p9", "p2", "p1"] and got["u2"][0] == ["p4"]
    assert got["u1"][1] == pytest.approx([0.9, 0.5, 0.1]) and got["u2"][1] == [2.0]
    tagged = CL.to_lists(rows, score_type="double").withColumn("model_version", F.lit("m"))
    back = CL.to_rows(tagged)
    assert back.columns == ["user_id", "product_id", "score", "rank", "model_version"]
    assert_df_equality(back, rows, ignore_row_order=True, ignore_nullable=True, ignore_column_order=True)


def test_candidate_counts_count_candidates_users_and_distinct_products(spark) -> None:
    lists = spark.createDataFrame(
        [("u1", ["a", "b", "c"], [3.0, 2.0, 1.0]), ("u2", ["b"], [1.0]), ("u3", ["c", "d"], [1.0, 0.5])],
        "user_id string, product_ids array<string>, scores array<double>",
    )
    assert CL.candidate_counts(lists) == {"rows": 6, "users": 3, "products": 4}
    empty = lists.limit(0)
    assert CL.candidate_counts(empty) == {"rows": 0, "users": 0, "products": 0}


def test_list_batch_makes_one_row_per_user_in_row_order() -> None:
    schema = to_arrow_schema(CANDIDATES_SCHEMA)
    users = pa.array(["u0", "u1", "u2", "u3"])
    batch = CL.list_batch(
        users,
        np.array([1, 1, 1, 3]),  # u0 and u2 have no candidates: no row
        pa.array(["a", "b", "c", "d"]),
        pa.array([0.9, 0.5, 0.1, 2.0]),
        schema=schema,
    )
    assert batch.schema == schema
    assert batch.to_pylist() == [
        {"user_id": "u1", "product_ids": ["a", "b", "c"], "scores": [0.9, 0.5, 0.1]},
        {"user_id": "u3", "product_ids": ["d"], "scores": [2.0]},
    ]
    nothing = (np.zeros(0, dtype=np.int64), pa.array([], pa.string()), pa.array([], pa.float64()))
    none = CL.list_batch(users, *nothing, schema=schema)
    assert none.num_rows == 0 and none.schema == schema
