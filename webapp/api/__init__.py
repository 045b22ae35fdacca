"""The JSON API for scripts, under ``/api/v1``.

Handlers are thin: read and check input, call a service, shape the output.
Every error is ``application/problem+json``.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from webapp.api.representations import user_json
from webapp.http.problems import service_problem
from webapp.services.errors import ServiceError, StaleVersion

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.before_request
def answer_options() -> Response | None:
    """``OPTIONS``: 204 with the path's methods in ``Allow``, no body (Flask's own is HTML)."""
    if request.method != "OPTIONS":
        return None
    response = current_app.make_default_options_response()
    response.status_code = 204
    response.headers.remove("Content-Type")
    return response


@bp.errorhandler(ServiceError)
def refused(error: ServiceError) -> Response:
    if isinstance(error, StaleVersion):
        # A refused precondition (If-Match or expected version) is 412; a race
        # lost while saving without one is a plain conflict.
        status = 412 if error.expected_version is not None else error.status
        extra = {"current": user_json(error.current)} if error.current is not None else {}
        return service_problem(error, status, **extra)
    return service_problem(error)


# Routes register on bp in this order, which is the OpenAPI document's.
from webapp.api import users  # noqa: E402, F401

# isort: split
from webapp.api import privacy  # noqa: E402, F401

# isort: split
from webapp.api import audit, openapi  # noqa: E402, F401
