"""Column names, event types and the validation rules shared by the lake's quality gates and the API.

The API validates a POSTed event with :func:`validate_event`; the ingest job expresses the same rules as
great-expectations expectations built from the constants here, so the two cannot drift apart.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

# Column names (Microsoft Recommenders style: one place, used everywhere).
COL_EVENT_ID = "event_id"
COL_USER = "user_id"
COL_ITEM = "product_id"
COL_EVENT_TYPE = "event_type"
COL_QUANTITY = "quantity"
COL_TS = "ts"
COL_SESSION = "session_id"
COL_SOURCE = "source"
COL_INGESTED_AT = "ingested_at"
COL_USER_BUCKET = "user_bucket"

COL_TITLE = "title"
COL_CATEGORY = "category"
COL_BRAND = "brand"
COL_PRICE = "price"
COL_AVAILABLE = "available"
COL_UPDATED_AT = "updated_at"

EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase")

# Ids end up in Redis key names and file paths: a bounded length and a safe charset keep them inert.
ID_MAX_LEN = 64
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$"
ID_RE = re.compile(ID_PATTERN)
MAX_QUANTITY = 100_000
MAX_FUTURE_SKEW = timedelta(minutes=10)
TITLE_MAX_LEN = 500
TEXT_MAX_LEN = 200

INTERACTION_FIELDS: tuple[str, ...] = (
    COL_EVENT_ID, COL_USER, COL_ITEM, COL_EVENT_TYPE, COL_QUANTITY, COL_TS, COL_SESSION, COL_SOURCE,
)
PRODUCT_FIELDS: tuple[str, ...] = (
    COL_ITEM, COL_TITLE, COL_CATEGORY, COL_BRAND, COL_PRICE, COL_AVAILABLE,
)


class ValidationError(ValueError):
    """An input value breaks a rule; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def is_valid_id(value: object) -> bool:
    """True when ``value`` is a non-empty id of bounded length and safe charset."""
    return isinstance(value, str) and 0 < len(value) <= ID_MAX_LEN and ID_RE.match(value) is not None


def check_id(field: str, value: object) -> str:
    """Returns ``value`` when it is a valid id, else raises :class:`ValidationError` naming ``field``."""
    if not is_valid_id(value):
        raise ValidationError(
            field, f"must be 1-{ID_MAX_LEN} characters of letters, digits and _ . : - (got {value!r:.80})"
        )
    return str(value)


def parse_ts(field: str, value: object) -> datetime:
    """Parses an ISO-8601 timestamp (or epoch seconds) into an aware UTC datetime."""
    if isinstance(value, bool):
        raise ValidationError(field, "must be an ISO-8601 timestamp or epoch seconds")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValidationError(field, "must be finite")
        return datetime.fromtimestamp(value, tz=UTC)
    if not isinstance(value, str):
        raise ValidationError(field, "must be an ISO-8601 timestamp or epoch seconds")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationError(field, f"not an ISO-8601 timestamp: {value!r:.40}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def validate_event(
    raw: Mapping[str, Any], *, now: datetime | None = None, max_age_days: int = 3650
) -> dict[str, Any]:
    """Validates one interaction event with the lake's rules and returns it normalised.

    Args:
        raw: The event as sent by a client: user_id, product_id, event_type, optional event_id, quantity,
            ts, session_id and source.
        now: The reference time for the future/too-old checks (defaults to the current UTC time).
        max_age_days: Events older than this are rejected.

    Returns:
        A dict with every field of :data:`INTERACTION_FIELDS`; ``event_id`` is ``None`` when not sent.

    Raises:
        ValidationError: The first rule broken, naming its field.

    Example:
        >>> validate_event({"user_id": "u1", "product_id": "p1", "event_type": "view"})["quantity"]
        1
    """
    if not isinstance(raw, Mapping):
        raise ValidationError("body", "each event must be a JSON object")
    unknown = sorted(set(raw) - set(INTERACTION_FIELDS))
    if unknown:
        raise ValidationError(unknown[0], "unknown field")
    now = now or datetime.now(UTC)
    event_id = raw.get(COL_EVENT_ID)
    out: dict[str, Any] = {
        COL_EVENT_ID: None if event_id is None else check_id(COL_EVENT_ID, event_id),
        COL_USER: check_id(COL_USER, raw.get(COL_USER)),
        COL_ITEM: check_id(COL_ITEM, raw.get(COL_ITEM)),
    }
    event_type = raw.get(COL_EVENT_TYPE)
    if event_type not in EVENT_TYPES:
        raise ValidationError(COL_EVENT_TYPE, f"must be one of {', '.join(EVENT_TYPES)}")
    out[COL_EVENT_TYPE] = event_type
    quantity = raw.get(COL_QUANTITY, 1)
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 0 < quantity <= MAX_QUANTITY:
        raise ValidationError(COL_QUANTITY, f"must be an integer from 1 to {MAX_QUANTITY}")
    out[COL_QUANTITY] = quantity
    ts = parse_ts(COL_TS, raw[COL_TS]) if raw.get(COL_TS) is not None else now
    if ts > now + MAX_FUTURE_SKEW:
        raise ValidationError(COL_TS, "is in the future")
    if ts < now - timedelta(days=max_age_days):
        raise ValidationError(COL_TS, f"is older than {max_age_days} days")
    out[COL_TS] = ts
    session = raw.get(COL_SESSION)
    out[COL_SESSION] = None if session is None else check_id(COL_SESSION, session)
    source = raw.get(COL_SOURCE, "api")
    if not isinstance(source, str) or not 0 < len(source) <= TEXT_MAX_LEN:
        raise ValidationError(COL_SOURCE, f"must be a string of 1-{TEXT_MAX_LEN} characters")
    out[COL_SOURCE] = source
    return out
