"""On-demand scoring of one user on a cache miss: ALS fold-in, content neighbours, popularity, then the blend.

The candidates are built exactly as the batch builds them (same sources, same names, same order) and handed
to :func:`recsys.blend_arrays.blend_arrays`, the numpy core of the batch's :func:`recsys.blend.blend`, so a
list computed here and one computed by the batch follow the same rules: purchased products are dropped,
unavailable ones too, and pages are diversified by category. No DataFrame is built on the request path: the
candidates are coded with a dict of their product ids (a few hundred) and the blend runs on the codes.

Redis round trips on a miss (after the GET that found no cached list): the history and ``popular:global``
in one pipeline, the neighbour lists of the recent products in one pipeline, the candidates' product
details in one pipeline (those read within ``serving.product_cache_s`` come from the worker's memory), the
``SET`` of the answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from recsys import keys
from recsys.blend_arrays import SOURCES, blend_arrays
from recsys.bundle import AlsBundle
from recsys.config import Config
from recsys.encoding import SOURCE_BITS, RankedList
from recsys.foldin import fold_in
from recsys.scoring import event_confidence
from recsys.topk import top_n
from serving.model import ModelHolder
from serving.store import HistoryEvent, RedisStore, StoreUnavailable

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400.0
_SOURCE_CODE = {name: SOURCES.index(name) for name in SOURCES}
# The neighbour sources a similar:item list can carry, in the order the batch emits their candidate rows.
_NEIGHBOUR_SOURCES = tuple((SOURCE_BITS[name], _SOURCE_CODE[name]) for name in ("content", "itemknn"))


class _Candidates:
    """One user's candidate rows in input order, with product codes given by first appearance."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.item: list[int] = []
        self.source: list[int] = []
        self.score: list[float] = []

    def add(self, ids: Sequence[str], scores: Sequence[float], source: str) -> None:
        codes, code = self.codes, _SOURCE_CODE[source]
        self.item.extend(codes.setdefault(pid, len(codes)) for pid in ids)
        self.source.extend([code] * len(ids))
        self.score.extend(scores)


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
    """The ``k`` best item rows for user vector ``x`` and their scores, best first (ties: lower row first).

    The batch's kernel, :func:`recsys.topk.top_n`, so a list computed here is ordered as the batch orders it.
    """
    found = top_n(x[np.newaxis, :], bundle.item_factors, max(k, 0))
    return found.items, found.scores


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

    def cold_start(self, category: str | None, *, popular: RankedList | None = None) -> Scored:
        """Popular in ``category`` (falling back to global popularity) for a user we have never seen.

        Args:
            category: The category asked for, if any.
            popular: ``popular:global`` when the caller has just read it (saves a round trip).
        """
        bundle = self.models.get()
        found = self.store.popular(category) if category else None
        if found is not None:
            return Scored(found, bundle.model_version if bundle else None, "cold_start", in_category=True)
        found = (popular if popular is not None else self.store.popular(None)) or _ranked([], [], [])
        return Scored(found, bundle.model_version if bundle else None, "cold_start")

    def for_user(self, user_id: str, *, category: str | None = None) -> Scored:
        """The user's list: personal for a known user, cold start for an unknown one.

        Raises:
            StoreUnavailable: Redis failed; call :meth:`degraded` instead.
        """
        history, popular = self.store.history_and_popular(user_id)
        bundle = self.models.get()
        batch_x = bundle.user_vector(user_id) if bundle is not None else None
        if not history and batch_x is None:
            return self.cold_start(category, popular=popular)
        now = time.time()
        cands = _Candidates()
        self._cf(cands, history, bundle, batch_x, now)
        self._neighbours(cands, history)
        if popular is not None:
            # As many popular candidates as the batch offers every user (blend.popular_candidates).
            n_popular = self.cfg.blend.popular_candidates
            cands.add(popular.product_ids[:n_popular], popular.scores[:n_popular].tolist(), "popular")
        ids = list(cands.codes)
        details = self.store.products(ids)
        categories: dict[str, int] = {}
        category_codes = [
            categories.setdefault(d["category"], len(categories)) if d and d["category"] is not None else -1
            for d in details
        ]
        n = max(len(history), self.cfg.blend.cold_start_min_interactions if batch_x is not None else 0)
        out = blend_arrays(
            np.zeros(len(cands.item), dtype=np.int64),
            np.array(cands.item, dtype=np.int64),
            np.array(cands.source, dtype=np.int64),
            np.array(cands.score, dtype=np.float64),
            items=np.array(ids, dtype=object),
            listed=np.array([d is not None and bool(d["available"]) for d in details], dtype=bool),
            category=np.array(category_codes, dtype=np.int64),
            counts=np.array([float(n)]),
            cfg=self.cfg.blend,
            hist_user=np.zeros(len(history), dtype=np.int64),
            hist_item=np.array([cands.codes.get(e.product_id, -1) for e in history], dtype=np.int64),
            purchased=np.array([e.event_type == "purchase" for e in history], dtype=bool),
            viewed=np.ones(len(history), dtype=bool),
        )
        ranked = _ranked([ids[i] for i in out.item.tolist()], out.score.tolist(), out.sources.tolist())
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
        cands: _Candidates,
        history: Sequence[HistoryEvent],
        bundle: AlsBundle | None,
        batch_x: np.ndarray | None,
        now: float,
    ) -> None:
        if bundle is None:
            return
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
            return
        # Over-fetch by the history size: the blend drops purchased products afterwards.
        top, scores = top_items(bundle, x, self.cfg.als.top_n + len(rows))
        cands.add([str(p) for p in bundle.item_ids[top].tolist()], scores.tolist(), "cf")

    def _neighbours(self, cands: _Candidates, history: Sequence[HistoryEvent]) -> None:
        recent: list[str] = []
        for ev in history:
            if ev.product_id not in recent:
                recent.append(ev.product_id)
            if len(recent) >= self.cfg.content.recent_items:
                break
        codes = cands.codes
        for found in self.store.ranked_many([keys.similar_key(p) for p in recent]):
            if found is None:
                continue
            # Per product, a content row then an itemknn row, as the batch's candidate union orders them.
            for pid, score, bits in zip(
                found.product_ids, found.scores.tolist(), found.sources.tolist(), strict=True
            ):
                for bit, code in _NEIGHBOUR_SOURCES:
                    if bits & bit:
                        cands.item.append(codes.setdefault(pid, len(codes)))
                        cands.source.append(code)
                        cands.score.append(score)


__all__ = ["Recommender", "Scored", "StoreUnavailable", "ratings_from_history", "top_items"]
