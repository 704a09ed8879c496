"""JSON errors everywhere: one exception type for the views and handlers that never leak a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, g, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from recsys.schema import ValidationError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message", "field"?}}`` with ``status``.

    Example:
        >>> raise ApiError(400, "invalid_parameter", "must be a positive integer", field="page")
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


def bad_request(field: str, message: str) -> ApiError:
    """A 400 naming the parameter or body field at fault."""
    return ApiError(400, "invalid_parameter", f"{field}: {message}", field=field)


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        err["field"] = field
    rid = g.get("request_id")
    if rid:
        err["request_id"] = rid
    return {"error": err}


def register_error_handlers(app: Flask) -> None:
    """Installs the handlers: ApiError, ValidationError, any HTTP error, and a last-resort 500."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> ResponseReturnValue:
        return jsonify(error_body(exc.code, exc.message, exc.field)), exc.status, exc.headers

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError) -> ResponseReturnValue:
        return jsonify(error_body("invalid_parameter", str(exc), exc.field)), 400

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ResponseReturnValue:
        code = (exc.name or "error").lower().replace(" ", "_")
        headers = {k: v for k, v in exc.get_headers() if k == "Allow"}
        return jsonify(error_body(code, exc.description or exc.name)), exc.code or 500, headers

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> ResponseReturnValue:
        # Logged with the traceback (and the request id) for the operator; the client sees no internals.
        log.exception("unhandled error")
        return jsonify(error_body("internal_error", "internal error; quote the request id")), 500
