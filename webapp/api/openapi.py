"""The API's OpenAPI 3.1 description, served at ``/api/v1/openapi.json``.

The document is built here in Python rather than kept as a hand-written data
file: field lengths, page sizes, operation and field names, roles and problem
types come from the constants the server itself enforces, so a changed rule
changes the description with it. It is built once per application and served
as the same bytes afterwards. ``tests/test_openapi.py`` checks it against the
OpenAPI 3.1 meta-schema, against the routes, and real responses against it.

Reading it needs no token: it describes the API and grants nothing.
"""

from __future__ import annotations

import json as stdlib_json
from collections.abc import Callable
from importlib import metadata
from typing import Any, TypeVar

from flask import Flask, Response, current_app

from webapp.api import bp
from webapp.api.audit import EXPORT_FORMATS
from webapp.api.problems import PROBLEM_MEDIA_TYPE, TYPE_PREFIX
from webapp.api.request_input import query_args
from webapp.api.schemas import component_schemas
from webapp.auth import permissions
from webapp.request_id import CLIENT_ID_PATTERN
from webapp.services import errors as service_errors
from webapp.services.audit_filter import ACTOR_MAX, FILTER_PARAMETERS, Kind
from webapp.services.pagination import CURSOR_MAX_LENGTH, MAX_BIGINT
from webapp.services.profile_rules import EMAIL_MAX, NAME_MAX, REASON_MAX, SEARCH_MAX
from webapp.services.security_events import (
    ACCOUNT_MAX,
    EVENTS,
    REPEAT_WINDOW,
    REPEATED_EVENTS,
)

F = TypeVar("F", bound=Callable[..., Any])

OPENAPI_VERSION = "3.1.0"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_REF = "#/components/schemas/"
_EXTENSION_KEY = "profile_audit.openapi"

# What a client's X-Request-ID must look like to be kept (webapp.request_id);
# the server's own ids (32 hex digits) match it too.
REQUEST_ID_PATTERN = CLIENT_ID_PATTERN
# Characters profile_rules never stores: control characters, line and
# paragraph separators, bidirectional controls (stricter than the server only
# in refusing them at the edges too, where it trims whitespace first).
_BIDI = r"\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_FORBIDDEN = rf"\u0000-\u001f\u007f-\u009f\u2028\u2029{_BIDI}"
# Characters that show nothing (profile_rules.looks_blank, within the Basic
# Multilingual Plane): a name needs at least one other character.
_INVISIBLE = (
    r"\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    r"\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
)
NAME_PATTERN = rf"^[^{_FORBIDDEN}]*[^\s{_FORBIDDEN}{_INVISIBLE}][^{_FORBIDDEN}]*$"
SEARCH_PATTERN = rf"^[^{_FORBIDDEN}]*$"
# A reason may also hold newlines and tabs.
REASON_PATTERN = rf"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029{_BIDI}]*$"


def public(view: F) -> F:
    """Mark an ``/api`` view as readable without a token (webapp.auth.bearer honours it).

    Only for views that describe the API and grant nothing.
    """
    view.public_api = True  # type: ignore[attr-defined]
    return view


def document(app: Flask | None = None) -> dict[str, Any]:
    """The OpenAPI document of ``app`` (the current one by default), built once."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    cached = app.extensions.get(_EXTENSION_KEY)
    if cached is None:
        built = build_document(
            page_size_default=app.config["PAGE_SIZE_DEFAULT"],
            page_size_max=app.config["PAGE_SIZE_MAX"],
        )
        cached = (built, stdlib_json.dumps(built, indent=2, ensure_ascii=False))
        app.extensions[_EXTENSION_KEY] = cached
    return cached[0]  # type: ignore[no-any-return]


@bp.get("/openapi.json")
@public
def openapi_document() -> Response:
    query_args(())
    document()
    _, text = current_app.extensions[_EXTENSION_KEY]
    return current_app.response_class(text, mimetype="application/json")


# --------------------------------------------------------------------------
# Building blocks


def ref(name: str) -> dict[str, str]:
    return {"$ref": SCHEMA_REF + name}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or ``null``."""
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    return {**schema, "type": [*types, "null"]}


def filter_parameters() -> list[dict[str, Any]]:
    """The timeline filter's query parameters, from its one declaration."""
    schemas: dict[Kind, dict[str, Any]] = {
        Kind.ID: {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_BIGINT},
        Kind.TIME: ref("TimeBound"),
        Kind.ACTOR: {"type": "string", "maxLength": ACTOR_MAX},
        Kind.FLAG: {"type": "boolean", "default": False},
    }
    parameters = []
    for parameter in FILTER_PARAMETERS:
        described: dict[str, Any] = {
            "name": parameter.name,
            "in": "query",
            "description": parameter.help,
        }
        if parameter.repeatable:
            described["style"] = "form"
            described["explode"] = True
            described["schema"] = {"type": "array", "items": {"enum": list(parameter.choices)}}
        else:
            described["schema"] = schemas[parameter.kind]
        parameters.append(described)
    return parameters


def _roles_with(permission: str) -> list[str]:
    return [role for role, allowed in permissions.ROLE_PERMISSIONS.items() if permission in allowed]


def _problem_types(*classes: type[service_errors.ServiceError], blank: bool) -> list[str]:
    types = [TYPE_PREFIX + cls.code for cls in classes]
    return (["about:blank"] if blank else []) + types


# The ``type`` member each error status can carry. ``about:blank`` is the
# plain HTTP error (bad JSON, a routing 404, a wrong method...).
PROBLEM_TYPES: dict[int, list[str]] = {
    400: _problem_types(service_errors.ValidationFailed, blank=True),
    401: ["about:blank"],
    403: ["about:blank"],
    404: _problem_types(service_errors.NotFound, blank=True),
    405: ["about:blank"],
    409: _problem_types(
        service_errors.DuplicateEmail,
        service_errors.AlreadyDeleted,
        service_errors.NotDeleted,
        service_errors.StaleVersion,
        service_errors.Conflict,
        blank=False,
    ),
    412: _problem_types(service_errors.StaleVersion, blank=True),
    413: ["about:blank"],
    415: ["about:blank"],
    503: ["about:blank"],
}

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: (
        "Bad input: an unknown or repeated query parameter, a value breaking a rule, "
        "an unknown body field, a body that is not a JSON object, or a malformed "
        "`If-Match`. `errors` names each bad field or parameter. Nothing was changed."
    ),
    401: "No usable token: missing, malformed, unknown, revoked or expired.",
    403: "The token's role lacks the permission (the refusal is kept as a security event).",
    404: "No profile with this id (deleted profiles are still found).",
    409: "The request clashes with the profile's current state. Nothing was changed.",
    412: (
        "`If-Match` names a version the profile is no longer at; `current` shows the "
        "profile as it is now. Nothing was changed."
    ),
    413: "The body is larger than the server accepts (64 KiB by default).",
    415: "The body is not JSON: send `Content-Type: application/json`.",
    503: (
        "The database is unavailable; the change may or may not have been saved. "
        "Check the current data and retry after `Retry-After` seconds."
    ),
}


def _headers(**extra: str) -> dict[str, Any]:
    headers: dict[str, Any] = {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}}
    for name, component in extra.items():
        headers[name.replace("_", "-")] = {"$ref": f"#/components/headers/{component}"}
    return headers


def problem_response(status: int, description: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "allOf": [
            ref("Problem"),
            {
                "properties": {
                    "status": {"const": status},
                    "type": {"enum": PROBLEM_TYPES[status]},
                }
            },
        ]
    }
    headers = _headers()
    if status == 401:
        headers = _headers(WWW_Authenticate="WWW-Authenticate")
    elif status == 503:
        headers = _headers(Retry_After="Retry-After")
    return {
        "description": description or ERROR_DESCRIPTIONS[status],
        "headers": headers,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": schema}},
    }


def json_response(
    description: str,
    schema: dict[str, Any],
    *,
    example: Any = None,
    links: dict[str, Any] | None = None,
    **headers: str,
) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    response = {
        "description": description,
        "headers": _headers(**headers),
        "content": {"application/json": media},
    }
    if links:
        response["links"] = links
    return response


def profile_links(*operation_ids: str) -> dict[str, Any]:
    """Links from a response holding a profile to the operations on it."""
    return {
        op_id: {
            "operationId": op_id,
            "parameters": {"user_id": "$response.body#/id"},
            "description": "The same profile.",
        }
        for op_id in operation_ids
    }


def json_body(
    schema: dict[str, Any], example: Any, *, required: bool = True, description: str = ""
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "required": required,
        "content": {"application/json": {"schema": schema, "example": example}},
    }
    if description:
        body["description"] = description
    return body


def operation(
    *,
    operation_id: str,
    tag: str,
    summary: str,
    description: str,
    permission: str | None,
    success: dict[str, dict[str, Any]],
    errors: tuple[int, ...],
    parameters: tuple[dict[str, Any], ...] | list[dict[str, Any]] = (),
    request_body: dict[str, Any] | None = None,
    error_notes: dict[int, str] | None = None,
) -> dict[str, Any]:
    roles = _roles_with(permission) if permission else []
    if permission:
        description = (
            f"{description}\n\nNeeds the `{permission}` permission: "
            f"role {', '.join(f'`{r}`' for r in roles)}."
        )
    responses: dict[str, Any] = dict(success)
    notes = error_notes or {}
    # 403 only where some role lacks the permission: for the others it cannot happen.
    auth_errors = (401, 403) if len(roles) < len(permissions.ROLE_PERMISSIONS) else (401,)
    # Only the public document needs no database: everything else can meet its outage.
    outage = (503,) if permission else ()
    for status in sorted((*errors, *(auth_errors if permission else ()), *outage)):
        responses[str(status)] = problem_response(status, notes.get(status))
    op: dict[str, Any] = {
        "operationId": operation_id,
        "tags": [tag],
        "summary": summary,
        "description": description,
        "parameters": [*parameters, {"$ref": "#/components/parameters/X-Request-ID"}],
    }
    if request_body is not None:
        op["requestBody"] = request_body
    op["responses"] = responses
    if permission:
        op["x-permission"] = permission
        op["x-roles"] = roles
    else:
        op["security"] = []
    return op


# --------------------------------------------------------------------------
# The document


def build_document(*, page_size_default: int, page_size_max: int) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document (a fresh dict every call)."""
    limit = {
        "name": "limit",
        "in": "query",
        "description": f"Page size, 1 to {page_size_max}.",
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": page_size_max,
            "default": page_size_default,
        },
    }
    paging = [limit, {"$ref": "#/components/parameters/cursor"}]
    user_id = {"$ref": "#/components/parameters/user_id"}
    if_match = {"$ref": "#/components/parameters/If-Match"}

    user_example = {
        "id": 42,
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "created_at": "2026-01-31T12:00:00.000000Z",
        "updated_at": "2026-01-31T12:00:00.000000Z",
        "deleted_at": None,
        "version": 1,
    }
    user_ok = json_response(
        "The profile. `ETag` is its version.", ref("User"), example=user_example, ETag="ETag"
    )
    body_errors = (400, 413, 415)
    reason_body = json_body(
        ref("ReasonOnly"),
        {"reason": "account closed"},
        required=False,
        description="Optional: no body at all, or a JSON object with just a `reason`.",
    )

    paths: dict[str, Any] = {
        "/users": {
            "get": operation(
                operation_id="listUsers",
                tag="Profiles",
                summary="List profiles",
                description=(
                    "Profiles in id order, one keyset page. Deleted profiles only with "
                    "`include_deleted`."
                ),
                permission=permissions.PROFILES_READ,
                parameters=[
                    {
                        "name": "q",
                        "in": "query",
                        "description": (
                            "Only profiles whose name or email contains this text "
                            "(case-insensitive; surrounding spaces are ignored; no control "
                            "characters)."
                        ),
                        "schema": {
                            "type": "string",
                            "maxLength": SEARCH_MAX,
                            "pattern": SEARCH_PATTERN,
                        },
                    },
                    {
                        "name": "include_deleted",
                        "in": "query",
                        "description": (
                            "Also list soft-deleted profiles. `true`/`1`/`yes` or `false`/`0`/`no`."
                        ),
                        "schema": {"type": "boolean", "default": False},
                    },
                    *paging,
                ],
                success={"200": json_response("One page of profiles.", ref("UserPage"))},
                errors=(400,),
            ),
            "post": operation(
                operation_id="createUser",
                tag="Profiles",
                summary="Create a profile",
                description=(
                    "Creates a profile from `name` and `email`; the optional `reason` is "
                    "stored on its audit entry."
                ),
                permission=permissions.PROFILES_WRITE,
                request_body=json_body(
                    ref("ProfileInput"),
                    {"name": "Ada Lovelace", "email": "ada@example.com", "reason": "signup"},
                ),
                success={
                    "201": json_response(
                        "Created. `Location` is the new profile's URL, `ETag` its version.",
                        ref("User"),
                        example=user_example,
                        links=profile_links(
                            "getUser",
                            "replaceUser",
                            "updateUser",
                            "deleteUser",
                            "restoreUser",
                            "getUserHistory",
                        ),
                        ETag="ETag",
                        Location="Location",
                    )
                },
                errors=(*body_errors, 409),
                error_notes={409: "Another active profile already has this email."},
            ),
        },
        "/users/{user_id}": {
            "parameters": [user_id],
            "get": operation(
                operation_id="getUser",
                tag="Profiles",
                summary="Read a profile",
                description="A profile, deleted ones too (with `deleted_at` set).",
                permission=permissions.PROFILES_READ,
                success={"200": user_ok},
                errors=(400, 404),
                error_notes={400: "A query parameter was given: this endpoint takes none."},
            ),
            "put": operation(
                operation_id="replaceUser",
                tag="Profiles",
                summary="Replace a profile's name and email",
                description=(
                    "Both `name` and `email` are required. With `If-Match`, the write is "
                    "refused (412) unless the profile is still at that version."
                ),
                permission=permissions.PROFILES_WRITE,
                parameters=[if_match],
                request_body=json_body(
                    ref("ProfileInput"),
                    {
                        "name": "Augusta Ada King",
                        "email": "ada@example.com",
                        "reason": "legal name",
                    },
                ),
                success={"200": json_response("The profile as saved.", ref("User"), ETag="ETag")},
                errors=(*body_errors, 404, 409, 412),
                error_notes={409: _WRITE_CONFLICT},
            ),
            "patch": operation(
                operation_id="updateUser",
                tag="Profiles",
                summary="Change some of a profile's fields",
                description=(
                    "Only the fields sent are changed; same rules as `PUT`. An empty "
                    "object changes nothing."
                ),
                permission=permissions.PROFILES_WRITE,
                parameters=[if_match],
                request_body=json_body(
                    ref("ProfilePatch"), {"name": "Augusta Ada King", "reason": "legal name"}
                ),
                success={"200": json_response("The profile as saved.", ref("User"), ETag="ETag")},
                errors=(*body_errors, 404, 409, 412),
                error_notes={409: _WRITE_CONFLICT},
            ),
            "delete": operation(
                operation_id="deleteUser",
                tag="Profiles",
                summary="Soft-delete a profile",
                description=(
                    "Marks the profile deleted (`deleted_at`); it and its history stay. "
                    "Its email becomes free for other profiles."
                ),
                permission=permissions.PROFILES_WRITE,
                parameters=[if_match],
                request_body=reason_body,
                success={
                    "204": {"description": "Deleted.", "headers": _headers()},
                },
                errors=(*body_errors, 404, 409, 412),
                error_notes={
                    409: (
                        "The profile is already deleted, or another write won a race "
                        "(without `If-Match`). Nothing was changed."
                    )
                },
            ),
        },
        "/users/{user_id}/restore": {
            "parameters": [user_id],
            "post": operation(
                operation_id="restoreUser",
                tag="Profiles",
                summary="Restore a deleted profile",
                description="Undoes a soft delete.",
                permission=permissions.PROFILES_WRITE,
                parameters=[if_match],
                request_body=reason_body,
                success={"200": json_response("The restored profile.", ref("User"), ETag="ETag")},
                errors=(*body_errors, 404, 409, 412),
                error_notes={
                    409: (
                        "The profile is not deleted, or another active profile has taken "
                        "its email meanwhile. Nothing was changed."
                    )
                },
            ),
        },
        "/users/{user_id}/history": {
            "parameters": [user_id],
            "get": operation(
                operation_id="getUserHistory",
                tag="Audit",
                summary="A profile's audit entries",
                description="That profile's audit entries, newest first.",
                permission=permissions.HISTORY_READ,
                parameters=paging,
                success={"200": json_response("One page of audit entries.", ref("AuditPage"))},
                errors=(400, 404),
            ),
        },
        "/audit": {
            "get": operation(
                operation_id="listAuditEntries",
                tag="Audit",
                summary="The audit timeline",
                description=(
                    "Audit entries across all profiles, newest first, filtered. Filters "
                    "combine with AND; the values of a repeated filter with OR."
                ),
                permission=permissions.AUDIT_READ,
                parameters=[*filter_parameters(), *paging],
                success={"200": json_response("One page of audit entries.", ref("AuditPage"))},
                errors=(400,),
            ),
        },
        "/audit/export": {
            "get": operation(
                operation_id="exportAuditEntries",
                tag="Audit",
                summary="Export the audit timeline",
                description=(
                    "Every audit entry the filters select, newest first, in one streamed "
                    "response: CSV (cells that a spreadsheet would run as a formula are "
                    "neutralised with a leading `'`) or one JSON object per line in the shape "
                    "of `AuditEntry`. The same filters as `GET /audit`; the export is kept "
                    "as an `audit_exported` security event."
                ),
                permission=permissions.AUDIT_READ,
                parameters=[
                    {
                        "name": "format",
                        "in": "query",
                        "description": "`csv` (the default) or `ndjson`.",
                        "schema": {"enum": list(EXPORT_FORMATS), "default": "csv"},
                    },
                    *filter_parameters(),
                ],
                success={
                    "200": {
                        "description": "The entries, streamed.",
                        "headers": {
                            **_headers(),
                            "Content-Disposition": {
                                "description": "`attachment` with a file name.",
                                "required": True,
                                "schema": {"type": "string", "pattern": "^attachment; "},
                            },
                        },
                        "content": {
                            mimetype: {"schema": {"type": "string"}}
                            for mimetype, _ in EXPORT_FORMATS.values()
                        },
                    }
                },
                errors=(400,),
            ),
        },
        "/audit/verify": {
            "get": operation(
                operation_id="getAuditVerification",
                tag="Audit",
                summary="The audit chain's state and last verification",
                description=(
                    "The hash chain's head now, the entries waiting for their link, "
                    "and the result of the last `flask audit verify` run (`null` if there "
                    "has been none). Verification itself runs on a schedule, not per request."
                ),
                permission=permissions.AUDIT_READ,
                success={
                    "200": json_response("The chain's state.", ref("AuditVerificationStatus"))
                },
                errors=(400,),
                error_notes={400: "A query parameter was given: this endpoint takes none."},
            ),
        },
        "/security-events": {
            "get": operation(
                operation_id="listSecurityEvents",
                tag="Security events",
                summary="Security events",
                description=(
                    "Sign-ins, account and token changes, refusals and exports, newest "
                    "first, filtered. They never hold a password or a token. Events anyone "
                    f"can repeat at will ({', '.join(f'`{e}`' for e in sorted(REPEATED_EVENTS))}) "
                    "are listed once per kind, address, account and reason in each "
                    f"{int(REPEAT_WINDOW.total_seconds() // 60)}-minute window, with `count` "
                    "and `last_seen`."
                ),
                permission=permissions.SECURITY_EVENTS_READ,
                parameters=[
                    {
                        "name": "event",
                        "in": "query",
                        "description": (
                            "Only these kinds. Repeat the parameter or separate values with commas."
                        ),
                        "style": "form",
                        "explode": True,
                        "schema": {"type": "array", "items": {"enum": list(EVENTS)}},
                    },
                    {
                        "name": "account",
                        "in": "query",
                        "description": "Only events about this username, case-insensitive.",
                        "schema": {"type": "string", "maxLength": ACCOUNT_MAX},
                    },
                    {
                        "name": "address",
                        "in": "query",
                        "description": "Only events from this IP address.",
                        "schema": {
                            "anyOf": [
                                {"type": "string", "format": "ipv4"},
                                {"type": "string", "format": "ipv6"},
                            ]
                        },
                    },
                    {
                        "name": "since",
                        "in": "query",
                        "description": "Events at or after this ISO 8601 date or datetime.",
                        "schema": ref("TimeBound"),
                    },
                    {
                        "name": "until",
                        "in": "query",
                        "description": (
                            "Events at or before this ISO 8601 date (the whole UTC day "
                            "included) or datetime. Must be later than `since`."
                        ),
                        "schema": ref("TimeBound"),
                    },
                    *paging,
                ],
                success={
                    "200": json_response("One page of security events.", ref("SecurityEventPage"))
                },
                errors=(400,),
            ),
        },
        "/openapi.json": {
            "get": operation(
                operation_id="getOpenApiDocument",
                tag="API description",
                summary="This OpenAPI document",
                description=(
                    "The OpenAPI 3.1 description of this API. Public: no token needed. "
                    "A readable rendering is at `/api/docs`."
                ),
                permission=None,
                success={
                    "200": json_response(
                        "The OpenAPI document.", {"type": "object", "required": ["openapi"]}
                    )
                },
                errors=(400,),
                error_notes={400: "A query parameter was given: this endpoint takes none."},
            ),
        },
    }

    return {
        "openapi": OPENAPI_VERSION,
        "jsonSchemaDialect": JSON_SCHEMA_DIALECT,
        "info": {
            "title": "Profile Audit API",
            "version": _version(),
            "summary": "User profiles and the audit log of every change to them.",
            "description": _INFO_DESCRIPTION,
        },
        "servers": [{"url": "/api/v1", "description": "This server."}],
        "security": [{"bearerAuth": []}],
        "tags": [
            {"name": "Profiles", "description": "Read and change user profiles."},
            {"name": "Audit", "description": "Who changed what, when and why."},
            {
                "name": "Security events",
                "description": "Sign-ins, account and token changes, refusals, exports.",
            },
            {"name": "API description", "description": "This document."},
        ],
        "paths": paths,
        "components": _components(),
    }


_WRITE_CONFLICT = (
    "Another active profile has this email, the profile is deleted (restore it first), "
    "or another write won a race (without `If-Match`; `current` shows the profile now). "
    "Nothing was changed."
)

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


def _components() -> dict[str, Any]:
    big_id = {"type": "integer", "format": "int64", "minimum": 1}
    name = {
        "type": "string",
        "minLength": 1,
        "maxLength": NAME_MAX,
        "pattern": NAME_PATTERN,
        "description": (
            f"1 to {NAME_MAX} characters once surrounding whitespace is trimmed, not all "
            "of them invisible (zero-width or format characters, fillers); no control "
            "characters, line separators or bidirectional controls."
        ),
    }
    email = {
        "type": "string",
        "format": "email",
        "maxLength": EMAIL_MAX,
        "description": (
            f"A syntactically valid address (no DNS check), at most {EMAIL_MAX} characters; "
            "the domain is stored lowercased. Unique among active profiles, "
            "case-insensitively."
        ),
    }
    reason = {
        "type": ["string", "null"],
        "maxLength": REASON_MAX,
        "pattern": REASON_PATTERN,
        "description": (
            f"Why the change is made, stored on its audit entry. At most {REASON_MAX} "
            "characters once trimmed; newlines and tabs allowed, other control "
            "characters not. Blank means none."
        ),
    }

    schemas: dict[str, Any] = {
        **component_schemas(),
        "ProfileInput": {
            "type": "object",
            "description": "A whole profile (create, replace). Unknown fields are refused.",
            "required": ["name", "email"],
            "additionalProperties": False,
            "properties": {"name": name, "email": email, "reason": reason},
        },
        "ProfilePatch": {
            "type": "object",
            "description": "Some of a profile's fields. Unknown fields are refused.",
            "additionalProperties": False,
            "properties": {"name": name, "email": email, "reason": reason},
        },
        "ReasonOnly": {
            "type": "object",
            "description": "Just the reason for a delete or restore.",
            "additionalProperties": False,
            "properties": {"reason": reason},
        },
        "TimeBound": {
            "description": "An ISO 8601 date or datetime.",
            "anyOf": [
                {"type": "string", "format": "date"},
                {"type": "string", "format": "date-time"},
            ],
            "examples": ["2026-01-31", "2026-01-31T12:00:00Z"],
        },
        "Problem": {
            "type": "object",
            "description": "An RFC 9457 problem detail: every error of this API.",
            "required": ["type", "title", "status", "detail", "request_id"],
            "additionalProperties": False,
            "properties": {
                "type": {
                    "type": "string",
                    "format": "uri",
                    "description": (
                        "`about:blank` for plain HTTP errors, or "
                        f"`{TYPE_PREFIX}<code>` for this API's own."
                    ),
                },
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
                "request_id": {
                    "type": "string",
                    "pattern": REQUEST_ID_PATTERN,
                    "description": "The request's id, as in `X-Request-ID`: quote it in reports.",
                },
                "errors": {
                    "type": "object",
                    "description": "Each bad field or query parameter and its messages.",
                    "additionalProperties": {
                        "type": "array",
                        "items": {"type": "string"},
                        "minItems": 1,
                    },
                },
                "current": {
                    **ref("User"),
                    "description": "On a refused write (409, 412): the profile as it is now.",
                },
            },
        },
    }

    return {
        "schemas": schemas,
        "parameters": {
            "user_id": {
                "name": "user_id",
                "in": "path",
                "required": True,
                "description": "The profile's id.",
                "schema": big_id,
            },
            "cursor": {
                "name": "cursor",
                "in": "query",
                "description": "The previous page's `next_cursor`, unchanged.",
                "schema": {"type": "string", "maxLength": CURSOR_MAX_LENGTH},
            },
            "If-Match": {
                "name": "If-Match",
                "in": "header",
                "description": (
                    'The version the change is based on, as an entity tag: `"3"` (with '
                    "the quotes), from the `ETag` of an earlier response. `*` or no header: "
                    "no check."
                ),
                "schema": {
                    "type": "string",
                    "pattern": '^(\\*|"[1-9][0-9]{0,17}")$',
                    "examples": ['"3"'],
                },
            },
            "X-Request-ID": {
                "name": "X-Request-ID",
                "in": "header",
                "description": (
                    "Your own id for this request, kept beside the server's id in the logs, "
                    "audit entries and security events (`client_request_id`). It never "
                    "replaces the server's id; one not matching the pattern is dropped."
                ),
                "schema": {"type": "string", "pattern": REQUEST_ID_PATTERN},
            },
        },
        "headers": {
            "X-Request-ID": {
                "description": (
                    "The server's id of this request (never the client's), as in the logs "
                    "and on audit entries."
                ),
                "required": True,
                "schema": {"type": "string", "pattern": REQUEST_ID_PATTERN},
            },
            "ETag": {
                "description": 'The profile\'s version as a strong entity tag: `"3"`.',
                "required": True,
                "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
            },
            "Location": {
                "description": "The new profile's URL.",
                "required": True,
                "schema": {"type": "string", "format": "uri-reference"},
            },
            "WWW-Authenticate": {
                "description": "The challenge: `Bearer realm=...`.",
                "required": True,
                "schema": {"type": "string", "pattern": "^Bearer "},
            },
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "required": True,
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            },
        },
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": (
                    "An API token (`pa_...`) from `flask token create` or the dashboard's "
                    "API tokens page."
                ),
            }
        },
    }


def _version() -> str:
    try:
        return metadata.version("profile-audit")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout
        return "0.0.0"
