"""GET /v1/users/{userId}/recommendations: the cached list, or one computed on demand on a miss."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from serving.api.listing import DEGRADED_HEADER, DEGRADED_VALUE, page_of
from serving.ondemand import Scored
from serving.params import category_param, check_known, page_params, path_id
from serving.services import services
from serving.store import StoreUnavailable

log = logging.getLogger(__name__)
bp = Blueprint("recommendations", __name__)


@bp.get("/v1/users/<user_id>/recommendations")
def recommendations(user_id: str) -> ResponseReturnValue:
    s = services()
    check_known(request.args, ("page", "page_size", "category"))
    user_id = path_id("user_id", user_id)
    page = page_params(request.args, default_size=s.cfg.blend.page_size, max_size=s.cfg.serving.max_page_size)
    category = category_param(request.args)
    scored, hit, degraded = _lookup(user_id, category)
    body, degraded = page_of(
        scored.ranked, page, s.store, category=None if scored.in_category else category, degraded=degraded
    )
    body = {
        "user_id": user_id,
        **body,
        "model_version": scored.model_version,
        "cached": hit,
        "cold_start": scored.kind in ("cold_start", "fallback"),
    }
    headers = {"X-Cache": "hit" if hit else "miss"}
    if degraded:
        headers[DEGRADED_HEADER] = DEGRADED_VALUE
        s.metrics.degraded.labels("recommendations").inc()
    return jsonify(body), 200, headers


def _lookup(user_id: str, category: str | None) -> tuple[Scored, bool, bool]:
    """``(list, cache hit, degraded)``: the cache, else on-demand (stored with the TTL), else degraded."""
    s = services()
    try:
        cached, version = s.store.cached_recs(user_id)
        if cached is not None:
            s.metrics.cache_requests.labels("hit").inc()
            return Scored(cached, version, "cached"), True, False
        s.metrics.cache_requests.labels("miss").inc()
        started = time.perf_counter()
        scored = s.recommender.for_user(user_id, category=category)
        s.metrics.ondemand_seconds.labels(scored.kind).observe(time.perf_counter() - started)
    except StoreUnavailable:
        s.metrics.cache_requests.labels("error").inc()
        return s.recommender.degraded(user_id, category=category), False, True
    if scored.kind == "personal":
        try:
            s.store.store_recs(user_id, scored.ranked)
        except StoreUnavailable:
            return scored, False, True
    return scored, False, False
