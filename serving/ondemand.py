"""On-demand scoring of one user on a cache miss: ALS fold-in, content neighbours, popularity, then the blend.

The candidates are built exactly as the batch builds them (same sources, same names) and handed to
:func:`recsys.blend.blend`, so a list computed here and one computed by the batch follow the same rules:
purchased products are dropped, unavailable ones too, and pages are diversified by category.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys import keys
from recsys.blend import blend
from recsys.bundle import AlsBundle
from recsys.config import Config
from recsys.encoding import SOURCE_BITS, RankedList
from recsys.foldin import fold_in
from recsys.scoring import event_confidence
from serving.model import ModelHolder
from serving.store import HistoryEvent, RedisStore, StoreUnavailable

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class Scored:
    """A computed list and how it was made.

    Attributes:
        ranked: The list, best first.
        model_version: The ALS bundle version used (``None`` when none was).
        kind: ``personal`` (blended), ``cold_start`` (popular), ``batch_vector`` (Redis down: the batch
            factor alone) or ``fallback`` (Redis down and no factor: the last popular list seen).
    """

    ranked: RankedList
    model_version: str | None
    kind: str
    in_category: bool = False


def ratings_from_history(
    history: Sequence[HistoryEvent],
    item_index: Mapping[str, int],
    *,
    binary: bool,
    cfg: Config,
    now: float,
) -> tuple[np.ndarray, np.ndarray]:
    """ALS rows and ratings of a user's events, the batch's rule: 1 per product, or summed decayed confidence.

    Example:
        >>> rows, r = ratings_from_history([HistoryEvent("p1", "view", 1, 0.0)], {"p1": 3}, binary=True,
        ...                                cfg=Config(), now=0.0)
        >>> rows.tolist(), r.tolist()
        ([3], [1.0])
    """
    totals: dict[int, float] = {}
    for ev in history:
        row = item_index.get(ev.product_id)
        if row is None or not hasattr(cfg.events.weights, ev.event_type):
            continue
        conf = event_confidence(ev.event_type, ev.quantity, (now - ev.ts) / SECONDS_PER_DAY, cfg.events)
        totals[row] = 1.0 if binary else totals.get(row, 0.0) + conf
    rows = np.fromiter(totals.keys(), dtype=np.int64, count=len(totals))
    return rows, np.fromiter(totals.values(), dtype=np.float64, count=len(totals))


def top_items(bundle: AlsBundle, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best item rows for user vector ``x`` and their scores, best first (argpartition)."""
    scores = np.asarray(bundle.item_factors @ x.astype(np.float32))
    k = min(k, scores.shape[0])
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    idx = np.argpartition(-scores, k - 1)[:k] if k < scores.shape[0] else np.arange(scores.shape[0])
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    return idx, scores[idx]


def _ranked(ids: Sequence[str], scores: Sequence[float] | np.ndarray, sources: Sequence[int]) -> RankedList:
    return RankedList(
        product_ids=list(ids),
        scores=np.asarray(scores, dtype=np.float32),
        sources=np.asarray(sources, dtype=np.uint8),
        created_at=time.time(),
    )


class Recommender:
    """Computes a user's list on a miss from Redis (history, neighbours, popularity) and the ALS bundle."""

    def __init__(self, cfg: Config, store: RedisStore, models: ModelHolder) -> None:
        self.cfg = cfg
        self.store = store
        self.models = models

    def cold_start(self, category: str | None) -> Scored:
        """Popular in ``category`` (falling back to global popularity) for a user we have never seen."""
        bundle = self.models.get()
        found = self.store.popular(category) if category else None
        if found is not None:
            return Scored(found, bundle.model_version if bundle else None, "cold_start", in_category=True)
        found = self.store.popular(None) or _ranked([], [], [])
        return Scored(found, bundle.model_version if bundle else None, "cold_start")

    def for_user(self, user_id: str, *, category: str | None = None) -> Scored:
        """The user's list: personal for a known user, cold start for an unknown one.

        Raises:
            StoreUnavailable: Redis failed; call :meth:`degraded` instead.
        """
        history = self.store.history(user_id)
        bundle = self.models.get()
        batch_x = bundle.user_vector(user_id) if bundle is not None else None
        if not history and batch_x is None:
            return self.cold_start(category)
        now = time.time()
        frames = [self._cf(user_id, history, bundle, batch_x, now)]
        frames.append(self._neighbours(user_id, history))
        popular = self.store.popular(None)
        if popular is not None:
            # As many popular candidates as the batch offers every user (blend.popular_candidates).
            n_popular = self.cfg.blend.popular_candidates
            frames.append(
                _frame(user_id, popular.product_ids[:n_popular], popular.scores[:n_popular], "popular")
            )
        cands = (
            pd.concat([f for f in frames if len(f)], ignore_index=True)
            if any(len(f) for f in frames)
            else _frame(user_id, [], [], "cf")
        )
        ids = cands["product_id"].unique().tolist()
        details = self.store.products(ids)
        products = pd.DataFrame(
            {
                "product_id": ids,
                "category": [d["category"] if d else None for d in details],
                "available": [d is not None and d["available"] for d in details],
            }
        )
        hist = pd.DataFrame(
            {
                "user_id": user_id,
                "product_id": [e.product_id for e in history],
                "purchased": [e.event_type == "purchase" for e in history],
                "viewed": [True for _ in history],
            },
            columns=["user_id", "product_id", "purchased", "viewed"],
        )
        n = max(len(history), self.cfg.blend.cold_start_min_interactions if batch_x is not None else 0)
        out = blend(cands, history=hist, products=products, n_interactions={user_id: n}, cfg=self.cfg.blend)
        ranked = _ranked(out["product_id"].tolist(), out["score"].tolist(), out["sources"].tolist())
        return Scored(ranked, bundle.model_version if bundle else None, "personal")

    def degraded(self, user_id: str, *, category: str | None = None) -> Scored:
        """Redis is down: the batch factor's top items, else the last popular list this worker saw."""
        bundle = self.models.get()
        x = bundle.user_vector(user_id) if bundle is not None else None
        if bundle is not None and x is not None:
            rows, scores = top_items(bundle, x, self.cfg.blend.top_n)
            ids = [str(bundle.item_ids[r]) for r in rows]
            return Scored(
                _ranked(ids, scores, [SOURCE_BITS["cf"]] * len(ids)), bundle.model_version, "batch_vector"
            )
        version = bundle.model_version if bundle else None
        in_category = self.store.last_popular(category) if category else None
        if in_category is not None:
            return Scored(in_category, version, "fallback", in_category=True)
        return Scored(self.store.last_popular(None) or _ranked([], [], []), version, "fallback")

    def _cf(
        self,
        user_id: str,
        history: Sequence[HistoryEvent],
        bundle: AlsBundle | None,
        batch_x: np.ndarray | None,
        now: float,
    ) -> pd.DataFrame:
        if bundle is None:
            return _frame(user_id, [], [], "cf")
        binary = bool(bundle.meta.get("binary_confidence", self.cfg.als.binary_confidence))
        rows, ratings = ratings_from_history(history, bundle.item_index, binary=binary, cfg=self.cfg, now=now)
        if rows.size:
            x = fold_in(
                bundle.item_factors,
                bundle.gram,
                rows,
                ratings,
                reg_param=float(bundle.meta["reg_param"]),
                alpha=float(bundle.meta["alpha"]),
            )
        elif batch_x is not None:
            x = batch_x
        else:
            return _frame(user_id, [], [], "cf")
        # Over-fetch by the history size: the blend drops purchased products afterwards.
        top, scores = top_items(bundle, x, self.cfg.als.top_n + len(rows))
        return _frame(user_id, [str(bundle.item_ids[r]) for r in top], scores, "cf")

    def _neighbours(self, user_id: str, history: Sequence[HistoryEvent]) -> pd.DataFrame:
        recent: list[str] = []
        for ev in history:
            if ev.product_id not in recent:
                recent.append(ev.product_id)
            if len(recent) >= self.cfg.content.recent_items:
                break
        lists = self.store.ranked_many([keys.similar_key(p) for p in recent])
        ids: list[str] = []
        scores: list[float] = []
        sources: list[str] = []
        for found in lists:
            if found is None:
                continue
            for i, pid in enumerate(found.product_ids):
                bits = int(found.sources[i])
                for name in ("content", "itemknn"):
                    if bits & SOURCE_BITS[name]:
                        ids.append(pid)
                        scores.append(float(found.scores[i]))
                        sources.append(name)
        return pd.DataFrame(
            {"user_id": user_id, "product_id": ids, "source": sources, "score": scores},
            columns=["user_id", "product_id", "source", "score"],
        )


def _frame(
    user_id: str, ids: Sequence[str], scores: Sequence[float] | np.ndarray, source: str
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": user_id,
            "product_id": list(ids),
            "source": source,
            "score": np.asarray(scores, dtype=np.float64),
        },
        columns=["user_id", "product_id", "source", "score"],
    )


__all__ = ["Recommender", "Scored", "StoreUnavailable", "ratings_from_history", "top_items"]
