"""``/api/docs``: the API's OpenAPI document as a readable page.

Rendered on the server from the very document ``/api/v1/openapi.json``
serves, so the two never disagree. No JavaScript and nothing from a CDN: it
works offline and under the app's strict Content-Security-Policy as it is.
Public, like the document: it describes the API and grants nothing, and a
script's author may not have a dashboard account at all.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from flask import render_template, request
from markupsafe import Markup, escape

from webapp.api import openapi
from webapp.http.api_paths import public
from webapp.web import bp

_CODE = re.compile(r"`([^`]+)`")
_METHODS = ("get", "post", "put", "patch", "delete")
# Badge colours borrowed from the audit operations (app.css .op-*).
_METHOD_CLASS = {
    "get": "op",
    "post": "op op-create",
    "put": "op op-update",
    "patch": "op op-update",
    "delete": "op op-delete",
}


@bp.get("/api/docs")
@public
def api_docs() -> str:
    document = openapi.document()
    base_url = request.url_root.rstrip("/") + document["servers"][0]["url"]
    return render_template(
        "api/docs.html",
        info=document["info"],
        base_url=base_url,
        groups=_operations_by_tag(document, base_url),
        schemas=_schemas(document),
        schemes=document["components"]["securitySchemes"],
    )


@bp.app_template_filter("api_text")
def api_text(text: str | None) -> Markup:
    """Escaped text with `backticks` as <code>, paragraphs on blank lines."""
    if not text:
        return Markup("")
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    html = []
    for paragraph in paragraphs:
        escaped = str(escape(" ".join(paragraph.split())))
        html.append("<p>" + _CODE.sub(r"<code>\1</code>", escaped) + "</p>")
    return Markup("".join(html))  # noqa: S704 - every piece was escaped above


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def schema_summary(schema: dict[str, Any]) -> str:
    """A one-line reading of a schema: ``string (1 to 255 characters)``, ``User | null``..."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            return " | ".join(schema_summary(part) for part in schema[combinator])
    if "allOf" in schema:
        return schema_summary(schema["allOf"][0])
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    types = schema.get("type", "any")
    types = types if isinstance(types, list) else [types]
    main = [t for t in types if t != "null"]
    text = " | ".join(main) or "null"
    if main == ["array"] and "items" in schema:
        text = "array of " + schema_summary(schema["items"])
    facts = []
    if "format" in schema:
        facts.append(schema["format"])
    low, high = schema.get("minLength"), schema.get("maxLength")
    if low is not None and high is not None:
        facts.append(f"{low} to {high} characters")
    elif high is not None:
        facts.append(f"at most {high} characters")
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        facts.append(f"{low} to {high}")
    elif low is not None:
        facts.append(f"≥ {low}")
    if "default" in schema:
        facts.append(f"default {json.dumps(schema['default'])}")
    if facts:
        text += " (" + ", ".join(facts) + ")"
    if "null" in types:
        text += " | null"
    return text


def schema_link(schema: dict[str, Any] | None) -> str | None:
    """The name of the component schema ``schema`` is (or wraps), if any."""
    if not schema:
        return None
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    for key in ("anyOf", "oneOf", "allOf"):
        for part in schema.get(key, []):
            found = schema_link(part)
            if found:
                return found
    if "items" in schema:
        return schema_link(schema["items"])
    return None


def _schemas(document: dict[str, Any]) -> list[dict[str, Any]]:
    shown = []
    for name, schema in document["components"]["schemas"].items():
        required = set(schema.get("required", []))
        shown.append(
            {
                "name": name,
                "description": schema.get("description", ""),
                "type": None if "properties" in schema else schema_summary(schema),
                "properties": [
                    {
                        "name": prop_name,
                        "required": prop_name in required,
                        "type": schema_summary(prop),
                        "link": schema_link(prop),
                        "pattern": prop.get("pattern"),
                        "description": prop.get("description", ""),
                    }
                    for prop_name, prop in schema.get("properties", {}).items()
                ],
            }
        )
    return shown


def _operations_by_tag(document: dict[str, Any], base_url: str) -> list[dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {
        tag["name"]: {**tag, "operations": []} for tag in document["tags"]
    }
    for path, item in document["paths"].items():
        shared = item.get("parameters", [])
        for method in _METHODS:
            if method not in item:
                continue
            op = item[method]
            parameters = [_resolve(document, p) for p in [*shared, *op.get("parameters", [])]]
            body = op.get("requestBody")
            groups[op["tags"][0]]["operations"].append(
                {
                    "id": op["operationId"],
                    "method": method.upper(),
                    "method_class": _METHOD_CLASS[method],
                    "path": path,
                    "summary": op["summary"],
                    "description": op["description"],
                    "public": op.get("security") == [],
                    "parameters": [
                        {
                            "name": p["name"],
                            "in": p["in"],
                            "required": p.get("required", False),
                            "type": schema_summary(p["schema"]),
                            "pattern": p["schema"].get("pattern"),
                            "repeatable": p["schema"].get("type") == "array",
                            "description": p.get("description", ""),
                        }
                        for p in parameters
                    ],
                    "body": _body(body) if body else None,
                    "responses": [
                        _response(document, status, response)
                        for status, response in op["responses"].items()
                    ],
                    "curl": _curl(method, path, op, parameters, body, base_url),
                }
            )
    return [group for group in groups.values() if group["operations"]]


def _body(body: dict[str, Any]) -> dict[str, Any]:
    media_type, media = next(iter(body["content"].items()))
    return {
        "required": body.get("required", False),
        "description": body.get("description", ""),
        "media_type": media_type,
        "type": schema_summary(media["schema"]),
        "link": schema_link(media["schema"]),
        "example": json.dumps(media.get("example"), indent=2, ensure_ascii=False),
    }


def _response(document: dict[str, Any], status: str, response: dict[str, Any]) -> dict[str, Any]:
    content = response.get("content", {})
    media_type = next(iter(content), None)
    schema = content[media_type]["schema"] if media_type else None
    problem_types = []
    if schema and "allOf" in schema:
        problem_types = schema["allOf"][1]["properties"]["type"]["enum"]
    return {
        "status": status,
        "description": response["description"],
        "media_type": media_type,
        "type": schema_summary(schema) if schema else None,
        "link": schema_link(schema),
        "problem_types": problem_types,
        "headers": [name for name in response.get("headers", {}) if name != "X-Request-ID"],
    }


def _curl(
    method: str,
    path: str,
    op: dict[str, Any],
    parameters: list[dict[str, Any]],
    body: dict[str, Any] | None,
    base_url: str,
) -> str:
    url = base_url + path.replace("{user_id}", "42")
    verb = "" if method == "get" else f"-X {method.upper()} "
    lines = [f"curl {verb}{shlex.quote(url)}"]
    if op.get("security") != []:
        lines.append('-H "Authorization: Bearer $TOKEN"')
    if any(p["name"] == "If-Match" for p in parameters):
        lines.append("-H " + shlex.quote('If-Match: "1"'))
    if body and body.get("required"):
        example = next(iter(body["content"].values())).get("example")
        lines.append("-H 'Content-Type: application/json'")
        lines.append("-d " + shlex.quote(json.dumps(example, ensure_ascii=False)))
    return " \\\n  ".join(lines)
