"""The content job: product vectors, top-K similar items, user content candidates, and a run record.

    ./spark-submit.sh content [--sample-recall N] [--lake DIR] [--users PATH]

Reads ``products`` and ``interactions``, writes ``item_neighbors`` and ``content_candidates`` as new Delta
versions tagged ``model_version = content-YYYYmmddTHHMMSSZ``, and appends a row to ``runs`` with the
parameters, a tie-aware recall check of the neighbours against brute-force cosine on a random sample of
products, the timing of every stage and the row counts. A run over every user recomputes the neighbours, so a
product added since the last run gets neighbours and is a neighbour of others. ``--users`` limits the
candidates to the users of a table (an incremental pipeline run's, :mod:`jobs.common.scope`), and such a run
reuses the stored neighbours when they were computed from the current version of the ``products`` table with
the current settings: they depend on nothing else, so recomputing them would give the same rows (``--full``
recomputes them anyway).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from datetime import UTC, datetime, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.common import lake
from jobs.common.candidate_lists import COL_PRODUCT_IDS, to_lists
from jobs.common.confidence import interaction_confidence
from jobs.common.errors import JobError
from jobs.common.progress import Stages
from jobs.common.runs import write_run_record
from jobs.common.scope import read_scope
from jobs.content.candidates import catalogue_arrays, content_candidates_broadcast
from jobs.content.neighbours import COL_NEIGHBOR, exact_candidates, tie_aware_recall
from jobs.content.transforms import content_candidates, product_features, similar_items, vector_entries
from recsys import schema as S
from recsys.config import Config

DESCRIPTION = "content-based filtering: product vectors, similar items (LSH) and user content candidates"
JOB = "content"
# The settings the neighbours depend on (with the products); the candidates' own settings are not among them.
NEIGHBOUR_PARAMS = ("top_k", "weights", "title_features", "lsh_tables", "lsh_bits", "block_max", "seed")
log = logging.getLogger(__name__)



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--full",
        action="store_true",
        help="recompute the neighbours even in a --users run whose catalogue and settings are unchanged "
        "(a run without --users always recomputes them)",
    )
    parser.add_argument(
        "--sample-recall",
        type=int,
        default=None,
        metavar="N",
        help="products checked against brute-force cosine in the run record (default: content.recall_sample)",
    )
    parser.add_argument("--lake", default=None, metavar="DIR", help="lake root overriding lake.root")
    parser.add_argument(
        "--users",
        default=None,
        metavar="PATH",
        help="content candidates only for the users in this Delta table (column user_id), e.g. the users an "
        "incremental pipeline run rescores; the candidate table then holds only them (docs/schedule.md)",
    )


def model_version(now: datetime) -> str:
    """``content-YYYYmmddTHHMMSSZ`` of a UTC time."""
    return "content-" + now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _path(spark: SparkSession, cfg: Config, name: str) -> str:
    path = cfg.table_path(name)
    if not lake.table_exists(spark, path):
        raise JobError(f"table {name!r} not found at {path}: run the ingest job first")
    return path


def reusable_neighbours(spark: SparkSession, cfg: Config, *, products_version: int) -> str | None:
    """The ``model_version`` of the stored ``item_neighbors`` when the content run that computed them read
    ``products_version`` of the products table with today's :data:`NEIGHBOUR_PARAMS`; None otherwise.

    Example:
        >>> reusable_neighbours(spark, cfg, products_version=12)
        'content-20260131T120000Z'
    """
    runs, nbrs = cfg.table_path(lake.RUNS), cfg.table_path(lake.ITEM_NEIGHBORS)
    if not (lake.table_exists(spark, runs) and lake.table_exists(spark, nbrs)):
        return None
    computed = F.coalesce(F.get_json_object("params", "$.neighbours"), F.lit("computed")) == "computed"
    row = (
        lake.read_table(spark, runs)
        .where((F.col("job") == JOB) & computed)
        .orderBy(F.col("finished_at").desc())
        .select("model_version", "params")
        .first()
    )
    if row is None:
        return None
    params, current = json.loads(row["params"] or "{}"), dataclasses.asdict(cfg.content)
    if params.get("products_version") != products_version or any(
        params.get(key) != current[key] for key in NEIGHBOUR_PARAMS
    ):
        return None
    stored = lake.read_table(spark, nbrs).select("model_version").first()
    return row["model_version"] if stored is not None and stored["model_version"] == row["model_version"] else None


def recall_check(
    features: DataFrame, neighbours: DataFrame, *, k: int, sample: int, seed: int
) -> dict[str, float]:
    """Tie-aware recall@k of ``neighbours`` on ``sample`` random products against brute-force cosine."""
    if sample <= 0:
        return {}
    queries = features.orderBy(F.rand(seed)).limit(sample).toPandas()
    exact = exact_candidates(features, queries, k=k).toPandas()
    returned = neighbours.where(F.col(S.COL_ITEM).isin(list(queries[S.COL_ITEM]))).toPandas()
    return tie_aware_recall(exact, returned, k=k)


def run(args: argparse.Namespace, cfg: Config, spark: SparkSession) -> int:
    if args.lake:
        cfg = dataclasses.replace(cfg, lake=dataclasses.replace(cfg.lake, root=args.lake))
    c = cfg.content
    sample = c.recall_sample if args.sample_recall is None else args.sample_recall
    if sample < 0:
        raise JobError(f"--sample-recall must be >= 0, got {sample}")
    started = datetime.now(UTC)
    version = model_version(started)
    stages = Stages(JOB)
    # The neighbours are computed from (and recorded with) one pinned version of the products.
    products_path = _path(spark, cfg, lake.PRODUCTS)
    products_version = lake.latest_version(spark, products_path)
    products = lake.read_table(spark, products_path, version=products_version)
    events = lake.read_table(spark, _path(spark, cfg, lake.INTERACTIONS))
    scope = read_scope(spark, args.users) if args.users else None

    with stages("features"):
        feats = product_features(products, weights=c.weights, title_features=c.title_features).cache()
        n_products = feats.count()
        if n_products == 0:
            raise JobError(f"table 'products' at {cfg.table_path(lake.PRODUCTS)} is empty")
    reused = None
    if scope is not None and not args.full:
        reused = reusable_neighbours(spark, cfg, products_version=products_version)
    recall: dict[str, float] = {}
    if reused is None:
        with stages("similar_items"):
            nbrs = similar_items(
                feats, k=c.top_k, tables=c.lsh_tables, bits=c.lsh_bits, window=c.block_max, seed=c.seed
            ).cache()
            n_neighbours = nbrs.count()
        with stages("write_item_neighbors"):
            lake.overwrite_version(
                nbrs.withColumn("model_version", F.lit(version)), cfg.table_path(lake.ITEM_NEIGHBORS)
            )
        with stages("recall_check"):
            recall = recall_check(feats, nbrs, k=c.top_k, sample=sample, seed=c.seed)
            log.info("tie-aware recall@%d on %d products: %s", c.top_k, sample, recall)
    else:
        with stages("read_item_neighbors"):
            nbrs = lake.read_table(spark, cfg.table_path(lake.ITEM_NEIGHBORS)).drop("model_version").cache()
            n_neighbours = nbrs.count()
        log.info(
            "neighbours: the item_neighbors of %s, computed from products version %d with the same settings",
            reused,
            products_version,
        )
    with stages("content_candidates"):
        last_ts = events.agg(F.max(S.COL_TS)).first()[0]
        as_of = last_ts.replace(tzinfo=UTC) if last_ts is not None else started
        # A user's candidates depend on their own events only, so a scoped run reads just its users' events.
        scoped = events if scope is None else events.join(scope.users, S.COL_USER, "left_semi")
        conf = interaction_confidence(scoped, cfg=cfg.events, as_of=as_of)
        active_since = as_of - timedelta(days=cfg.als.active_window_days)
        if n_products <= c.broadcast_max_products:
            log.info("content candidates: numpy with the catalogue broadcast (%d products)", n_products)
            cat = catalogue_arrays(
                vector_entries(feats).toPandas(),
                nbrs.select(S.COL_ITEM, COL_NEIGHBOR, "score").toPandas(),
            )
            cands = content_candidates_broadcast(
                conf,
                cat,
                top_n=c.top_n,
                recent_items=c.recent_items,
                partitions=cfg.spark.shuffle_partitions,
                active_since=active_since,
            )
        else:
            log.info(
                "content candidates: Spark joins (%d products > content.broadcast_max_products %d)",
                n_products,
                c.broadcast_max_products,
            )
            active = conf.where(F.col("last_ts") >= F.lit(active_since)).select(S.COL_USER).distinct()
            rows = content_candidates(
                conf.join(active, S.COL_USER, "left_semi"),
                nbrs,
                vector_entries(feats),
                top_n=c.top_n,
                recent_items=c.recent_items,
            )
            cands = to_lists(rows, score_type="double")
        cands = cands.withColumn("model_version", F.lit(version))
        lake.overwrite_version(
            cands, cfg.table_path(lake.CONTENT_CANDIDATES), user_metadata=None if scope is None else scope.tag
        )
        written = lake.read_table(spark, cfg.table_path(lake.CONTENT_CANDIDATES))
        n_candidates = int(written.agg(F.sum(F.size(COL_PRODUCT_IDS))).first()[0] or 0)
    finished = datetime.now(UTC)
    record = {
        "job": JOB,
        "model_version": version,
        "started_at": started,
        "finished_at": finished,
        "params": {
            **dataclasses.asdict(c),
            "as_of": as_of.isoformat(),
            "users": None if scope is None else scope.tag,
            "products_version": products_version,
            "neighbours": "computed" if reused is None else "reused",
            "neighbours_version": version if reused is None else reused,
        },
        "metrics": {f"neighbors_{key}": value for key, value in recall.items()},
        "timings": stages.seconds,
        "row_counts": {
            "products": n_products,
            lake.ITEM_NEIGHBORS: n_neighbours,
            lake.CONTENT_CANDIDATES: n_candidates,
        },
    }
    write_run_record(spark, cfg.table_path(lake.RUNS), record)
    nbrs.unpersist()
    feats.unpersist()
    print(
        f"content {version}: {n_products:,} products, {n_neighbours:,} neighbours, "
        f"{n_candidates:,} candidates; "
        f"recall@{c.top_k} {recall.get('recall', float('nan')):.4f} on {sample} products; "
        f"{(finished - started).total_seconds():.1f} s"
    )
    return 0
