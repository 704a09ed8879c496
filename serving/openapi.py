"""The OpenAPI 3 document served at /openapi.json (tests walk it against the real app)."""

from __future__ import annotations

from typing import Any

from recsys.config import Config
from recsys.schema import EVENT_TYPES, ID_MAX_LEN, ID_PATTERN, MAX_QUANTITY

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _resp(description: str, schema: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {JSON: {"schema": _ref(schema)}}}
    if headers:
        out["headers"] = headers
    return out


def _err(description: str) -> dict[str, Any]:
    return _resp(description, "Error")


def _id_param(name: str, example: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "example": example,
        "schema": {"type": "string", "pattern": ID_PATTERN, "maxLength": ID_MAX_LEN},
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def openapi_document(cfg: Config) -> dict[str, Any]:
    """The document for this configuration (page-size cap and batch size come from ``cfg.serving``)."""
    page = _query("page", {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1}, "1-based page")
    size = _query(
        "page_size",
        {
            "type": "integer",
            "minimum": 1,
            "maximum": cfg.serving.max_page_size,
            "default": min(cfg.blend.page_size, cfg.serving.max_page_size),
        },
        "items per page",
    )
    category = _query("category", {"type": "string", "minLength": 1, "maxLength": 200}, "only this category")
    cache_h = {"X-Cache": {"schema": {"type": "string", "enum": ["hit", "miss"]}}}
    degraded_h = {
        "X-Degraded": {
            "description": "present (redis-unavailable) when Redis could not be used",
            "schema": {"type": "string"},
        }
    }
    retry_h = {"Retry-After": {"schema": {"type": "integer"}}}
    bad = _err("a parameter or body field is invalid; error.field names it")
    auth: list[dict[str, list[str]]] = [{"ApiKey": []}]
    write_errors = {
        "400": bad,
        "401": _err("missing or wrong X-API-Key"),
        "403": _err("writes disabled (no key configured)"),
        "413": _err("body larger than serving.max_body_bytes"),
        "415": _err("body is not JSON"),
        "503": _resp("Redis unavailable; nothing recorded", "Error", retry_h),
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "recsys serving API",
            "version": "1.0.0",
            "description": "Recommendations, similar and popular products, and interaction intake.",
        },
        "paths": {
            "/v1/users/{userId}/recommendations": {
                "get": {
                    "operationId": "getRecommendations",
                    "summary": "A user's recommendations (cached or on demand)",
                    "parameters": [_id_param("userId", "U1"), page, size, category],
                    "responses": {
                        "200": _resp(
                            "a page of recommendations", "RecommendationPage", {**cache_h, **degraded_h}
                        ),
                        "400": bad,
                    },
                }
            },
            "/v1/interactions": {
                "post": {
                    "operationId": "postInteractions",
                    "summary": "Record one event or a batch",
                    "security": auth,
                    "requestBody": {
                        "required": True,
                        "content": {
                            JSON: {
                                "schema": {
                                    "oneOf": [
                                        _ref("Event"),
                                        {
                                            "type": "array",
                                            "items": _ref("Event"),
                                            "minItems": 1,
                                            "maxItems": cfg.serving.max_batch,
                                        },
                                    ]
                                },
                                "example": {"user_id": "U1", "product_id": "P1", "event_type": "view"},
                            }
                        },
                    },
                    "responses": {
                        "202": _resp("accepted (appended to the durable stream)", "Accepted"),
                        **write_errors,
                    },
                }
            },
            "/v1/interactions/{eventId}": {
                "put": {
                    "operationId": "putInteraction",
                    "summary": "Update an event (the lake's MERGE semantics)",
                    "security": auth,
                    "parameters": [_id_param("eventId", "e-1")],
                    "requestBody": {
                        "required": True,
                        "content": {
                            JSON: {
                                "schema": _ref("Event"),
                                "example": {
                                    "user_id": "U1",
                                    "product_id": "P1",
                                    "event_type": "purchase",
                                    "quantity": 2,
                                },
                            }
                        },
                    },
                    "responses": {"202": _resp("accepted", "Accepted"), **write_errors},
                }
            },
            "/v1/products/{productId}/similar": {
                "get": {
                    "operationId": "getSimilar",
                    "summary": "Products similar to a product",
                    "parameters": [_id_param("productId", "P1"), page, size],
                    "responses": {
                        "200": _resp("a page of neighbours", "ProductPage", degraded_h),
                        "400": bad,
                        "404": _err("no neighbours known for the product"),
                    },
                }
            },
            "/v1/popular": {
                "get": {
                    "operationId": "getPopular",
                    "summary": "Popular products, overall or in a category",
                    "parameters": [page, size, category],
                    "responses": {
                        "200": _resp("a page of popular products", "ProductPage", degraded_h),
                        "400": bad,
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness",
                    "responses": {"200": _resp("alive", "Health")},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Readiness: Redis reachable, model loaded",
                    "responses": {"200": _resp("ready", "Ready"), "503": _resp("not ready", "Ready")},
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics (all workers)",
                    "responses": {
                        "200": {
                            "description": "text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3 document",
                            "content": {JSON: {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
            "schemas": _schemas(),
        },
    }


def _schemas() -> dict[str, Any]:
    nullable_str = {"type": "string", "nullable": True}
    ident = {"type": "string", "pattern": ID_PATTERN, "maxLength": ID_MAX_LEN}
    page_fields = {
        "page": {"type": "integer"},
        "page_size": {"type": "integer"},
        "total": {"type": "integer"},
        "next_page": {"type": "integer", "nullable": True},
        "items": {"type": "array", "items": _ref("Item")},
    }
    page_required = ["items", "page", "page_size", "total", "next_page"]
    return {
        "Item": {
            "type": "object",
            "required": ["product_id", "score", "sources", "title", "category", "brand", "price"],
            "properties": {
                "product_id": {"type": "string"},
                "score": {"type": "number"},
                "sources": {
                    "type": "array",
                    "items": {"type": "string", "enum": ["cf", "content", "popular", "itemknn"]},
                },
                "title": nullable_str,
                "category": nullable_str,
                "brand": nullable_str,
                "price": {"type": "number", "nullable": True},
            },
        },
        "RecommendationPage": {
            "type": "object",
            "required": ["user_id", *page_required, "model_version", "cached", "cold_start"],
            "properties": {
                "user_id": {"type": "string"},
                **page_fields,
                "model_version": nullable_str,
                "cached": {"type": "boolean"},
                "cold_start": {"type": "boolean"},
            },
        },
        "ProductPage": {
            "type": "object",
            "required": page_required,
            "properties": {"product_id": {"type": "string"}, "category": nullable_str, **page_fields},
        },
        "Event": {
            "type": "object",
            "required": ["user_id", "product_id", "event_type"],
            "additionalProperties": False,
            "properties": {
                "event_id": ident,
                "user_id": ident,
                "product_id": ident,
                "event_type": {"type": "string", "enum": list(EVENT_TYPES)},
                "quantity": {"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY, "default": 1},
                "ts": {
                    "type": "string",
                    "format": "date-time",
                    "description": "ISO-8601 or epoch seconds; defaults to now",
                },
                "session_id": ident,
                "source": {"type": "string", "maxLength": 200},
            },
        },
        "Accepted": {
            "type": "object",
            "required": ["event_ids", "accepted", "duplicates"],
            "properties": {
                "event_ids": {"type": "array", "items": {"type": "string"}},
                "accepted": {"type": "integer"},
                "duplicates": {"type": "array", "items": {"type": "string"}},
            },
        },
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
        "Ready": {
            "type": "object",
            "required": ["status", "redis", "model_loaded", "model_version"],
            "properties": {
                "status": {"type": "string"},
                "redis": {"type": "boolean"},
                "model_loaded": {"type": "boolean"},
                "model_version": nullable_str,
                "model_error": nullable_str,
            },
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "field": {"type": "string"},
                        "request_id": {"type": "string"},
                    },
                }
            },
        },
    }
