"""Turning a ranked list into a JSON page: category filter, product details, pagination."""

from __future__ import annotations

import logging
from typing import Any

from recsys.encoding import RankedList
from recsys.keys import category_slug
from serving.params import Page
from serving.store import RedisStore, StoreUnavailable

log = logging.getLogger(__name__)

DEGRADED_HEADER = "X-Degraded"
DEGRADED_VALUE = "redis-unavailable"


def page_of(
    ranked: RankedList, page: Page, store: RedisStore, *, category: str | None, degraded: bool
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
    """
    rows = list(range(len(ranked.product_ids)))
    details: dict[int, dict[str, Any] | None] = {}
    try:
        if category is not None:
            if degraded:
                rows = []
            else:
                found = store.products(ranked.product_ids)
                wanted = category_slug(category)
                rows = [i for i in rows if _category_slug(found[i]) == wanted]
                details = {i: found[i] for i in rows}
        start, stop, next_page = page.window(len(rows))
        chosen = rows[start:stop]
        missing = [i for i in chosen if i not in details]
        if missing and not degraded:
            for i, d in zip(missing, store.products([ranked.product_ids[i] for i in missing]), strict=True):
                details[i] = d
    except StoreUnavailable:
        degraded = True
        start, stop, next_page = page.window(len(rows))
        chosen = rows[start:stop]
    items = [_item(ranked, i, details.get(i)) for i in chosen]
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


def _item(ranked: RankedList, i: int, d: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "product_id": ranked.product_ids[i],
        "score": round(float(ranked.scores[i]), 6),
        "sources": ranked.source_names(i),
        "title": d["title"] if d else None,
        "category": d["category"] if d else None,
        "brand": d["brand"] if d else None,
        "price": d["price"] if d else None,
    }
