"""The Spark ALS estimator built from config, and streaming of fitted factors into numpy arrays."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from pyspark.ml.recommendation import ALS
from pyspark.sql import DataFrame

from jobs.als.transforms import COL_ITEM_IDX, COL_RATING, COL_USER_IDX
from recsys.config import AlsConfig


def build_als(
    cfg: AlsConfig,
    *,
    rank: int | None = None,
    reg_param: float | None = None,
    alpha: float | None = None,
    max_iter: int | None = None,
) -> ALS:
    """Implicit-feedback ALS with the configured hyper-parameters (keyword overrides for grids and benches).

    Checkpointing every ``cfg.checkpoint_interval`` iterations truncates the factor lineage; it only takes
    effect when the SparkContext has a checkpoint directory (the jobs set ``lake.checkpoint_dir``).

    Example:
        >>> model = build_als(cfg.als, rank=32).fit(train)
    """
    return ALS(
        rank=rank or cfg.rank,
        maxIter=max_iter or cfg.max_iter,
        regParam=cfg.reg_param if reg_param is None else reg_param,
        alpha=cfg.alpha if alpha is None else alpha,
        implicitPrefs=True,
        nonnegative=cfg.nonnegative,
        checkpointInterval=cfg.checkpoint_interval,
        seed=cfg.seed,
        userCol=COL_USER_IDX,
        itemCol=COL_ITEM_IDX,
        ratingCol=COL_RATING,
        coldStartStrategy="drop",
    )


def stream_factors(rows: Iterable, n: int, rank: int) -> tuple[list[str], np.ndarray]:
    """Fills a preallocated ``[n, rank]`` float32 array from ``(id, factors)`` rows one at a time.

    Used with ``DataFrame.toLocalIterator()`` so the driver holds one partition at a time plus the array,
    never a Python list of every Row (what ``collect()`` would build).

    Example:
        >>> ids, x = stream_factors(df.select("user_id", "factors").toLocalIterator(), n, 64)
    """
    ids: list[str] = []
    out = np.empty((n, rank), dtype=np.float32)
    for i, (key, vec) in enumerate(rows):
        if i >= n:
            raise ValueError(f"more factor rows than the {n} counted")
        ids.append(str(key))
        out[i] = vec
    if len(ids) != n:
        raise ValueError(f"expected {n} factor rows, got {len(ids)}")
    return ids, out


def factors_to_numpy(df: DataFrame, *, col_id: str, rank: int) -> tuple[list[str], np.ndarray]:
    """Streams ``col_id, factors`` of ``df`` into numpy (one count, then ``toLocalIterator``).

    Example:
        >>> item_ids, y = factors_to_numpy(item_factors, col_id="product_id", rank=64)
    """
    df = df.select(col_id, "factors")
    return stream_factors(((r[0], r[1]) for r in df.toLocalIterator()), df.count(), rank)
