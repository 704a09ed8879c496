"""Load transforms that shape list rows for the writer."""

from __future__ import annotations

import pytest
from chispa import assert_df_equality

from jobs.load import transforms as tr

pytestmark = [pytest.mark.spark]

LISTS = "id string, product_ids array<string>, scores array<float>, sources array<int>, created_at double"
WIRE = "id string, product_ids_joined string, scores array<float>, sources array<int>, created_at double"


def test_wire_lists_joins_the_ids_by_nul_in_order(spark) -> None:
    lists = spark.createDataFrame(
        [
            ("u1", ["p2", "p10", "p3"], [0.9, 0.5, 0.25], [1, 5, 2], 1.5),
            ("u2", [], [], [], 2.0),
            ("u3", ["p1", None], [0.5, 0.25], [1, 1], 3.0),  # the null is dropped; the encoder then raises
        ],
        LISTS,
    )
    expected = spark.createDataFrame(
        [
            ("u1", "p2\x00p10\x00p3", [0.9, 0.5, 0.25], [1, 5, 2], 1.5),
            ("u2", "", [], [], 2.0),
            ("u3", "p1", [0.5, 0.25], [1, 1], 3.0),
        ],
        WIRE,
    )
    assert_df_equality(tr.wire_lists(lists), expected, ignore_nullable=True)
