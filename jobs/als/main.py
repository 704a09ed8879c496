"""``./spark-submit.sh als``: implicit ALS on the interaction lake, CF candidates and the serving bundle."""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.als import transforms as tr
from jobs.als.model import build_als, factors_to_numpy
from jobs.common import lake
from jobs.common.errors import JobError
from jobs.common.progress import Stages
from jobs.common.runs import model_version, write_run_record
from recsys import schema as S
from recsys.bundle import write_bundle
from recsys.config import Config

DESCRIPTION = "fit implicit ALS, write factors, CF candidates, the serving bundle and a run record"
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--all-users",
        action="store_true",
        help="candidates for every user, not only those active in als.active_window_days",
    )
    parser.add_argument(
        "--as-of",
        default=None,
        help="data cut-off (ISO time; default: the latest event) for decay and the window",
    )
    parser.add_argument("--no-bundle", action="store_true", help="skip the serving bundle export")


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


def _as_of(args: argparse.Namespace, events: DataFrame) -> datetime:
    if args.as_of:
        try:
            return datetime.fromisoformat(args.as_of)
        except ValueError as exc:
            raise JobError(f"--as-of {args.as_of!r} is not an ISO date or time") from exc
    latest = events.agg(F.max(S.COL_TS)).first()[0]
    if latest is None:
        raise JobError("the interactions table is empty: ingest events first")
    return latest


def run(args: argparse.Namespace, cfg: Config, spark: SparkSession) -> int:
    started = datetime.now(UTC).replace(tzinfo=None)
    version = model_version("als", started)
    stages = Stages("als")
    acfg = cfg.als
    spark.sparkContext.setCheckpointDir(cfg.lake.checkpoint_dir)
    path = cfg.table_path(lake.INTERACTIONS)
    if not lake.table_exists(spark, path):
        raise JobError(f"no interactions table at {path}: run ingest first")
    events = lake.read_table(spark, path)
    counts: dict[str, int] = {}
    with stages("matrix"):
        as_of = _as_of(args, events)
        events = events.where(F.col(S.COL_TS) <= F.lit(as_of))
        ratings = tr.training_matrix(
            events, events_cfg=cfg.events, as_of=as_of, binary_confidence=acfg.binary_confidence
        ).cache()
        counts["pairs"] = ratings.count()
        if counts["pairs"] == 0:
            raise JobError(f"no interactions up to {as_of}: nothing to train on")
        users = update_index(
            spark, cfg.table_path(lake.USER_INDEX), ratings, col_id=S.COL_USER, col_idx=tr.COL_USER_IDX
        ).cache()
        items = update_index(
            spark, cfg.table_path(lake.ITEM_INDEX), ratings, col_id=S.COL_ITEM, col_idx=tr.COL_ITEM_IDX
        ).cache()
        train = tr.indexed_ratings(ratings, users, items).cache()
        counts["users"] = train.select(tr.COL_USER_IDX).distinct().count()
        counts["items"] = train.select(tr.COL_ITEM_IDX).distinct().count()
    with stages("fit"):
        model = build_als(acfg).fit(train)
        user_f = tr.factors_table(
            model.userFactors, users, col_id=S.COL_USER, col_idx=tr.COL_USER_IDX, model_version=version
        ).cache()
        item_f = tr.factors_table(
            model.itemFactors, items, col_id=S.COL_ITEM, col_idx=tr.COL_ITEM_IDX, model_version=version
        ).cache()
    with stages("write_factors"):
        lake.overwrite_version(user_f, cfg.table_path(lake.ALS_USER_FACTORS))
        lake.overwrite_version(item_f, cfg.table_path(lake.ALS_ITEM_FACTORS))
    with stages("candidates"):
        subset = (
            users
            if args.all_users
            else users.join(
                tr.active_users(events, as_of=as_of, window_days=acfg.active_window_days), S.COL_USER
            )
        )
        # Fetch 2 x top_n so that removing the user's own items still leaves top_n for nearly everyone.
        recs = model.recommendForUserSubset(subset.select(tr.COL_USER_IDX), 2 * acfg.top_n)
        cands = tr.candidates_table(recs, train, users, items, top_n=acfg.top_n, model_version=version)
        lake.overwrite_version(cands, cfg.table_path(lake.CF_CANDIDATES))
        cand_table = lake.read_table(spark, cfg.table_path(lake.CF_CANDIDATES))
        counts["candidate_rows"] = cand_table.count()
        counts["candidate_users"] = cand_table.select(S.COL_USER).distinct().count()
        counts["candidate_products"] = cand_table.select(S.COL_ITEM).distinct().count()
    # Cheap health signals of the run; offline quality comes from ./spark-submit.sh evaluate.
    metrics = {
        "catalogue_coverage": counts["candidate_products"] / counts["items"],
        "candidate_users_share": counts["candidate_users"] / counts["users"],
        "density": counts["pairs"] / (counts["users"] * counts["items"]),
    }
    if not args.no_bundle:
        with stages("bundle"):
            item_ids, y = factors_to_numpy(item_f, col_id=S.COL_ITEM, rank=acfg.rank)
            user_ids, x = factors_to_numpy(user_f, col_id=S.COL_USER, rank=acfg.rank)
            meta = {
                "rank": acfg.rank,
                "reg_param": acfg.reg_param,
                "alpha": acfg.alpha,
                "binary_confidence": acfg.binary_confidence,
                "max_iter": acfg.max_iter,
                "nonnegative": acfg.nonnegative,
                "as_of": as_of.isoformat(),
                "created_at": started.isoformat() + "Z",
            }
            folder = write_bundle(
                cfg.model_path("als"),
                version,
                item_ids=item_ids,
                item_factors=y,
                user_ids=user_ids,
                user_factors=x,
                meta=meta,
            )
            log.info("bundle %s: %d items, %d users", folder, len(item_ids), len(user_ids))
    params = {
        "rank": acfg.rank,
        "reg_param": acfg.reg_param,
        "alpha": acfg.alpha,
        "max_iter": acfg.max_iter,
        "nonnegative": acfg.nonnegative,
        "binary_confidence": acfg.binary_confidence,
        "top_n": acfg.top_n,
        "all_users": args.all_users,
        "active_window_days": acfg.active_window_days,
        "as_of": as_of.isoformat(),
        "events": {"half_life_days": cfg.events.half_life_days},
    }
    write_run_record(
        spark,
        cfg.table_path(lake.RUNS),
        {
            "job": "als",
            "model_version": version,
            "started_at": started,
            "finished_at": datetime.now(UTC).replace(tzinfo=None),
            "params": params,
            "metrics": metrics,
            "timings": stages.seconds,
            "row_counts": counts,
        },
    )
    print(
        f"als {version}: {counts['users']:,} users x {counts['items']:,} items, {counts['pairs']:,} pairs; "
        f"{counts['candidate_rows']:,} candidates for {counts['candidate_users']:,} users; "
        f"fit {stages.seconds['fit']:.1f}s"
    )
    return 0
