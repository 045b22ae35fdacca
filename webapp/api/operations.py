"""Each API operation declared beside its view, and read back from there.

``@documented`` records on a view what the operation takes and answers: its
query parameters, body, responses and permission (it applies ``requires``
itself, so the permission is written once). The OpenAPI document walks the
blueprint's routes and reads these records (``webapp.api.openapi``), and
``declared_query`` reads a request's query string through the same record: a
parameter the document names is one the view accepts, and no other. The view's
docstring is the operation's description.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import current_app, request

from webapp.api.request_input import VERSION_DIGITS_MAX, query_args
from webapp.auth import permissions
from webapp.auth.access import requires
from webapp.http.api_paths import public
from webapp.http.problems import PROBLEM_MEDIA_TYPE, TYPE_PREFIX
from webapp.request_id import CLIENT_ID_PATTERN
from webapp.services import errors as service_errors
from webapp.services.pagination import CURSOR_MAX_LENGTH
from webapp.typed_text import MAX_BIGINT

F = TypeVar("F", bound=Callable[..., Any])
Config = Mapping[str, Any]

SCHEMA_REF = "#/components/schemas/"
PARAMETER_REF = "#/components/parameters/"
HEADER_REF = "#/components/headers/"


def ref(name: str) -> dict[str, str]:
    return {"$ref": SCHEMA_REF + name}


@dataclass(frozen=True)
class QueryParameter:
    """A query parameter. ``description`` and ``schema`` may depend on the app's config."""

    name: str
    description: str | Callable[[Config], str]
    schema: Mapping[str, Any] | Callable[[Config], Mapping[str, Any]]
    #: may be given more than once (each value, or comma-separated values)
    repeatable: bool = False
    #: described once in ``components.parameters`` and referred to from operations
    shared: bool = False

    def described(self, config: Config) -> dict[str, Any]:
        if self.shared:
            return {"$ref": PARAMETER_REF + self.name}
        return self.component(config)

    def component(self, config: Config) -> dict[str, Any]:
        described: dict[str, Any] = {
            "name": self.name,
            "in": "query",
            "description": self.description(config)
            if callable(self.description)
            else self.description,
        }
        if self.repeatable:
            described["style"] = "form"
            described["explode"] = True
        described["schema"] = dict(self.schema(config) if callable(self.schema) else self.schema)
        return described


LIMIT = QueryParameter(
    "limit",
    lambda config: f"Page size, 1 to {config['PAGE_SIZE_MAX']}.",
    lambda config: {
        "type": "integer",
        "minimum": 1,
        "maximum": config["PAGE_SIZE_MAX"],
        "default": config["PAGE_SIZE_DEFAULT"],
    },
)
CURSOR = QueryParameter(
    "cursor",
    "The previous page's `next_cursor`, unchanged.",
    {"type": "string", "maxLength": CURSOR_MAX_LENGTH},
    shared=True,
)
PAGING = (LIMIT, CURSOR)
BIG_ID = {"type": "integer", "format": "int64", "minimum": 1}
POSITIVE_BIGINT = {**BIG_ID, "maximum": MAX_BIGINT}

#: parameters outside the query string, referred to by name
SHARED_PARAMETERS: dict[str, dict[str, Any]] = {
    "user_id": {
        "name": "user_id",
        "in": "path",
        "required": True,
        "description": "The profile's id.",
        "schema": BIG_ID,
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
            "pattern": f'^(\\*|"[1-9][0-9]{{0,{VERSION_DIGITS_MAX - 1}}}")$',
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
        "schema": {"type": "string", "pattern": CLIENT_ID_PATTERN},
    },
}


def _header(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "required": True, "schema": schema}


#: response headers, referred to by name from ``Reply.headers``
HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": _header(
        "The server's id of this request (never the client's), as in the logs and on "
        "audit entries.",
        {"type": "string", "pattern": CLIENT_ID_PATTERN},
    ),
    "ETag": _header(
        'The profile\'s version as a strong entity tag: `"3"`.',
        {"type": "string", "pattern": '^"[0-9]+"$'},
    ),
    "Location": _header("The new profile's URL.", {"type": "string", "format": "uri-reference"}),
    "WWW-Authenticate": _header(
        "The challenge: `Bearer realm=...`.", {"type": "string", "pattern": "^Bearer "}
    ),
    "Retry-After": _header(
        "Seconds to wait before retrying.", {"type": "string", "pattern": "^[0-9]+$"}
    ),
}


@dataclass(frozen=True)
class Body:
    """A JSON request body of ``shape`` (a declaration of ``webapp.api.schemas``)."""

    shape: type
    example: Any
    required: bool = True
    description: str = ""


@dataclass(frozen=True)
class Reply:
    """A successful response: ``shape`` is a declared type, or a JSON Schema as is."""

    description: str
    shape: type | Mapping[str, Any] | None = None
    example: Any = None
    #: response headers of ``HEADERS`` besides X-Request-ID
    headers: tuple[str, ...] = ()
    #: headers described on the spot
    own_headers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: operations taking this response's profile id (``$response.body#/id``)
    links: tuple[str, ...] = ()
    media_types: tuple[str, ...] = ("application/json",)


#: an error status -> ``None`` for its usual description, or what it means here
ErrorNote = str | None


@dataclass(frozen=True)
class Operation:
    operation_id: str
    tag: str
    summary: str
    description: str
    permission: str | None
    query: tuple[QueryParameter, ...]
    body: Body | None
    if_match: bool
    responses: Mapping[int, Reply | ErrorNote]
    query_names: frozenset[str]
    repeatable_names: frozenset[str]


def documented(
    operation_id: str,
    *,
    tag: str,
    summary: str,
    permission: str | None,
    responses: Mapping[int, Reply | ErrorNote],
    query: tuple[QueryParameter, ...] = (),
    body: Body | None = None,
    if_match: bool = False,
    description: str | None = None,
) -> Callable[[F], F]:
    """Declare the view's operation; ``permission=None`` makes it public."""

    def decorate(view: F) -> F:
        text = description or inspect.cleandoc(view.__doc__ or "")
        # Paragraphs as single lines: the docstring's wrapping is not the text's.
        text = "\n\n".join(" ".join(p.split()) for p in text.split("\n\n") if p.strip())
        operation = Operation(
            operation_id=operation_id,
            tag=tag,
            summary=summary,
            description=text,
            permission=permission,
            query=query,
            body=body,
            if_match=if_match,
            responses=responses,
            query_names=frozenset(p.name for p in query),
            repeatable_names=frozenset(p.name for p in query if p.repeatable),
        )
        guarded = requires(permission)(view) if permission else public(view)
        guarded.api_operation = operation  # type: ignore[attr-defined]
        return guarded

    return decorate


def operation_of(view: Callable[..., Any]) -> Operation | None:
    return getattr(view, "api_operation", None)


def declared_query() -> dict[str, list[str]]:
    """The query string as name → values, holding only the view's declared parameters."""
    operation: Operation = current_app.view_functions[request.endpoint].api_operation  # type: ignore[index]
    return query_args(operation.query_names, repeatable=operation.repeatable_names)


# --------------------------------------------------------------------------
# Errors: what each status means and which problem types it carries


def _problem_types(*classes: type[service_errors.ServiceError], blank: bool) -> list[str]:
    return (["about:blank"] if blank else []) + [TYPE_PREFIX + cls.code for cls in classes]


# ``about:blank`` is the plain HTTP error (bad JSON, a routing 404, a wrong method...).
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
        service_errors.AlreadyErased,
        service_errors.TrailNotEncrypted,
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
#: what a body brings: refused input, too large, not JSON
BODY_ERRORS: dict[int, ErrorNote] = {400: None, 413: None, 415: None}
NO_QUERY = "A query parameter was given: this endpoint takes none."
_STATUS_HEADERS = {401: "WWW-Authenticate", 503: "Retry-After"}


# --------------------------------------------------------------------------
# An operation as the document describes it


def _headers(*names: str) -> dict[str, Any]:
    return {name: {"$ref": HEADER_REF + name} for name in ("X-Request-ID", *names)}


def _problem_response(status: int, note: ErrorNote) -> dict[str, Any]:
    schema = {
        "allOf": [
            ref("Problem"),
            {"properties": {"status": {"const": status}, "type": {"enum": PROBLEM_TYPES[status]}}},
        ]
    }
    extra = (_STATUS_HEADERS[status],) if status in _STATUS_HEADERS else ()
    return {
        "description": note or ERROR_DESCRIPTIONS[status],
        "headers": _headers(*extra),
        "content": {PROBLEM_MEDIA_TYPE: {"schema": schema}},
    }


def _schema(shape: type | Mapping[str, Any]) -> dict[str, Any]:
    return ref(shape.__name__) if isinstance(shape, type) else dict(shape)


def _reply(reply: Reply) -> dict[str, Any]:
    described: dict[str, Any] = {
        "description": reply.description,
        "headers": {**_headers(*reply.headers), **reply.own_headers},
    }
    if reply.shape is not None:
        media: dict[str, Any] = {"schema": _schema(reply.shape)}
        if reply.example is not None:
            media["example"] = reply.example
        described["content"] = dict.fromkeys(reply.media_types, media)
    if reply.links:
        described["links"] = {
            op_id: {
                "operationId": op_id,
                "parameters": {"user_id": "$response.body#/id"},
                "description": "The same profile.",
            }
            for op_id in reply.links
        }
    return described


def _roles_with(permission: str) -> list[str]:
    return [role for role, allowed in permissions.ROLE_PERMISSIONS.items() if permission in allowed]


def describe(operation: Operation, config: Config) -> dict[str, Any]:
    """The OpenAPI Operation Object of ``operation``."""
    description = operation.description
    statuses: dict[int, Reply | ErrorNote] = dict(operation.responses)
    roles = _roles_with(operation.permission) if operation.permission else []
    if operation.permission:
        description += (
            f"\n\nNeeds the `{operation.permission}` permission: "
            f"role {', '.join(f'`{r}`' for r in roles)}."
        )
        # 403 only where some role lacks the permission; 503: everything but the
        # public document needs the database.
        statuses.setdefault(401, None)
        if len(roles) < len(permissions.ROLE_PERMISSIONS):
            statuses.setdefault(403, None)
        statuses.setdefault(503, None)
    parameters = [p.described(config) for p in operation.query]
    if operation.if_match:
        parameters.append({"$ref": PARAMETER_REF + "If-Match"})
    described: dict[str, Any] = {
        "operationId": operation.operation_id,
        "tags": [operation.tag],
        "summary": operation.summary,
        "description": description,
        "parameters": [*parameters, {"$ref": PARAMETER_REF + "X-Request-ID"}],
    }
    if operation.body is not None:
        body = operation.body
        described["requestBody"] = {
            "required": body.required,
            "content": {
                "application/json": {"schema": _schema(body.shape), "example": body.example}
            },
        }
        if body.description:
            described["requestBody"]["description"] = body.description
    described["responses"] = {
        str(status): _reply(answer)
        if isinstance(answer, Reply)
        else _problem_response(status, answer)
        for status, answer in sorted(statuses.items())
    }
    if operation.permission:
        described["x-permission"] = operation.permission
        described["x-roles"] = roles
    else:
        described["security"] = []
    return described


def shared_parameters(operations: list[Operation], config: Config) -> dict[str, Any]:
    """``components.parameters``: the fixed ones and the shared query parameters in use."""
    shared = {p.name: p.component(config) for op in operations for p in op.query if p.shared}
    return {**SHARED_PARAMETERS, **shared}
