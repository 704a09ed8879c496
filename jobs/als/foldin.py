"""When an incremental als run may fold its users in instead of fitting ALS again (``als.refit_every_days``).

A fit writes the item factors (``als_item_factors``) and a run record with ``params.fit = "refit"``. An
incremental run (``--users``) reuses those item factors while the fit is younger than ``refit_every_days``
by the clock and by the data (the latest event), and its ALS settings are the ones in force: each of its
users is then folded in (one least-squares solve against the fixed item factors, as the API does on a
cache miss) instead of refitting on every interaction. docs/schedule.md has the measurements behind it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.als import transforms as tr
from jobs.als.index import update_index
from jobs.als.model import factors_to_numpy
from jobs.common import lake
from jobs.common.progress import Stages
from jobs.common.scope import Scope
from recsys import schema as S
from recsys.config import Config

log = logging.getLogger(__name__)

# The settings the stored item factors were fitted with; a change to any of them needs a new fit.
FIT_PARAMS = ("rank", "reg_param", "alpha", "max_iter", "nonnegative", "binary_confidence")


@dataclass(frozen=True)
class StoredFit:
    """The ALS fit whose item factors are in the lake.

    Attributes:
        model_version: The fit's version (every row of ``als_item_factors`` carries it).
        as_of: The fit's data cut-off (its latest event).
        finished_at: When the fit's run finished (UTC).
        params: The fit's run-record params (at least :data:`FIT_PARAMS`).
        items: Rows of its item factors (the run record's ``row_counts.items``).
    """

    model_version: str
    as_of: datetime
    finished_at: datetime
    params: Mapping[str, Any]
    items: int


def stored_fit(spark: SparkSession, *, runs_path: str, item_factors_path: str) -> StoredFit | None:
    """The latest ALS run that fitted the model, when the stored item factors are still its own.

    Runs recorded before fold-in existed have no ``fit`` param: every one of them fitted the model.

    Example:
        >>> fit = stored_fit(spark, runs_path=cfg.table_path(lake.RUNS),
        ...                  item_factors_path=cfg.table_path(lake.ALS_ITEM_FACTORS))
    """
    if not (lake.table_exists(spark, runs_path) and lake.table_exists(spark, item_factors_path)):
        return None
    row = (
        lake.read_table(spark, runs_path)
        .where((F.col("job") == "als") & (F.coalesce(F.get_json_object("params", "$.fit"), F.lit("refit")) == "refit"))
        .orderBy(F.col("finished_at").desc())
        .select("model_version", "finished_at", "params", "row_counts")
        .first()
    )
    if row is None:
        return None
    stored = lake.read_table(spark, item_factors_path).select("model_version").first()
    if stored is None or stored["model_version"] != row["model_version"]:
        return None
    params, counts = json.loads(row["params"] or "{}"), json.loads(row["row_counts"] or "{}")
    if "as_of" not in params or "items" not in counts:
        return None
    return StoredFit(
        row["model_version"], datetime.fromisoformat(params["as_of"]), row["finished_at"], params, int(counts["items"])
    )


def refit_reason(
    fit: StoredFit | None,
    *,
    every_days: float,
    params: Mapping[str, Any],
    as_of: datetime,
    now: datetime,
) -> str | None:
    """Why this run must fit ALS again, or None when it may fold its users in against ``fit``.

    Args:
        fit: The stored fit (:func:`stored_fit`), None when there is none.
        every_days: ``als.refit_every_days``; 0 refits every run.
        params: This run's ALS settings (the keys of :data:`FIT_PARAMS`).
        as_of: This run's data cut-off.
        now: The current UTC time.

    Example:
        >>> refit_reason(fit, every_days=7, params={"rank": 64, ...}, as_of=latest_event, now=utcnow)
    """
    if every_days < 0:
        raise ValueError(f"als.refit_every_days must be >= 0, got {every_days}")
    if every_days == 0:
        return "als.refit_every_days is 0"
    if fit is None:
        return "no stored fit"
    for key in FIT_PARAMS:
        if fit.params.get(key) != params[key]:
            return f"als.{key} changed since the fit {fit.model_version} ({fit.params.get(key)!r} -> {params[key]!r})"
    if as_of < fit.as_of:
        return f"--as-of {as_of.isoformat()} is before the fit's cut-off {fit.as_of.isoformat()}"
    limit = timedelta(days=every_days)
    for what, age in (("data", as_of - fit.as_of), ("clock", now - fit.finished_at)):
        if age >= limit:
            return (
                f"the fit {fit.model_version} is {age / timedelta(days=1):.1f} days old by the {what} "
                f"(als.refit_every_days {every_days:g})"
            )
    return None


def fold_in_scope(
    spark: SparkSession,
    cfg: Config,
    events: DataFrame,
    scope: Scope,
    fit: StoredFit,
    as_of: datetime,
    version: str,
    stages: Stages,
    counts: dict[str, int],
) -> tuple[Callable[[DataFrame, str | None], str], DataFrame]:
    """Folds the ``scope`` users in against the stored fit's item factors (:func:`tr.fold_in_users`).

    Their ratings come from all of their events up to ``as_of``; new users get an index; their vectors are
    merged into ``als_user_factors`` tagged with the fit's version (the item factors they belong to).

    Returns:
        The candidate writer ``(subset, user_metadata) -> scoring`` and the user index.
    """
    acfg = cfg.als
    with stages("matrix"):
        ratings = tr.training_matrix(
            events.join(scope.users, S.COL_USER, "left_semi"),
            events_cfg=cfg.events,
            as_of=as_of,
            binary_confidence=acfg.binary_confidence,
        ).cache()
        counts["pairs"] = ratings.count()
        users = update_index(
            spark, cfg.table_path(lake.USER_INDEX), ratings, col_id=S.COL_USER, col_idx=tr.COL_USER_IDX
        ).cache()
        items = lake.read_table(spark, cfg.table_path(lake.ITEM_INDEX)).cache()
        train = tr.indexed_ratings(ratings, users, items).cache()
        item_idx, y = factors_to_numpy(
            lake.read_table(spark, cfg.table_path(lake.ALS_ITEM_FACTORS)), col_id=tr.COL_ITEM_IDX, rank=acfg.rank
        )
        counts["items"] = len(item_idx)
    with stages("fold_in"):
        matrix = spark.sparkContext.broadcast(tr.item_matrix(np.asarray(item_idx, dtype=np.int64), y))
        y64 = y.astype(np.float64)
        vectors = tr.fold_in_users(
            train, item_factors=matrix, gram=y64.T @ y64, reg_param=acfg.reg_param, alpha=acfg.alpha
        ).cache()
        counts["users"] = vectors.count()
    with stages("write_factors"):
        from delta.tables import DeltaTable

        user_f = tr.factors_table(
            vectors, users, col_id=S.COL_USER, col_idx=tr.COL_USER_IDX, model_version=fit.model_version
        )
        (
            DeltaTable.forPath(spark, cfg.table_path(lake.ALS_USER_FACTORS))
            .alias("t")
            .merge(user_f.alias("s"), f"t.`{S.COL_USER}` = s.`{S.COL_USER}`")
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
            .execute()
        )
    log.info(
        "fold-in: %d users against the item factors of %s (fitted up to %s)",
        counts["users"],
        fit.model_version,
        fit.as_of.isoformat(),
    )

    def write(subset: DataFrame, user_metadata: str | None) -> str:
        out = cfg.table_path(lake.CF_CANDIDATES)
        try:
            cands = tr.candidates_broadcast(
                vectors, train, subset, items, item_factors=matrix, top_n=acfg.top_n, model_version=version
            )
            lake.overwrite_version(cands, out, user_metadata=user_metadata)
        finally:
            matrix.destroy()
        return "broadcast"

    return write, users
