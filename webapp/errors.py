"""Error responses: problem+json under /api, an HTML page elsewhere.

No client ever sees a stack trace: unexpected errors are logged with the
request id and answered with a generic 500 that carries that id.
"""

from __future__ import annotations

from http import HTTPStatus

from flask import Flask, Response, g, render_template
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from werkzeug.exceptions import HTTPException

from webapp.audit.errors import AuditBypassError
from webapp.extensions import db
from webapp.http.api_paths import is_api_request
from webapp.http.problems import problem


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
        if is_api_request():
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
            503,
            # The connection may have died after COMMIT was sent, so the change
            # may exist; it never exists without its audit entry either way.
            "The database is unavailable, so the change could not be confirmed. "
            "Check the current data and try again shortly.",
        )
        response.headers["Retry-After"] = "5"
        return response

    # Registered after Flask-SQLAlchemy's own teardown (create_app binds the
    # database first), so it runs before it: Flask runs the last-registered first.
    @app.teardown_appcontext
    def close_session(error: BaseException | None) -> None:
        # By now the response is made, and a change may have committed. If the
        # connection died since (a restart, a killed backend), ending the
        # transaction fails; letting that escape would replace the response with
        # the server's bare error page and leave the broken session registered
        # for a later request. Drop the connection instead: the pool replaces it.
        try:
            db.session.remove()
        except SQLAlchemyError as failure:
            app.logger.warning(
                "could not end the database session (request id %s): %s",
                g.get("request_id"),
                getattr(failure, "orig", None) or failure,
            )
            db.session().invalidate()
            db.session.remove()

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
    if is_api_request():
        return problem(status, detail=detail)
    return error_page(status, detail)
