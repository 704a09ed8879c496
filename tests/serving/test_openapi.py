"""The OpenAPI document matches the real behaviour: every operation is called and its answer checked."""

from __future__ import annotations

import re
from typing import Any

import pytest

pytestmark = [pytest.mark.redis, pytest.mark.spark]

TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "integer": int,
    "number": (int, float),
}


def check(doc: dict, schema: dict, value: Any, where: str = "$") -> None:
    """A small JSON-schema subset checker: $ref, type, nullable, required, properties, items, enum, oneOf."""
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if "oneOf" in schema:
        errors = []
        for option in schema["oneOf"]:
            try:
                check(doc, option, value, where)
                return
            except AssertionError as exc:
                errors.append(str(exc))
        raise AssertionError(f"{where}: matches no oneOf option: {errors}")
    if value is None:
        assert schema.get("nullable"), f"{where}: null but not nullable"
        return
    expected = TYPES[schema["type"]]
    assert isinstance(value, expected) and not (
        schema["type"] in ("integer", "number") and isinstance(value, bool)
    ), f"{where}: {value!r} not {schema['type']}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if schema["type"] == "object":
        for name in schema.get("required", []):
            assert name in value, f"{where}: missing {name}"
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(props), f"{where}: extra {set(value) - set(props)}"
        for name, sub in props.items():
            if name in value:
                check(doc, sub, value[name], f"{where}.{name}")
    if schema["type"] == "array":
        for i, item in enumerate(value):
            check(doc, schema["items"], item, f"{where}[{i}]")


def _url(path: str, operation: dict) -> str:
    for p in operation.get("parameters", []):
        if p["in"] == "path":
            path = path.replace("{" + p["name"] + "}", p["example"])
    return path


def test_every_operation_answers_as_documented(client, auth) -> None:
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    called = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            kwargs: dict[str, Any] = {}
            if "requestBody" in op:
                kwargs["json"] = op["requestBody"]["content"]["application/json"]["example"]
                check(doc, op["requestBody"]["content"]["application/json"]["schema"], kwargs["json"])
            if op.get("security"):
                kwargs["headers"] = auth
            r = client.open(_url(path, op), method=method.upper(), **kwargs)
            assert str(r.status_code) in op["responses"], f"{method} {path}: undocumented {r.status_code}"
            documented = op["responses"][str(r.status_code)]
            for header in documented.get("headers", {}):
                if header in ("X-Cache",):
                    assert header in r.headers, f"{method} {path}: header {header} missing"
            content = documented["content"]
            if "application/json" in content:
                check(doc, content["application/json"]["schema"], r.get_json(), f"{method} {path}")
            else:
                assert r.mimetype == "text/plain"
            called += 1
    assert called == 9


def test_documented_errors_happen(client, auth) -> None:
    doc = client.get("/openapi.json").get_json()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            params = {p["name"]: p for p in op.get("parameters", [])}
            if "page_size" in params:
                cap = params["page_size"]["schema"]["maximum"]
                r = client.open(_url(path, op) + f"?page_size={cap + 1}", method=method.upper())
                assert r.status_code == 400 and "400" in op["responses"]
                check(doc, op["responses"]["400"]["content"]["application/json"]["schema"], r.get_json())
                assert r.get_json()["error"]["field"] == "page_size"
            if op.get("security"):
                r = client.open(_url(path, op), method=method.upper(), json={})
                assert r.status_code == 401 and "401" in op["responses"]
                r = client.open(_url(path, op), method=method.upper(), json={"bad": 1}, headers=auth)
                assert r.status_code == 400 and r.get_json()["error"]["field"] in ("bad", "user_id")
    assert re.match(r"^\^", doc["components"]["schemas"]["Event"]["properties"]["user_id"]["pattern"])


def test_404_and_405_are_json(client) -> None:
    r = client.get("/v1/nothing-here")
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
    r = client.delete("/v1/popular")
    assert r.status_code == 405 and r.get_json()["error"]["code"] == "method_not_allowed"
    assert "GET" in r.headers["Allow"]
