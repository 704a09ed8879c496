"""The model registry of the harness: name -> function(train_events, products, ctx) -> top-k recommendations.

Every model returns ``user_id, product_id, score`` with at most ``ctx.k`` rows per user of ``ctx.users``,
never a product the user has in ``train_events``. Adding a model is one decorated function, e.g.::

    @register("hybrid")
    def hybrid(train, products, ctx): ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.als import transforms as als_tr
from jobs.als.model import build_als, factors_to_numpy
from jobs.evaluate import baselines as bl
from recsys import schema as S
from recsys.config import Config


@dataclass(frozen=True)
class ModelContext:
    """What a model needs besides the training events."""

    cfg: Config
    k: int
    split_time: datetime
    users: DataFrame
    params: Mapping[str, Any] = field(default_factory=dict)


ModelFn = Callable[[DataFrame, "DataFrame | None", ModelContext], DataFrame]
MODELS: dict[str, ModelFn] = {}
# prefix -> factory(suffix) for parametrised names such as ``hybrid:cf1-knn0.5-ct0.3-pop0.1``.
FAMILIES: dict[str, Callable[[str], ModelFn]] = {}


def register(name: str) -> Callable[[ModelFn], ModelFn]:
    """Adds a model function to :data:`MODELS` under ``name``."""

    def deco(fn: ModelFn) -> ModelFn:
        MODELS[name] = fn
        return fn

    return deco


def register_family(prefix: str) -> Callable[[Callable[[str], ModelFn]], Callable[[str], ModelFn]]:
    """Adds a factory for the names ``prefix:<spec>``; it raises ``ValueError`` for a spec it cannot parse."""

    def deco(factory: Callable[[str], ModelFn]) -> Callable[[str], ModelFn]:
        FAMILIES[prefix] = factory
        return factory

    return deco


def resolve(name: str) -> ModelFn:
    """The model function of ``name``: a registered name, or ``family:spec`` of a registered family.

    Raises:
        ValueError: naming the unknown model (and the registered names) or the spec that does not parse.
    """
    if name in MODELS:
        return MODELS[name]
    prefix, sep, spec = name.partition(":")
    if sep and prefix in FAMILIES:
        return FAMILIES[prefix](spec)
    known = ", ".join([*MODELS, *(f"{f}:<spec>" for f in FAMILIES)])
    raise ValueError(f"unknown model {name!r} (registered: {known})")


def _seen(train: DataFrame) -> DataFrame:
    return train.select(S.COL_USER, S.COL_ITEM).distinct()


def _max_seen(train: DataFrame, users: DataFrame) -> int:
    counts = _seen(train).join(users, S.COL_USER, "left_semi").groupBy(S.COL_USER).count()
    return int(counts.agg(F.max("count")).first()[0] or 0)


def _popular(train: DataFrame, ctx: ModelContext, since: datetime | None) -> DataFrame:
    scores = bl.popularity_scores(train, since=since)
    return bl.popularity_recommend(scores, _seen(train), ctx.users, k=ctx.k,
                                   depth=ctx.k + _max_seen(train, ctx.users))


@register("popularity")
def popularity(train: DataFrame, products: DataFrame | None, ctx: ModelContext) -> DataFrame:
    """Most-popular over all training events (distinct users per product)."""
    return _popular(train, ctx, None)


@register("popularity-recent")
def popularity_recent(train: DataFrame, products: DataFrame | None, ctx: ModelContext) -> DataFrame:
    """Most-popular over the last ``params['recent_days']`` (default 30) days of training."""
    days = int(ctx.params.get("recent_days", 30))
    return _popular(train, ctx, ctx.split_time - timedelta(days=days))


@register("itemknn")
def itemknn(train: DataFrame, products: DataFrame | None, ctx: ModelContext) -> DataFrame:
    """Item-kNN, cosine on the binary matrix, ``als.knn_neighbors`` neighbours per product."""
    m = int(ctx.params.get("knn_neighbors", ctx.cfg.als.knn_neighbors))
    pairs = train.groupBy(S.COL_USER, S.COL_ITEM).agg(F.max(S.COL_TS).alias("last_ts"))
    nbrs = bl.itemknn_neighbors(pairs, m=m, max_items_per_user=ctx.cfg.als.knn_max_items_per_user).cache()
    return bl.itemknn_recommend(_seen(train), nbrs, ctx.users, k=ctx.k)


def _binary(ctx: ModelContext) -> bool:
    return bool(ctx.params.get("binary_confidence", ctx.cfg.als.binary_confidence))


def _fit_als(train: DataFrame, ctx: ModelContext, *, binary: bool, as_of: datetime) -> tuple[Any, ...]:
    """Fits ALS on the ratings of ``train`` up to ``as_of``; returns ``(estimator, model, users, items, data)``:
    the estimator (its params), the fitted model, the user and item indexes and the indexed ratings (cached)."""
    p = ctx.params
    ratings = als_tr.training_matrix(train.where(F.col(S.COL_TS) <= F.lit(as_of)), events_cfg=ctx.cfg.events,
                                     as_of=as_of, binary_confidence=binary)
    spark = train.sparkSession
    empty_u = spark.createDataFrame([], "user_id string, user_idx int")
    empty_i = spark.createDataFrame([], "product_id string, item_idx int")
    users = als_tr.new_index_rows(ratings, empty_u, col_id=S.COL_USER, col_idx=als_tr.COL_USER_IDX).cache()
    items = als_tr.new_index_rows(ratings, empty_i, col_id=S.COL_ITEM, col_idx=als_tr.COL_ITEM_IDX).cache()
    data = als_tr.indexed_ratings(ratings, users, items).cache()
    estimator = build_als(ctx.cfg.als, rank=int(p.get("rank", ctx.cfg.als.rank)), reg_param=p.get("reg_param"),
                          alpha=p.get("alpha"), max_iter=p.get("max_iter"))
    return estimator, estimator.fit(data), users, items, data


def _item_matrix(model: Any, items: DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The model's item factors as ``(item_idx, [n_items, rank] float32)``, streamed to the driver."""
    item_f = als_tr.factors_table(model.itemFactors, items, col_id=S.COL_ITEM, col_idx=als_tr.COL_ITEM_IDX,
                                  model_version="eval")
    item_ids, y = factors_to_numpy(item_f.select(als_tr.COL_ITEM_IDX, "factors").withColumnRenamed(
        als_tr.COL_ITEM_IDX, "id"), col_id="id", rank=model.rank)
    return np.asarray([int(i) for i in item_ids]), y


def _als(train: DataFrame, ctx: ModelContext, *, binary: bool) -> DataFrame:
    _, model, users, items, data = _fit_als(train, ctx, binary=binary, as_of=ctx.split_time)
    user_f = (
        als_tr.factors_table(model.userFactors, users, col_id=S.COL_USER, col_idx=als_tr.COL_USER_IDX,
                             model_version="eval")
        .join(ctx.users.select(S.COL_USER).distinct(), S.COL_USER, "left_semi")
    )
    seen = data.groupBy(als_tr.COL_USER_IDX).agg(F.collect_list(als_tr.COL_ITEM_IDX).alias("seen"))
    blocks = user_f.join(seen, als_tr.COL_USER_IDX, "left")
    item_idx, y = _item_matrix(model, items)
    scored = score_blocks(blocks, item_idx, y, k=ctx.k)
    return scored.join(items, als_tr.COL_ITEM_IDX).select(S.COL_USER, S.COL_ITEM, "score")


def als_foldin(train: DataFrame, ctx: ModelContext, *, days: float) -> DataFrame:
    """ALS whose item factors are ``days`` old: fitted on the training events up to ``split_time - days``,
    each test user's vector then folded in (:func:`recsys.foldin.fold_in`, the API's solver) from all of
    their training events against those item factors, as a nightly run that refits only every ``days``
    days would score its users. Products new since the fit cannot be recommended; a user whose every
    training product is new gets no list. ``days`` 0 folds users in against a fit on all training events,
    which gives Spark's own user vectors back (the last half-step of ALS is the same solve).
    """
    binary = _binary(ctx)
    estimator, model, _, items, _ = _fit_als(train, ctx, binary=binary, as_of=ctx.split_time - timedelta(days=days))
    item_idx, y = _item_matrix(model, items)
    reg, alpha = estimator.getRegParam(), estimator.getAlpha()
    ratings = (
        als_tr.training_matrix(train, events_cfg=ctx.cfg.events, as_of=ctx.split_time, binary_confidence=binary)
        .join(ctx.users.select(S.COL_USER).distinct(), S.COL_USER, "left_semi")
        .join(items, S.COL_ITEM)
        .groupBy(S.COL_USER)
        .agg(F.collect_list(F.struct(als_tr.COL_ITEM_IDX, als_tr.COL_RATING)).alias("_l"))
        .select(S.COL_USER, F.col(f"_l.{als_tr.COL_ITEM_IDX}").alias("seen"),
                F.col(f"_l.{als_tr.COL_RATING}").alias("ratings"))
    )
    bc = train.sparkSession.sparkContext.broadcast((item_idx, y))
    schema = T.StructType([
        T.StructField(S.COL_USER, T.StringType()),
        T.StructField("factors", T.ArrayType(T.FloatType())),
        T.StructField("seen", T.ArrayType(T.IntegerType())),
    ])

    def fold(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from recsys.foldin import fold_in

        idx, factors = bc.value
        row_of = pd.Index(idx)
        gram = factors.astype(np.float64).T @ factors.astype(np.float64)
        for pdf in batches:
            vectors = [
                fold_in(factors, gram, row_of.get_indexer(np.asarray(seen, dtype=np.int64)),
                        np.asarray(r, dtype=np.float64), reg_param=reg, alpha=alpha).astype(np.float32)
                for seen, r in zip(pdf["seen"], pdf["ratings"], strict=True)
            ]
            yield pd.DataFrame({S.COL_USER: pdf[S.COL_USER], "factors": vectors, "seen": pdf["seen"]})

    scored = score_blocks(ratings.mapInPandas(fold, schema), item_idx, y, k=ctx.k)
    return scored.join(items, als_tr.COL_ITEM_IDX).select(S.COL_USER, S.COL_ITEM, "score")


@register_family("als-foldin")
def foldin_variant(spec: str) -> ModelFn:
    """The model ``als-foldin:<days>``: :func:`als_foldin` with item factors ``days`` old (``days`` >= 0)."""
    try:
        days = float(spec)
    except ValueError:
        days = -1.0
    if not days >= 0:
        raise ValueError(f"cannot read {spec!r} in als-foldin:<days>: days must be a number >= 0, e.g. als-foldin:7")

    def fn(train: DataFrame, products: DataFrame | None, ctx: ModelContext) -> DataFrame:
        return als_foldin(train, ctx, days=days)

    return fn


def score_blocks(users: DataFrame, item_idx: np.ndarray, item_factors: np.ndarray, *, k: int) -> DataFrame:
    """Top-k items per user by dot product, scored in numpy blocks inside ``mapInPandas``.

    The item factors are broadcast (catalogue x rank floats: 20k x 64 is 5 MB); user factors stay in
    Spark and are scored one Arrow batch at a time, so no user factor reaches the driver. Each user's
    ``seen`` item indexes get minus infinity before the top-k.

    Args:
        users: ``user_id, factors, seen`` (seen: array of item_idx, may be null).
        item_idx: The item_idx of each row of ``item_factors``.
        item_factors: ``[n_items, rank]``.
        k: Items per user.

    Returns:
        ``user_id, item_idx, score``.
    """
    bc = users.sparkSession.sparkContext.broadcast((item_idx, item_factors))
    schema = T.StructType([
        T.StructField(S.COL_USER, T.StringType()),
        T.StructField("item_idx", T.IntegerType()),
        T.StructField("score", T.DoubleType()),
    ])

    def topk(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        idx, y = bc.value
        pos = {int(v): i for i, v in enumerate(idx)}
        kk = min(k, len(idx))
        for pdf in batches:
            if pdf.empty:
                continue
            x = np.stack(pdf["factors"].to_numpy()).astype(np.float32)
            s = x @ y.T
            for r, seen in enumerate(pdf["seen"]):
                if seen is not None and len(seen):
                    s[r, [pos[int(i)] for i in seen if int(i) in pos]] = -np.inf
            top = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
            top_s = np.take_along_axis(s, top, axis=1)
            keep = np.isfinite(top_s)
            rows = np.repeat(np.arange(len(pdf)), kk)[keep.ravel()]
            yield pd.DataFrame({
                S.COL_USER: pdf[S.COL_USER].to_numpy()[rows],
                "item_idx": idx[top.ravel()[keep.ravel()]].astype(np.int32),
                "score": top_s.ravel()[keep.ravel()].astype(np.float64),
            })

    return users.select(S.COL_USER, "factors", "seen").mapInPandas(topk, schema)


@register("als")
def als(train: DataFrame, products: DataFrame | None, ctx: ModelContext) -> DataFrame:
    """Spark implicit ALS with ``als.binary_confidence`` (params may override rank/reg_param/alpha)."""
    return _als(train, ctx, binary=_binary(ctx))


@register("als-weighted")
def als_weighted(train: DataFrame, products: DataFrame | None, ctx: ModelContext) -> DataFrame:
    """Spark implicit ALS on the weighted, decayed confidence (event weight x capped quantity x decay)."""
    return _als(train, ctx, binary=False)


@register("content")
def content(train: DataFrame, products: DataFrame | None, ctx: ModelContext) -> DataFrame:
    """Content-based recommendations from ``jobs.content.transforms.recommend``."""
    from jobs.content.transforms import recommend

    if products is None:
        raise ValueError("the content model needs products")
    recs = recommend(train, products, k=ctx.k, cfg=ctx.cfg.content, events_cfg=ctx.cfg.events,
                     as_of=ctx.split_time)
    recs = recs.join(ctx.users.select(S.COL_USER).distinct(), S.COL_USER, "left_semi")
    return bl.top_k_per_user(recs.join(_seen(train), [S.COL_USER, S.COL_ITEM], "left_anti"), k=ctx.k)


from jobs.blend import evaluate_model as _hybrid  # noqa: E402, F401  (registers "hybrid" and its weight sweep)
