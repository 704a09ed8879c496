"""``./spark-submit.sh als``: implicit ALS on the interaction lake, CF candidates and the serving bundle."""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime

import numpy as np
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.als import transforms as tr
from jobs.als.model import build_als, factors_to_numpy
from jobs.common import lake
from jobs.common.errors import JobError
from jobs.common.progress import Stages
from jobs.common.runs import model_version, write_run_record
from jobs.common.scope import read_scope
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
    parser.add_argument(
        "--users",
        default=None,
        metavar="PATH",
        help="CF candidates only for the users in this Delta table (column user_id), e.g. the users an "
        "incremental pipeline run rescores; the candidate table then holds only them (docs/schedule.md)",
    )


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


def write_candidates(
    spark: SparkSession,
    cfg: Config,
    model: ALSModel,
    train: DataFrame,
    subset: DataFrame,
    items: DataFrame,
    item_f: DataFrame,
    *,
    n_items: int,
    model_version: str,
    user_metadata: str | None = None,
) -> str:
    """Writes ``cf_candidates`` for the ``subset`` users; returns the scoring used (logged and recorded).

    Item factors of at most ``als.candidates_broadcast_max_mb`` go to the executors as one numpy matrix and
    users are scored in blocks (:func:`jobs.als.transforms.candidates_broadcast`); larger catalogues fall back
    to ``recommendForUserSubset``, which never holds all item factors in one place.

    Args:
        spark: The session (the broadcast goes through its SparkContext).
        cfg: The job's configuration (``als`` section and the lake paths).
        model: The fitted ALS model.
        train: ``user_idx, item_idx`` training pairs, never offered back to their user.
        subset: ``user_id, user_idx`` of the users who get candidates.
        items: The item index ``product_id, item_idx``.
        item_f: ``item_idx, factors`` of the model (the cached ``als_item_factors`` rows).
        n_items: Rows of the model's item factors.
        model_version: Tag of every row.
        user_metadata: The Delta commit's ``userMetadata`` (the scope tag when ``subset`` is a scoped set).

    Returns:
        ``broadcast`` or ``recommendForUserSubset``.
    """
    acfg = cfg.als
    item_mb = n_items * acfg.rank * 4 / 2**20
    scoring = "broadcast" if item_mb <= acfg.candidates_broadcast_max_mb else "recommendForUserSubset"
    log.info(
        "candidates: %s scoring (item factors %.1f MB, als.candidates_broadcast_max_mb %d)",
        scoring,
        item_mb,
        acfg.candidates_broadcast_max_mb,
    )
    out = cfg.table_path(lake.CF_CANDIDATES)
    if scoring == "broadcast":
        item_idx, y = factors_to_numpy(item_f, col_id=tr.COL_ITEM_IDX, rank=acfg.rank)
        matrix = spark.sparkContext.broadcast(tr.item_matrix(np.asarray(item_idx, dtype=np.int64), y))
        try:
            cands = tr.candidates_broadcast(
                model.userFactors,
                train,
                subset,
                items,
                item_factors=matrix,
                top_n=acfg.top_n,
                model_version=model_version,
            )
            lake.overwrite_version(cands, out, user_metadata=user_metadata)
        finally:
            matrix.destroy()
    else:
        # Fetch 2 x top_n so that removing the user's own items still leaves top_n for nearly everyone.
        recs = model.recommendForUserSubset(subset.select(tr.COL_USER_IDX), 2 * acfg.top_n)
        cands = tr.candidates_table(recs, train, subset, items, top_n=acfg.top_n, model_version=model_version)
        lake.overwrite_version(cands, out, user_metadata=user_metadata)
    return scoring


def run(args: argparse.Namespace, cfg: Config, spark: SparkSession) -> int:
    started = datetime.now(UTC).replace(tzinfo=None)
    version = model_version("als", started)
    stages = Stages("als")
    acfg = cfg.als
    if acfg.candidates_broadcast_max_mb < 0:
        raise JobError(f"als.candidates_broadcast_max_mb must be >= 0, got {acfg.candidates_broadcast_max_mb}")
    spark.sparkContext.setCheckpointDir(cfg.lake.checkpoint_dir)
    path = cfg.table_path(lake.INTERACTIONS)
    if not lake.table_exists(spark, path):
        raise JobError(f"no interactions table at {path}: run ingest first")
    events = lake.read_table(spark, path)
    scope = read_scope(spark, args.users) if args.users else None
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
        sizes = train.agg(
            F.countDistinct(tr.COL_USER_IDX).alias("users"), F.countDistinct(tr.COL_ITEM_IDX).alias("items")
        ).first()
        assert sizes is not None  # an aggregate always has one row
        counts["users"], counts["items"] = int(sizes["users"]), int(sizes["items"])
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
        if scope is not None:
            subset = subset.join(scope.users, S.COL_USER, "left_semi")
        scoring = write_candidates(
            spark,
            cfg,
            model,
            train,
            subset,
            items,
            item_f,
            n_items=counts["items"],
            model_version=version,
            user_metadata=None if scope is None else scope.tag,
        )
        cand_table = lake.read_table(spark, cfg.table_path(lake.CF_CANDIDATES))
        written = cand_table.agg(
            F.count(F.lit(1)).alias("rows"),
            F.countDistinct(S.COL_USER).alias("users"),
            F.countDistinct(S.COL_ITEM).alias("products"),
        ).first()
        assert written is not None  # an aggregate always has one row
        counts["candidate_rows"] = int(written["rows"])
        counts["candidate_users"] = int(written["users"])
        counts["candidate_products"] = int(written["products"])
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
        "users": None if scope is None else scope.tag,
        "active_window_days": acfg.active_window_days,
        "candidates_scoring": scoring,
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
