"""``./spark-submit.sh blend``: popular lists, item-kNN neighbours, the hybrid blend per user, similar items.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.als.transforms import active_users
from jobs.blend import onepass
from jobs.blend import transforms as tr
from jobs.common import lake
from jobs.common.candidate_lists import to_rows
from jobs.common.errors import JobError
from jobs.common.progress import Stages
from jobs.common.runs import model_version, write_run_record
from jobs.common.scope import check_scope
from jobs.evaluate import baselines as bl
from recsys import schema as S
from recsys.config import Config

DESCRIPTION = "blend CF, content, item-kNN and popular candidates per user; popular lists; similar items"
log = logging.getLogger(__name__)

SIMILAR_ITEMS = "similar_items"
COL_SCORED_AT = "scored_at"


@dataclass(frozen=True)
class BlendOutcome:
    """What a blend run wrote."""

    model_version: str
    users: int
    row_counts: dict[str, int]
    seconds: dict[str, float]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--all-users",
        action="store_true",
        help="score every user with interactions, not only those with candidates or recent events",
    )


def _latest(events: DataFrame) -> datetime:
    latest = events.agg(F.max(S.COL_TS)).first()[0]
    if latest is None:
        raise JobError("the interactions table is empty: ingest events first")
    return latest


def _optional(spark: SparkSession, cfg: Config, name: str) -> DataFrame | None:
    path = cfg.table_path(name)
    if lake.table_exists(spark, path):
        return lake.read_table(spark, path)
    log.warning("no %s table at %s: that candidate source is skipped", name, path)
    return None


def _tagged(df: DataFrame, version: str) -> DataFrame:
    return df.withColumn("model_version", F.lit(version))


def write_recommendations(spark: SparkSession, recs: DataFrame, path: str, *, incremental: bool) -> None:
    """Full runs replace the table; incremental runs MERGE the rescored users' rows in (one Delta commit)."""
    if not incremental or not lake.table_exists(spark, path):
        lake.overwrite_version(recs, path)
        return
    (
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(recs.alias("s"), f"t.`{S.COL_USER}` = s.`{S.COL_USER}`")
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute()
    )


def scored_users(
    spark: SparkSession,
    cfg: Config,
    events: DataFrame,
    as_of: datetime,
    *,
    all_users: bool,
    sources: list[DataFrame],
) -> DataFrame:
    """Users of a full run: those with CF or content candidates or an event in the active window."""
    if all_users:
        return events.select(S.COL_USER).distinct()
    users = active_users(events, as_of=as_of, window_days=cfg.als.active_window_days)
    for df in sources:
        users = users.unionByName(df.select(S.COL_USER))
    return users.distinct()


def candidates_only_of_scored(
    *, rescoring: bool, all_users: bool, scope: str | None, written: list[str | None]
) -> bool:
    """True when no CF or content candidate row can belong to a user outside the scored set, so the blend need
    not join the candidates with the users.

    A full run (not ``rescoring``) scores every user with candidates (:func:`scored_users` without
    ``all_users``); a run that rescores given users holds only their candidates when every candidate table was
    ``written`` (:func:`jobs.common.scope.written_scope`) for their ``scope``.
    """
    if not rescoring:
        return not all_users
    return scope is not None and all(tag == scope for tag in written)


def blended_lists(
    spark: SparkSession,
    cfg: Config,
    *,
    events: DataFrame,
    users: DataFrame,
    cf: DataFrame | None,
    content: DataFrame | None,
    popular: DataFrame,
    nbrs: DataFrame,
    products: DataFrame,
    broadcast: bool | None = None,
    sources_of_users: bool = False,
) -> DataFrame:
    """One ``user_id, product_ids, scores, sources`` row per user of ``users``.

    ``sources_of_users``: ``cf`` and ``content`` hold candidates of ``users`` only, so they are not joined
    with ``users`` (a join that shuffles every candidate row to drop none of them).

    ``broadcast`` None: the one-pass numpy blend (:mod:`jobs.blend.onepass`) when the catalogue has at most
    ``blend.broadcast_max_products`` products, else the join version; True/False force one (tests).
    """
    bcfg = cfg.blend
    history = tr.user_history(events.join(users, S.COL_USER, "left_semi"))

    def of_users(df: DataFrame | None) -> DataFrame | None:
        if df is None or sources_of_users:
            return df
        return df.join(users, S.COL_USER, "left_semi")

    cf, content = of_users(cf), of_users(content)
    if broadcast is None:
        n_products = products.count()
        broadcast = n_products <= bcfg.broadcast_max_products
        log.info(
            "blend: %s (%d products, blend.broadcast_max_products %d)",
            "one pass in numpy, catalogue broadcast" if broadcast else "Spark joins",
            n_products,
            bcfg.broadcast_max_products,
        )
    if broadcast:
        head = (
            popular.where(F.col(S.COL_CATEGORY).isNull() & (F.col(tr.COL_RANK) <= bcfg.popular_candidates))
            .orderBy(tr.COL_RANK)
            .select(S.COL_ITEM, tr.COL_SCORE)
        )
        cat = onepass.blend_catalogue(
            products.select(S.COL_ITEM, S.COL_CATEGORY, S.COL_AVAILABLE).toPandas(),
            nbrs.select(S.COL_ITEM, bl.COL_NEIGHBOR, "score").toPandas(),
            head.toPandas(),
        )
        rows = onepass.blend_rows(history, cf, content)
        return onepass.blend_users_broadcast(
            rows, cat, cfg=bcfg, itemknn_k=bcfg.itemknn_top_n, partitions=cfg.spark.shuffle_partitions
        )
    history = history.cache()
    parts = [tr.popular_candidates(users, popular, top_n=bcfg.popular_candidates)]
    for df, source in ((cf, "cf"), (content, "content")):
        if df is not None:
            parts.append(tr.tag_source(to_rows(df), source=source))
    knn = bl.itemknn_recommend(history.select(S.COL_USER, S.COL_ITEM), nbrs, users, k=bcfg.itemknn_top_n)
    parts.append(tr.tag_source(knn, source="itemknn"))
    candidates = parts[0]
    for part in parts[1:]:
        candidates = candidates.unionByName(part)
    enriched = tr.enrich(candidates, history, products, tr.interaction_counts(history))
    return tr.blend_users(enriched, cfg=bcfg, partitions=cfg.spark.shuffle_partitions)


@dataclass
class BlendInputs:
    """What :func:`write_blend_inputs` wrote and the blend of the users reads: the interactions and products
    read once, the popular lists and item-kNN neighbours read back from their tables, and counts."""

    events: DataFrame
    products: DataFrame
    popular: DataFrame
    nbrs: DataFrame
    as_of: datetime
    counts: dict[str, int]


def candidates_scope(
    spark: SparkSession, cfg: Config, *, rescoring: bool, all_users: bool, scope: str | None
) -> bool:
    """Checks the CF and content candidate tables against ``scope`` (a table written for another set of users
    stops the run) and returns :func:`candidates_only_of_scored` for them."""
    tags = [
        check_scope(spark, cfg.table_path(name), table=name, job=job, scope=scope)
        for name, job in ((lake.CF_CANDIDATES, "als"), (lake.CONTENT_CANDIDATES, "content"))
        if lake.table_exists(spark, cfg.table_path(name))
    ]
    return candidates_only_of_scored(rescoring=rescoring, all_users=all_users, scope=scope, written=tags)


def write_blend_inputs(spark: SparkSession, cfg: Config, *, version: str, stages: Stages) -> BlendInputs:
    """The blend's steps that read no candidate table: the popular lists, the item-kNN neighbours and the
    similar items (which read the content job's ``item_neighbors`` when it is there), each written to its
    table. The pipeline runs them alongside the ALS job."""
    bcfg = cfg.blend
    ipath = cfg.table_path(lake.INTERACTIONS)
    ppath = cfg.table_path(lake.PRODUCTS)
    for path in (ipath, ppath):
        if not lake.table_exists(spark, path):
            raise JobError(f"no Delta table at {path}: run ingest first")
    events = lake.read_table(spark, ipath)
    products = lake.read_table(spark, ppath).select(S.COL_ITEM, S.COL_CATEGORY, S.COL_AVAILABLE).cache()
    counts: dict[str, int] = {}
    with stages("popular"):
        as_of = _latest(events)
        scores = tr.popularity_scores(
            events, events_cfg=cfg.events, half_life_days=bcfg.popular_half_life_days, as_of=as_of
        )
        popular = tr.popular_lists(scores, products, top_n=bcfg.popular_top_n)
        lake.overwrite_version(_tagged(popular, version), cfg.table_path(lake.POPULAR))
        popular = lake.read_table(spark, cfg.table_path(lake.POPULAR)).cache()
        counts["popular_rows"] = popular.count()
    with stages("itemknn"):
        # Events as they are: both paths keep each (user, product)'s latest event time themselves.
        pairs = events.select(S.COL_USER, S.COL_ITEM, F.col(S.COL_TS).alias("last_ts"))
        nbrs = bl.itemknn_neighbors(
            pairs,
            m=cfg.als.knn_neighbors,
            max_items_per_user=cfg.als.knn_max_items_per_user,
            broadcast_max_items=bcfg.broadcast_max_products,
        )
        lake.overwrite_version(_tagged(nbrs, version), cfg.table_path(lake.ITEMKNN_NEIGHBORS))
        nbrs = lake.read_table(spark, cfg.table_path(lake.ITEMKNN_NEIGHBORS))
        counts["itemknn_neighbors"] = nbrs.count()
    with stages("similar"):
        content_nbrs = _optional(spark, cfg, lake.ITEM_NEIGHBORS)
        similar = tr.similar_items(
            content_nbrs,
            nbrs,
            products,
            weight_content=bcfg.weight_content,
            weight_itemknn=bcfg.weight_itemknn,
            top_n=bcfg.similar_top_n,
        )
        lake.overwrite_version(_tagged(similar, version), cfg.table_path(SIMILAR_ITEMS))
        counts["similar_rows"] = lake.read_table(spark, cfg.table_path(SIMILAR_ITEMS)).count()
    return BlendInputs(events, products, popular, nbrs, as_of, counts)


def write_blend(
    spark: SparkSession,
    cfg: Config,
    inputs: BlendInputs,
    *,
    version: str,
    stages: Stages,
    users: DataFrame | None,
    all_users: bool,
    sources_of_users: bool,
) -> BlendOutcome:
    """The blended lists of the users (``users``, or every scored user when None) from the CF and content
    candidate tables and ``inputs``, written to ``recommendations`` (:func:`write_recommendations`)."""
    counts = dict(inputs.counts)
    with stages("blend"):
        cf = _optional(spark, cfg, lake.CF_CANDIDATES)
        content = _optional(spark, cfg, lake.CONTENT_CANDIDATES)
        incremental = users is not None
        if users is None:
            users = scored_users(
                spark,
                cfg,
                inputs.events,
                inputs.as_of,
                all_users=all_users,
                sources=[df for df in (cf, content) if df is not None],
            )
        users = users.select(S.COL_USER).distinct().cache()
        recs = blended_lists(
            spark,
            cfg,
            events=inputs.events,
            users=users,
            cf=cf,
            content=content,
            popular=inputs.popular,
            nbrs=inputs.nbrs,
            products=inputs.products,
            sources_of_users=sources_of_users,
        )
        scored_at = datetime.now(UTC).replace(tzinfo=None)
        recs = _tagged(recs, version).withColumn(COL_SCORED_AT, F.lit(scored_at).cast("timestamp"))
        rpath = cfg.table_path(lake.RECOMMENDATIONS)
        write_recommendations(spark, recs, rpath, incremental=incremental)
        written = lake.read_table(spark, rpath).where(F.col("model_version") == version)
        agg = written.agg(F.count(F.lit(1)).alias("u"), F.sum(F.size(tr.COL_PRODUCT_IDS)).alias("n")).first()
        counts["users"] = int(agg["u"] or 0)
        counts["recommendation_items"] = int(agg["n"] or 0)
    return BlendOutcome(version, counts["users"], counts, dict(stages.seconds))


def run_blend(
    spark: SparkSession,
    cfg: Config,
    *,
    version: str,
    stages: Stages,
    users: DataFrame | None = None,
    all_users: bool = False,
    scope: str | None = None,
) -> BlendOutcome:
    """Computes and writes the popular lists, item-kNN neighbours, similar items and the blended lists.

    Args:
        spark: The session.
        cfg: The configuration.
        version: The model version tagging every row written.
        stages: Progress and timings.
        users: Only these users are rescored (``user_id`` rows) and merged into ``recommendations``;
            ``None`` rescores everyone and replaces the table.
        all_users: In a full run, score every user with interactions.
        scope: The scope tag of ``users`` (:mod:`jobs.common.scope`) when the candidate tables were written
            for them only; a candidate table written for another scope stops the run before any work.

    Returns:
        Counts and timings of the run.
    """
    sources_of_users = candidates_scope(
        spark, cfg, rescoring=users is not None, all_users=all_users, scope=scope
    )
    inputs = write_blend_inputs(spark, cfg, version=version, stages=stages)
    return write_blend(
        spark,
        cfg,
        inputs,
        version=version,
        stages=stages,
        users=users,
        all_users=all_users,
        sources_of_users=sources_of_users,
    )


def run(args: argparse.Namespace, cfg: Config, spark: SparkSession) -> int:
    started = datetime.now(UTC).replace(tzinfo=None)
    version = model_version("blend", started)
    stages = Stages("blend")
    out = run_blend(spark, cfg, version=version, stages=stages, all_users=args.all_users)
    write_run_record(
        spark,
        cfg.table_path(lake.RUNS),
        {
            "job": "blend",
            "model_version": version,
            "started_at": started,
            "finished_at": datetime.now(UTC).replace(tzinfo=None),
            "params": _params(cfg),
            "metrics": {},
            "timings": stages.seconds,
            "row_counts": out.row_counts,
        },
    )
    print(
        f"blend {version}: {out.users:,} users scored, {out.row_counts['recommendation_items']:,} items; "
        f"{out.row_counts['popular_rows']:,} popular rows, {out.row_counts['similar_rows']:,} similar rows; "
        f"{sum(stages.seconds.values()):.1f}s"
    )
    return 0


def _params(cfg: Config) -> dict[str, object]:
    from dataclasses import asdict

    return {"blend": asdict(cfg.blend), "knn_neighbors": cfg.als.knn_neighbors}
