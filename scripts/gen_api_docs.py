"""Generates docs/api.md from the OpenAPI document the API serves (serving/openapi.py).

`make docs` runs it; tests/test_docs.py fails when docs/api.md differs from what this script writes.
The hand-written conventions (errors, ids, pagination, degradation) are included from docs/api-conventions.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys.config import load_config  # noqa: E402
from serving.openapi import openapi_document  # noqa: E402

OUT = ROOT / "docs" / "api.md"
CONVENTIONS = ROOT / "docs" / "api-conventions.md"
METHODS = ("get", "post", "put", "delete", "patch")


def _schema_text(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return f"[{schema['$ref'].rsplit('/', 1)[1]}](#{schema['$ref'].rsplit('/', 1)[1].lower()})"
    parts = [str(schema.get("type", "object"))]
    for key in ("enum", "minimum", "maximum", "minLength", "maxLength", "pattern", "default"):
        if key in schema:
            parts.append(f"{key} {json.dumps(schema[key])}")
    if schema.get("type") == "array" and "items" in schema:
        parts.append(f"of {_schema_text(schema['items'])}")
    if "oneOf" in schema:
        parts = ["one of " + ", ".join(_schema_text(s) for s in schema["oneOf"])]
    return ", ".join(parts).replace("|", "\\|")


def _operation(path: str, method: str, op: dict[str, Any]) -> list[str]:
    lines = [f"### {method.upper()} {path}", ""]
    if op.get("summary"):
        lines += [op["summary"], ""]
    if op.get("description"):
        lines += [op["description"], ""]
    if op.get("security"):
        lines += ["Requires the `X-API-Key` header.", ""]
    params = op.get("parameters", [])
    if params:
        lines += ["| parameter | in | required | schema | description |", "|---|---|---|---|---|"]
        for p in params:
            lines.append(
                f"| `{p['name']}` | {p['in']} | {'yes' if p.get('required') else 'no'} | "
                f"{_schema_text(p.get('schema', {}))} | {p.get('description', '')} |"
            )
        lines.append("")
    body = op.get("requestBody")
    if body:
        for media, content in body.get("content", {}).items():
            lines += [f"Request body ({media}): {_schema_text(content.get('schema', {}))}", ""]
    lines += ["| status | meaning | body | headers |", "|---|---|---|---|"]
    for status, resp in op.get("responses", {}).items():
        schema = next(iter(resp.get("content", {}).values()), {}).get("schema")
        headers = ", ".join(f"`{h}`" for h in resp.get("headers", {}))
        lines.append(
            f"| {status} | {resp.get('description', '')} | {_schema_text(schema) if schema else ''} | {headers} |"
        )
    return [*lines, ""]


def render() -> str:
    doc = openapi_document(load_config(ROOT / "conf" / "base.yaml", env={}))
    lines = [
        "# HTTP API",
        "",
        "Generated from the OpenAPI document served at `GET /openapi.json` (`serving/openapi.py`) by `make docs`",
        "(`scripts/gen_api_docs.py`); a test fails when this page is stale, and another calls every operation of",
        f"the document against the real app. {doc['info'].get('description', '')}",
        "",
        CONVENTIONS.read_text().rstrip(),
        "",
        "## Operations",
        "",
    ]
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                lines += _operation(path, method, item[method])
    lines += ["## Schemas", ""]
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        lines += [f"### {name}", ""]
        props = schema.get("properties", {})
        if not props:
            lines += [_schema_text(schema), ""]
            continue
        required = set(schema.get("required", []))
        lines += ["| field | required | schema |", "|---|---|---|"]
        for field, sub in props.items():
            lines.append(f"| `{field}` | {'yes' if field in required else 'no'} | {_schema_text(sub)} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    OUT.write_text(render())
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
