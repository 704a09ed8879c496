"""API-key check of the write endpoints (constant-time comparison)."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any, TypeVar

from flask import request

from serving.errors import ApiError
from serving.services import services

F = TypeVar("F", bound=Callable[..., Any])
HEADER = "X-API-Key"


def require_api_key(view: F) -> F:
    """Rejects the request unless ``X-API-Key`` equals ``serving.api_key``.

    An empty ``serving.api_key`` disables writes (403) rather than leaving them open.
    """

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        expected = services().cfg.serving.api_key
        if not expected:
            raise ApiError(403, "writes_disabled", "writes are disabled: serving.api_key is not configured")
        sent = request.headers.get(HEADER, "")
        if not hmac.compare_digest(sent.encode("utf-8", "replace"), expected.encode("utf-8")):
            raise ApiError(
                401, "unauthorized", f"missing or wrong {HEADER} header", headers={"WWW-Authenticate": HEADER}
            )
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
