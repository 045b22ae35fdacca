"""Error responses: problem+json under /api, an HTML page elsewhere.

No client ever sees a stack trace: unexpected errors are logged with the
request id and answered with a generic 500 that carries that id.
"""

from __future__ import annotations

from http import HTTPStatus

from flask import Flask, Response, g, render_template, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from webapp.api.problems import problem
from webapp.audit.errors import AuditBypassError


def _wants_problem_json() -> bool:
    return request.path == "/api" or request.path.startswith("/api/")


def init_app(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response | HTTPException:
        if error.response is not None:
            return error.response
        status = error.code or 500
        headers = {}
        if status == 405 and error.get_headers():
            allow = dict(error.get_headers()).get("Allow")
            if allow:
                headers["Allow"] = allow
        if _wants_problem_json():
            return problem(status, detail=error.description, headers=headers)
        response = error_page(status, error.description or HTTPStatus(status).phrase)
        response.headers.update(headers)
        return response

    @app.errorhandler(AuditBypassError)
    def audit_bypass(error: AuditBypassError) -> Response:
        app.logger.error("refused write that would bypass the audit log: %s", error)
        return _server_error()

    @app.errorhandler(OperationalError)
    def database_unavailable(error: OperationalError) -> Response:
        app.logger.error(
            "database unavailable (request id %s): %s", g.get("request_id"), error.orig
        )
        response = _server_error(
            503, "The database is unavailable; nothing was saved. Try again shortly."
        )
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        if isinstance(error, HTTPException):
            return http_error(error)  # type: ignore[return-value]
        app.logger.exception("unhandled error (request id %s)", g.get("request_id"), exc_info=error)
        return _server_error()


def error_page(status: int, detail: str) -> Response:
    """An HTML error page with ``status``."""
    return Response(
        render_template(
            "error.html", status=status, title=HTTPStatus(status).phrase, detail=detail
        ),
        status=status,
    )


def _server_error(
    status: int = 500,
    detail: str = "An unexpected error occurred. Quote the request id when reporting it.",
) -> Response:
    if _wants_problem_json():
        return problem(status, detail=detail)
    return error_page(status, detail)
