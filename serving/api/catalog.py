"""GET /v1/products/{productId}/similar and GET /v1/popular."""

from __future__ import annotations

import logging
import time

import numpy as np
from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from recsys import keys
from recsys.encoding import SOURCE_BITS, RankedList
from serving.api.listing import DEGRADED_HEADER, DEGRADED_VALUE, page_of
from serving.errors import ApiError
from serving.params import category_param, check_known, page_params, path_id
from serving.services import services
from serving.store import StoreUnavailable

log = logging.getLogger(__name__)
bp = Blueprint("catalog", __name__)


@bp.get("/v1/products/<product_id>/similar")
def similar(product_id: str) -> ResponseReturnValue:
    s = services()
    check_known(request.args, ("page", "page_size"))
    product_id = path_id("product_id", product_id)
    page = page_params(request.args, default_size=s.cfg.blend.page_size, max_size=s.cfg.serving.max_page_size)
    degraded = False
    try:
        ranked = s.store.ranked(keys.similar_key(product_id))
    except StoreUnavailable:
        ranked, degraded = None, True
    if ranked is None:
        ranked = _factor_neighbours(product_id, s.cfg.content.top_k)
    if ranked is None:
        if degraded:
            ranked = RankedList([], np.zeros(0, np.float32), np.zeros(0, np.uint8), time.time())
        else:
            raise ApiError(
                404, "not_found", f"product_id: no neighbours known for {product_id!r}", field="product_id"
            )
    body, degraded = page_of(ranked, page, s.store, category=None, degraded=degraded)
    return _answer({"product_id": product_id, **body}, degraded, "similar")


@bp.get("/v1/popular")
def popular() -> ResponseReturnValue:
    s = services()
    check_known(request.args, ("page", "page_size", "category"))
    page = page_params(request.args, default_size=s.cfg.blend.page_size, max_size=s.cfg.serving.max_page_size)
    category = category_param(request.args)
    degraded = False
    try:
        ranked = s.store.popular(category)
    except StoreUnavailable:
        ranked, degraded = s.store.last_popular(category), True
    if ranked is None:
        ranked = RankedList([], np.zeros(0, np.float32), np.zeros(0, np.uint8), time.time())
    body, degraded = page_of(ranked, page, s.store, category=None, degraded=degraded)
    return _answer({"category": category, **body}, degraded, "popular")


def _answer(body: dict[str, object], degraded: bool, endpoint: str) -> ResponseReturnValue:
    headers = {}
    if degraded:
        headers[DEGRADED_HEADER] = DEGRADED_VALUE
        services().metrics.degraded.labels(endpoint).inc()
    return jsonify(body), 200, headers


def _factor_neighbours(product_id: str, k: int) -> RankedList | None:
    """Cosine neighbours in the ALS item-factor space when the load job wrote no list for the product."""
    bundle = services().models.get()
    if bundle is None or product_id not in bundle.item_index:
        return None
    y = np.asarray(bundle.item_factors)
    row = bundle.item_index[product_id]
    norms = np.linalg.norm(y, axis=1)
    norms[norms == 0] = 1.0
    sims = (y @ y[row]) / (norms * norms[row])
    sims[row] = -np.inf
    k = min(k, len(sims) - 1)
    if k <= 0:
        return None
    idx = np.argpartition(-sims, k - 1)[:k]
    idx = idx[np.argsort(-sims[idx], kind="stable")]
    return RankedList(
        [str(bundle.item_ids[i]) for i in idx],
        sims[idx].astype(np.float32),
        np.full(len(idx), SOURCE_BITS["cf"], np.uint8),
        time.time(),
    )
