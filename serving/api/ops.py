"""Operations: GET /healthz (liveness), /readyz (readiness), /metrics (Prometheus), /openapi.json."""

from __future__ import annotations

import contextlib

from flask import Blueprint, Response, jsonify
from flask.typing import ResponseReturnValue

from serving.openapi import openapi_document
from serving.services import services
from serving.store import StoreUnavailable

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """The process answers; says nothing about its dependencies (that is /readyz)."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """200 when Redis answers PING and an ALS bundle is loaded, else 503 naming what is missing."""
    s = services()
    try:
        redis_ok = s.store.ping()
    except StoreUnavailable:
        redis_ok = False
    bundle = s.models.get()
    ready = redis_ok and bundle is not None
    body = {
        "status": "ready" if ready else "not_ready",
        "redis": redis_ok,
        "model_loaded": bundle is not None,
        "model_version": bundle.model_version if bundle else None,
        "model_error": None if bundle else s.models.last_error,
    }
    return jsonify(body), 200 if ready else 503


@bp.get("/metrics")
def metrics() -> ResponseReturnValue:
    s = services()
    s.models.get()  # keeps the model gauges current on a worker that only gets scraped
    # When Redis is down the scrape still answers; recsys_redis_errors_total counts the failure.
    with contextlib.suppress(StoreUnavailable):
        s.metrics.stream_pending.set(s.store.stream_backlog(s.cfg.serving.stream_group))
    payload, content_type = s.metrics.exposition()
    return Response(payload, content_type=content_type)


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    return jsonify(openapi_document(services().cfg))
