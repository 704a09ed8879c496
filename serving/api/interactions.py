"""POST /v1/interactions (one event or a batch) and PUT /v1/interactions/{eventId}: idempotent writes."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from recsys.schema import COL_EVENT_ID, ValidationError, validate_event
from serving.auth import require_api_key
from serving.errors import ApiError, bad_request
from serving.params import check_known, path_id
from serving.services import services
from serving.store import StoreUnavailable

log = logging.getLogger(__name__)
bp = Blueprint("interactions", __name__)


@bp.post("/v1/interactions")
@require_api_key
def post_interactions() -> ResponseReturnValue:
    s = services()
    check_known(request.args, ())
    body = _json_body()
    batch = isinstance(body, list)
    raws = body if batch else [body]
    if batch and not 1 <= len(raws) <= s.cfg.serving.max_batch:
        raise bad_request("body", f"a batch holds 1 to {s.cfg.serving.max_batch} events (got {len(raws)})")
    events = [_validated(raw, f"[{i}]." if batch else "") for i, raw in enumerate(raws)]
    for ev in events:
        if ev[COL_EVENT_ID] is None:
            ev[COL_EVENT_ID] = uuid.uuid4().hex
    fresh = _append(events, replace=False)
    s.metrics.events.labels("accepted").inc(sum(fresh))
    s.metrics.events.labels("duplicate").inc(len(fresh) - sum(fresh))
    return jsonify(
        {
            "event_ids": [ev[COL_EVENT_ID] for ev in events],
            "accepted": sum(fresh),
            "duplicates": [ev[COL_EVENT_ID] for ev, new in zip(events, fresh, strict=True) if not new],
        }
    ), 202


@bp.put("/v1/interactions/<event_id>")
@require_api_key
def put_interaction(event_id: str) -> ResponseReturnValue:
    s = services()
    check_known(request.args, ())
    event_id = path_id("event_id", event_id)
    body = _json_body()
    if not isinstance(body, dict):
        raise bad_request("body", "must be one event (a JSON object)")
    if body.get(COL_EVENT_ID, event_id) != event_id:
        raise bad_request(COL_EVENT_ID, "differs from the event id in the path")
    ev = _validated({**body, COL_EVENT_ID: event_id}, "")
    _append([ev], replace=True)
    s.metrics.events.labels("updated").inc()
    return jsonify({"event_ids": [event_id], "accepted": 1, "duplicates": []}), 202


def _json_body() -> Any:
    if not request.is_json:
        raise ApiError(
            415,
            "unsupported_media_type",
            "the body must be JSON (Content-Type: application/json)",
            field="body",
        )
    body = request.get_json(silent=True)
    if body is None:
        raise bad_request("body", "not valid JSON")
    if not isinstance(body, dict | list):
        raise bad_request("body", "must be one event (a JSON object) or a batch (a JSON array)")
    return body


def _validated(raw: Any, prefix: str) -> dict[str, Any]:
    s = services()
    try:
        return validate_event(raw, max_age_days=s.cfg.lake.max_event_age_days)
    except ValidationError as exc:
        raise bad_request(prefix + exc.field, exc.message) from exc


def _append(events: list[dict[str, Any]], *, replace: bool) -> list[bool]:
    s = services()
    try:
        return s.store.append_events(events, replace=replace)
    except StoreUnavailable as exc:
        retry = str(s.cfg.serving.retry_after_s)
        raise ApiError(
            503,
            "store_unavailable",
            "the event store is unavailable; nothing was recorded, retry",
            headers={"Retry-After": retry},
        ) from exc
