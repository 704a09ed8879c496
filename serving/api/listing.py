"""Turning a ranked list into a JSON page: category filter, product details, pagination."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from recsys.encoding import SOURCE_BITS, RankedList
from recsys.keys import category_slug
from serving.params import Page
from serving.store import RedisStore, StoreUnavailable

log = logging.getLogger(__name__)

DEGRADED_HEADER = "X-Degraded"
DEGRADED_VALUE = "redis-unavailable"
# The source names of every sources bitmask (RankedList.source_names without the per-item loop).
_SOURCE_NAMES = [[name for name, bit in SOURCE_BITS.items() if bits & bit] for bits in range(256)]


def page_of(
    ranked: RankedList,
    page: Page,
    store: RedisStore,
    *,
    category: str | None,
    degraded: bool,
    details: Mapping[int, dict[str, Any] | None] | None = None,
) -> tuple[dict[str, Any], bool]:
    """The ``items``, ``page``, ``page_size``, ``total`` and ``next_page`` fields of a list response.

    Product details come from the ``product:{id}`` hashes (one pipelined HMGET); when Redis fails here the
    items are returned without details and the second value is True (the answer is degraded).

    Args:
        ranked: The whole list, best first.
        page: The page asked for.
        store: Where product details are read.
        category: Keep only products of this category (compared by its key-safe slug).
        degraded: Redis is known to be down: do not try it.
        details: Details already read, by list position (the cache hit's script); used when no category
            filter applies, the others are read from the store.
    """
    rows = list(range(len(ranked.product_ids)))
    have: dict[int, dict[str, Any] | None] = dict(details) if details and category is None else {}
    try:
        if category is not None:
            if degraded:
                rows = []
            else:
                found = store.products(ranked.product_ids)
                wanted = category_slug(category)
                rows = [i for i in rows if _category_slug(found[i]) == wanted]
                have = {i: found[i] for i in rows}
        start, stop, next_page = page.window(len(rows))
        chosen = rows[start:stop]
        missing = [i for i in chosen if i not in have]
        if missing and not degraded:
            for i, d in zip(missing, store.products([ranked.product_ids[i] for i in missing]), strict=True):
                have[i] = d
    except StoreUnavailable:
        degraded = True
        start, stop, next_page = page.window(len(rows))
        chosen = rows[start:stop]
    items = _items(ranked, chosen, have)
    body = {
        "items": items,
        "page": page.page,
        "page_size": page.page_size,
        "total": len(rows),
        "next_page": next_page,
    }
    return body, degraded


def _category_slug(details: dict[str, Any] | None) -> str | None:
    category = details.get("category") if details else None
    return category_slug(category) if category and category.strip() else None


def _items(
    ranked: RankedList, chosen: list[int], details: Mapping[int, dict[str, Any] | None]
) -> list[dict[str, Any]]:
    ids = ranked.product_ids
    out = []
    # Scores and sources of the page converted in one call each: numpy scalar indexing per item cost more.
    for i, score, bits in zip(chosen, ranked.scores[chosen].tolist(), ranked.sources[chosen].tolist(), strict=True):
        d = details.get(i)
        out.append(
            {
                "product_id": ids[i],
                "score": round(score, 6),
                "sources": list(_SOURCE_NAMES[bits]),
                "title": d["title"] if d else None,
                "category": d["category"] if d else None,
                "brand": d["brand"] if d else None,
                "price": d["price"] if d else None,
            }
        )
    return out
