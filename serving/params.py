"""Query-string parsing shared by the list endpoints: every bad value is a 400 naming the parameter."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from recsys.keys import CATEGORY_MAX_LEN
from recsys.schema import ValidationError, check_id
from serving.errors import bad_request

MAX_PAGE = 10_000


class Page(NamedTuple):
    """A page of a list (a tuple: building it is cheaper than a frozen dataclass on the cache-hit path)."""

    page: int
    page_size: int

    def window(self, total: int) -> tuple[int, int, int | None]:
        """``(start, stop, next_page)`` of this page in a list of ``total`` items."""
        start = (self.page - 1) * self.page_size
        stop = min(start + self.page_size, total)
        return start, max(start, stop), self.page + 1 if stop < total else None


def check_known(args: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """A 400 naming the first query parameter the endpoint does not know (typos are not ignored)."""
    if not args:
        return
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise bad_request(unknown[0], "unknown query parameter")


def int_param(args: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 9:
        raise bad_request(name, f"must be an integer from {lo} to {hi} (got {raw!r:.40})")
    value = int(raw)
    if not lo <= value <= hi:
        raise bad_request(name, f"must be an integer from {lo} to {hi} (got {value})")
    return value


def page_params(args: Mapping[str, str], *, default_size: int, max_size: int) -> Page:
    """``page`` (>= 1) and ``page_size`` (1..max_size)."""
    if not args:
        return Page(1, min(default_size, max_size))
    return Page(
        page=int_param(args, "page", 1, 1, MAX_PAGE),
        page_size=int_param(args, "page_size", min(default_size, max_size), 1, max_size),
    )


def category_param(args: Mapping[str, str]) -> str | None:
    raw = args.get("category")
    if raw is None:
        return None
    if not raw.strip() or len(raw) > CATEGORY_MAX_LEN or any(ord(c) < 32 for c in raw):
        raise bad_request("category", f"must be a non-blank name of at most {CATEGORY_MAX_LEN} characters")
    return raw


def path_id(field: str, value: str) -> str:
    """An id from the URL path, checked with the lake's id rule (so it cannot reshape a Redis key)."""
    try:
        return check_id(field, value)
    except ValidationError as exc:
        raise bad_request(field, exc.message) from exc
