"""RFC 9457 problem details: the only error format of the JSON API, ``/metrics``,
bearer authentication and the error handlers under ``/api``."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Protocol

from flask import Response, current_app, g, json

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:profile-audit:problem:"


class Refusal(Protocol):
    """What a refused request says about itself (``webapp.services.errors.ServiceError``)."""

    status: int
    code: str
    title: str
    detail: str
    errors: dict[str, list[str]]


def problem(
    status: int,
    *,
    detail: str | None = None,
    title: str | None = None,
    code: str | None = None,
    errors: Mapping[str, list[str]] | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: object,
) -> Response:
    """A ``application/problem+json`` response.

    ``code`` names a problem type of this API; without it the type is
    ``about:blank`` and the title is the HTTP status phrase.
    """
    phrase = HTTPStatus(status).phrase
    body: dict[str, object] = {
        "type": TYPE_PREFIX + code if code else "about:blank",
        "title": title or phrase,
        "status": status,
        "detail": detail or phrase,
    }
    if errors:
        body["errors"] = dict(errors)
    request_id = g.get("request_id")
    if request_id:
        body["request_id"] = request_id
    body.update(extra)
    response = current_app.response_class(
        json.dumps(body), status=status, mimetype=PROBLEM_MEDIA_TYPE
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def service_problem(error: Refusal, status: int | None = None, **extra: object) -> Response:
    """The problem response for a refused service call, with its own status unless told."""
    return problem(
        status or error.status,
        detail=error.detail,
        title=error.title,
        code=error.code,
        errors=error.errors,
        **extra,
    )
