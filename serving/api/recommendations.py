"""GET /v1/users/{userId}/recommendations: the cached list, or one computed on demand on a miss."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from serving.api.listing import DEGRADED_HEADER, DEGRADED_VALUE, page_of
from serving.ondemand import Scored
from serving.params import Page, category_param, check_known, page_params, path_id
from serving.services import services
from serving.store import StoreUnavailable

log = logging.getLogger(__name__)
bp = Blueprint("recommendations", __name__)
_HIT_HEADERS = {"X-Cache": "hit"}
_MISS_HEADERS = {"X-Cache": "miss"}


@bp.get("/v1/users/<user_id>/recommendations")
def recommendations(user_id: str) -> ResponseReturnValue:
    s = services()
    args = request.args
    check_known(args, ("page", "page_size", "category"))
    user_id = path_id("user_id", user_id)
    page = page_params(args, default_size=s.cfg.blend.page_size, max_size=s.cfg.serving.max_page_size)
    category = category_param(args)
    token = 0
    if category is None:
        try:
            rendered, token = s.store.near_page(user_id, page)
        except StoreUnavailable:
            rendered = None
        if rendered is not None:  # this worker rendered the page and Redis has not changed its keys since
            s.metrics.child(s.metrics.cache_requests, "hit").inc()
            return current_app.response_class(rendered, headers=_HIT_HEADERS, content_type="application/json")
    scored, hit, degraded, details = _lookup(user_id, category, page)
    body, degraded = page_of(
        scored.ranked,
        page,
        s.store,
        category=None if scored.in_category else category,
        degraded=degraded,
        details=details,
    )
    body = {
        "user_id": user_id,
        **body,
        "model_version": scored.model_version,
        "cached": hit,
        "cold_start": scored.kind in ("cold_start", "fallback"),
    }
    response = jsonify(body)
    if degraded:
        s.metrics.child(s.metrics.degraded, "recommendations").inc()
        return response, 200, {"X-Cache": "hit" if hit else "miss", DEGRADED_HEADER: DEGRADED_VALUE}
    if hit and category is None:
        s.store.keep_page(user_id, page, scored.model_version, response.get_data(), token)
    return response, 200, _HIT_HEADERS if hit else _MISS_HEADERS


def _lookup(user_id: str, category: str | None, page: Page) -> tuple[Scored, bool, bool, dict[int, Any]]:
    """``(list, cache hit, degraded, details)``: the cache, else on-demand (stored with the TTL), else degraded.

    Without a category filter, a cached list comes with the details of the page's products (one round trip);
    ``details`` maps list positions to them.
    """
    s = services()
    m = s.metrics
    try:
        if category is None:
            start = (page.page - 1) * page.page_size
            cached, details, version = s.store.cached_page(user_id, start, start + page.page_size)
        else:
            (cached, version), details = s.store.cached_recs(user_id), {}
        if cached is not None:
            m.child(m.cache_requests, "hit").inc()
            return Scored(cached, version, "cached"), True, False, details
        m.child(m.cache_requests, "miss").inc()
        started = time.perf_counter()
        scored = s.recommender.for_user(user_id, category=category)
        m.child(m.ondemand_seconds, scored.kind).observe(time.perf_counter() - started)
    except StoreUnavailable:
        m.child(m.cache_requests, "error").inc()
        return s.recommender.degraded(user_id, category=category), False, True, {}
    if scored.kind == "personal":
        try:
            s.store.store_recs(user_id, scored.ranked)
        except StoreUnavailable:
            return scored, False, True, {}
    return scored, False, False, {}
