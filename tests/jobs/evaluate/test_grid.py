"""The ALS grid: every point evaluated on a validation split carved from the training side, best one chosen."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pyspark.sql import functions as F

from jobs.evaluate import harness as H
from jobs.evaluate.models import MODELS, register
from recsys import schema as S
from recsys.config import Config

pytestmark = pytest.mark.spark

SCHEMA = "user_id string, product_id string, event_type string, quantity int, ts timestamp"
TEST_START = datetime(2026, 3, 1)
SEEN: list[dict] = []


@pytest.fixture(scope="module", autouse=True)
def probe_model():
    """A model that records what it was given and ranks by a score that depends on its params."""

    @register("probe-grid")
    def probe(train, products, ctx):
        SEEN.append(
            {"params": dict(ctx.params), "last_ts": train.agg(F.max(S.COL_TS)).first()[0],
             "split": ctx.split_time}
        )
        # rank 2 recommends the held-out product "v" first, rank 1 recommends it last: rank 2 must win.
        good = ctx.params["rank"] == 2
        items = ctx.users.crossJoin(train.sparkSession.createDataFrame([("v",), ("w",)], "product_id string"))
        return items.withColumn(
            "score", F.when(F.col(S.COL_ITEM) == "v", 2.0 if good else 1.0).otherwise(1.5)
        )

    yield
    MODELS.pop("probe-grid", None)


def test_grid_reports_every_point_on_the_training_side_and_chooses_the_best(spark):
    # Training side: January and February. The test month (March) is never passed to the grid.
    rows = []
    for u in range(6):
        rows.append((f"u{u}", "a", "purchase", 1, datetime(2026, 1, 5 + u)))
        rows.append((f"u{u}", "v", "purchase", 1, datetime(2026, 2, 10 + u)))  # validation items
    train = spark.createDataFrame(rows, SCHEMA)
    SEEN.clear()
    results, chosen = H.run_grid(
        train,
        None,
        H.SplitSpec("temporal", TEST_START),
        cfg=Config(),
        k=1,
        model="probe-grid",
        ranks=(1, 2),
        regs=(0.1,),
        alphas=(10.0,),
    )
    assert [r.params for r in results] == [
        {"rank": 1, "reg_param": 0.1, "alpha": 10.0},
        {"rank": 2, "reg_param": 0.1, "alpha": 10.0},
    ]
    assert [r.metrics["ndcg"] for r in results] == [0.0, 1.0]
    validation_start = TEST_START - timedelta(days=30)
    # Each point was fitted on events before the validation start, i.e. January only.
    assert len(SEEN) == 2
    assert all(s["last_ts"] < validation_start and s["split"] == validation_start for s in SEEN)
    assert chosen["rank"] == 2 and chosen["reg_param"] == 0.1 and chosen["alpha"] == 10.0
    assert chosen["validation"] == {
        "protocol": "temporal",
        "split_time": validation_start.isoformat(),
        "ndcg": 1.0,
    }
