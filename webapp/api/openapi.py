"""The API's OpenAPI 3.1 description, served at ``/api/v1/openapi.json``.

Its paths are the ``api`` blueprint's routes, each described by the
``@documented`` declaration beside its view (``webapp.api.operations``); its
schemas are generated from ``webapp.api.schemas``. Here is only what belongs to
the whole API: introduction, tags, security scheme. It is built once per
application and served as the same bytes afterwards; reading it needs no token.
"""

from __future__ import annotations

import copy
import json as stdlib_json
import re
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from flask import Flask, Response, current_app

from webapp.api import bp
from webapp.api.operations import (
    HEADERS,
    NO_QUERY,
    Reply,
    declared_query,
    describe,
    documented,
    operation_of,
    shared_parameters,
)
from webapp.api.schemas import component_schemas

_EXTENSION_KEY = "profile_audit.openapi"
_ARGUMENT = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")

TAGS = {
    "Profiles": "Read and change user profiles.",
    "Audit": "Who changed what, when and why.",
    "Privacy": "Erase a profile's personal data; everything held about a profile.",
    "Security events": "Sign-ins, account and token changes, refusals, exports.",
    "API description": "This document.",
}
BEARER = "An API token (`pa_...`) from `flask token create` or the dashboard's API tokens page."

_INFO_DESCRIPTION = """\
Every request needs `Authorization: Bearer <token>`; an administrator creates
tokens (`flask token create USERNAME --name NAME`, or the dashboard's API tokens
page). Without a usable token the answer is 401; a role without the permission
gets 403.

Errors are `application/problem+json` (RFC 9457) with `type`, `title`, `status`,
`detail` and the `request_id` of the request (also in the `X-Request-ID`
header); `errors` maps each bad field or parameter to its messages, and a
refused write's `current` shows the profile as it is now. Bad input is refused
with a 4xx and changes nothing. A method a path does not support gets 405 with
an `Allow` header; an unexpected failure gets a 500 problem carrying the request
id, to quote when reporting it.

A profile's `version` is its `ETag`. Send it back in `If-Match` and a write
based on an old version is refused with 412 instead of overwriting someone
else's change.

Lists are paginated with keyset cursors: pass `next_cursor` back as `cursor`
until it is `null`. Query parameters a list does not know are refused (400).
"""


def document(app: Flask | None = None) -> dict[str, Any]:
    """The OpenAPI document of ``app`` (the current one by default), built once."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    cached = app.extensions.get(_EXTENSION_KEY)
    if cached is None:
        built = build_document(app)
        cached = (built, stdlib_json.dumps(built, indent=2, ensure_ascii=False))
        app.extensions[_EXTENSION_KEY] = cached
    return cached[0]  # type: ignore[no-any-return]


@bp.get("/openapi.json")
@documented(
    "getOpenApiDocument",
    tag="API description",
    summary="This OpenAPI document",
    permission=None,
    responses={
        200: Reply("The OpenAPI document.", {"type": "object", "required": ["openapi"]}),
        400: NO_QUERY,
    },
)
def openapi_document() -> Response:
    """The OpenAPI 3.1 description of this API. Public: no token needed. A readable
    rendering is at `/api/docs`."""
    declared_query()
    document()
    text = current_app.extensions[_EXTENSION_KEY][1]
    return current_app.response_class(text, mimetype="application/json")


def build_document(app: Flask, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document of ``app`` (with ``config``, by default its own)."""
    config = app.config if config is None else config
    paths: dict[str, Any] = {}
    operations = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith(bp.name + "."):
            continue
        operation = operation_of(app.view_functions[rule.endpoint])
        if operation is None:  # rather no document than one silently missing a route
            raise LookupError(f"{rule.endpoint} has no @documented declaration")
        operations.append(operation)
        path = _ARGUMENT.sub(r"{\1}", rule.rule.removeprefix(bp.url_prefix or ""))
        item = paths.setdefault(path, {})
        if rule.arguments:
            item["parameters"] = [
                {"$ref": "#/components/parameters/" + name} for name in sorted(rule.arguments)
            ]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            item[method.lower()] = describe(operation, config)
    return copy.deepcopy(  # nothing in it is shared with the declarations
        {
            "openapi": "3.1.0",
            "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
            "info": {
                "title": "Profile Audit API",
                "version": _version(),
                "summary": "User profiles and the audit log of every change to them.",
                "description": _INFO_DESCRIPTION,
            },
            "servers": [{"url": bp.url_prefix, "description": "This server."}],
            "security": [{"bearerAuth": []}],
            "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
            "paths": paths,
            "components": {
                "schemas": component_schemas(),
                "parameters": shared_parameters(operations, config),
                "headers": HEADERS,
                "securitySchemes": {
                    "bearerAuth": {"type": "http", "scheme": "bearer", "description": BEARER}
                },
            },
        }
    )


def _version() -> str:
    try:
        return metadata.version("profile-audit")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout
        return "0.0.0"
