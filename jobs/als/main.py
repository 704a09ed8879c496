"""``./spark-submit.sh als``: implicit ALS on the interaction lake, CF candidates and the serving bundle."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.als import transforms as tr
from jobs.als.foldin import FIT_PARAMS, StoredFit, fold_in_scope, refit_reason, stored_fit
from jobs.als.index import update_index
from jobs.als.model import build_als, factors_to_numpy
from jobs.common import lake
from jobs.common.candidate_lists import candidate_counts
from jobs.common.errors import JobError
from jobs.common.progress import Stages
from jobs.common.runs import model_version, write_run_record
from jobs.common.scope import Scope, read_scope
from recsys import schema as S
from recsys.bundle import write_bundle
from recsys.config import Config

DESCRIPTION = (
    "fit implicit ALS (or, with --users, fold the users in against a recent fit), write factors, CF candidates,"
    " the serving bundle and a run record"
)
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
        "--refit",
        action="store_true",
        help="with --users: fit ALS even when the stored fit is younger than als.refit_every_days "
        "(without --users every run fits)",
    )
    parser.add_argument(
        "--users",
        default=None,
        metavar="PATH",
        help="CF candidates only for the users in this Delta table (column user_id), e.g. the users an "
        "incremental pipeline run rescores; the candidate table then holds only them (docs/schedule.md)",
    )


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
    item_mb = _item_mb(n_items, acfg.rank)
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


def _item_mb(n_items: int, rank: int) -> float:
    return n_items * rank * 4 / 2**20


def _decide(
    args: argparse.Namespace, cfg: Config, spark: SparkSession, scope: Scope | None, as_of: datetime
) -> tuple[StoredFit | None, str | None]:
    """The stored fit to fold the users in against, or None and the reason to fit ALS again."""
    acfg = cfg.als
    if scope is None:
        return None, "no --users: every user is scored"
    if args.refit:
        return None, "--refit"
    fit = stored_fit(
        spark, runs_path=cfg.table_path(lake.RUNS), item_factors_path=cfg.table_path(lake.ALS_ITEM_FACTORS)
    )
    params = {key: getattr(acfg, key) for key in FIT_PARAMS}
    reason = refit_reason(
        fit, every_days=acfg.refit_every_days, params=params, as_of=as_of, now=datetime.now(UTC).replace(tzinfo=None)
    )
    if fit is not None and reason is None and _item_mb(fit.items, acfg.rank) > acfg.candidates_broadcast_max_mb:
        reason = "the item factors are larger than als.candidates_broadcast_max_mb (fold-in broadcasts them)"
    return (fit, None) if reason is None else (None, reason)


def _fit(
    spark: SparkSession,
    cfg: Config,
    events: DataFrame,
    as_of: datetime,
    version: str,
    stages: Stages,
    counts: dict[str, int],
) -> tuple[Callable[[DataFrame, str | None], str], DataFrame, DataFrame, DataFrame]:
    """Fits ALS on every user; returns the candidate writer, the user index and the user and item factors."""
    acfg = cfg.als
    with stages("matrix"):
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

    def write(subset: DataFrame, user_metadata: str | None) -> str:
        return write_candidates(
            spark, cfg, model, train, subset, items, item_f, n_items=counts["items"], model_version=version,
            user_metadata=user_metadata,
        )

    return write, users, user_f, item_f


def _bundle(
    cfg: Config, version: str, user_f: DataFrame, item_f: DataFrame, as_of: datetime, started: datetime
) -> None:
    acfg = cfg.als
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
        cfg.model_path("als"), version, item_ids=item_ids, item_factors=y, user_ids=user_ids, user_factors=x,
        meta=meta,
    )
    log.info("bundle %s: %d items, %d users", folder, len(item_ids), len(user_ids))


def run(args: argparse.Namespace, cfg: Config, spark: SparkSession) -> int:
    started = datetime.now(UTC).replace(tzinfo=None)
    version = model_version("als", started)
    stages = Stages("als")
    acfg = cfg.als
    if acfg.candidates_broadcast_max_mb < 0:
        raise JobError(f"als.candidates_broadcast_max_mb must be >= 0, got {acfg.candidates_broadcast_max_mb}")
    if acfg.refit_every_days < 0:
        raise JobError(f"als.refit_every_days must be >= 0, got {acfg.refit_every_days}")
    spark.sparkContext.setCheckpointDir(cfg.lake.checkpoint_dir)
    path = cfg.table_path(lake.INTERACTIONS)
    if not lake.table_exists(spark, path):
        raise JobError(f"no interactions table at {path}: run ingest first")
    events = lake.read_table(spark, path)
    scope = read_scope(spark, args.users) if args.users else None
    counts: dict[str, int] = {}
    as_of = _as_of(args, events)
    events = events.where(F.col(S.COL_TS) <= F.lit(as_of))
    fit, reason = _decide(args, cfg, spark, scope, as_of)
    if fit is not None and scope is not None:
        write, users = fold_in_scope(spark, cfg, events, scope, fit, as_of, version, stages, counts)
        factors = None
    else:
        log.info("fitting ALS: %s", reason)
        write, users, user_f, item_f = _fit(spark, cfg, events, as_of, version, stages, counts)
        factors = (user_f, item_f)
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
        scoring = write(subset, None if scope is None else scope.tag)
        written = candidate_counts(lake.read_table(spark, cfg.table_path(lake.CF_CANDIDATES)))
        counts["candidate_rows"] = written["rows"]
        counts["candidate_users"] = written["users"]
        counts["candidate_products"] = written["products"]
    # Cheap health signals of the run; offline quality comes from ./spark-submit.sh evaluate.
    metrics = {
        "catalogue_coverage": counts["candidate_products"] / max(counts["items"], 1),
        "candidate_users_share": counts["candidate_users"] / max(counts["users"], 1),
        "density": counts["pairs"] / max(counts["users"] * counts["items"], 1),
    }
    if fit is not None:
        log.info("bundle: the serving bundle of %s stays (a fold-in changes no item factor)", fit.model_version)
    elif factors is not None and not args.no_bundle:
        with stages("bundle"):
            _bundle(cfg, version, factors[0], factors[1], as_of, started)
    params = {
        **{key: getattr(acfg, key) for key in FIT_PARAMS},
        "fit": "refit" if fit is None else "fold-in",
        "refit_reason": reason,
        "fitted_version": version if fit is None else fit.model_version,
        "refit_every_days": acfg.refit_every_days,
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
    how = f"fit {stages.seconds['fit']:.1f}s" if fit is None else f"folded in against {fit.model_version}"
    print(
        f"als {version}: {counts['users']:,} users x {counts['items']:,} items, {counts['pairs']:,} pairs; "
        f"{counts['candidate_rows']:,} candidates for {counts['candidate_users']:,} users; {how}"
    )
    return 0
