"""Dashboard sign-in sessions: Flask-Login over a record kept on the server.

Flask's signed cookie carries the account id and a random session token; the
session itself is a row of ``staff_sessions`` (``services.staff_sessions``),
looked up on every request. Signing out, a password or role change and
deactivation end it there, so a copy of the cookie replayed later opens
nothing; idle and absolute lifetimes are counted on the server too, so no
request can extend a session past them.
"""

from __future__ import annotations

from datetime import timedelta

from flask import (
    Flask,
    Response,
    flash,
    g,
    has_request_context,
    redirect,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask_login import LoginManager, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError

from webapp.audit.context import Actor, bind_actor
from webapp.http.api_paths import is_api_request
from webapp.models import Staff, StaffSession
from webapp.services import staff_sessions
from webapp.services.security_events import record_event

login_manager = LoginManager()
login_manager.login_view = "web.login"
login_manager.login_message = "Please sign in to continue."
login_manager.session_protection = None  # session rotation is done at sign-in

#: The cookie's key for the session token (Flask-Login keeps the account id).
SESSION_TOKEN_KEY = "session_token"  # noqa: S105 - a dictionary key, not a secret
#: Lifetimes that ran out: the person is told, and the event recorded.
_LIFETIMES = {"idle": "idle", "max_age": "max age"}


class SessionInterface(SecureCookieSessionInterface):
    """Marks the cookie Secure whenever the request came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or (
            has_request_context() and request.is_secure
        )


@login_manager.user_loader
def load_staff(staff_id: str) -> Staff | None:
    """The account of the cookie's session while that session is open on the server."""
    record = staff_sessions.find_session(session.get(SESSION_TOKEN_KEY))
    if record is None or str(record.staff_id) != staff_id:
        return None
    why = staff_sessions.why_over(record)
    if why is not None:
        if why in _LIFETIMES and record.ended_at is None:
            # Ran out just now: say so once, and record it.
            g.session_ran_out = (record, why)
        return None
    g.staff_session = record
    return record.staff


def start_session(staff: Staff) -> None:
    """Sign ``staff`` in on a fresh session (old session data and CSRF token dropped)."""
    session.clear()
    token = staff_sessions.start_session(
        staff, remote_addr=request.remote_addr, user_agent=request.user_agent.string
    )
    login_user(staff)
    session[SESSION_TOKEN_KEY] = token
    # The cookie only needs to outlive the server's absolute lifetime.
    session.permanent = True


def end_session(reason: str = "signed_out") -> None:
    """End the current session on the server (uncommitted) and drop the cookie's."""
    record = g.pop("staff_session", None)
    if record is not None:
        staff_sessions.end_session(record, reason)
    logout_user()
    session.clear()


def _session_expired(record: StaffSession, why: str) -> Response:
    staff_sessions.end_session(record, why)
    record_event(
        "session_expired",
        staff_id=record.staff_id,
        username=record.staff.username,
        details={"why": _LIFETIMES[why]},
    )
    logout_user()
    session.clear()
    flash("Your session has expired. Please sign in again.", "info")
    return redirect(url_for("web.login", next=request.full_path.rstrip("?")))


def init_app(app: Flask) -> None:
    app.session_interface = SessionInterface()
    app.permanent_session_lifetime = timedelta(hours=app.config["SESSION_MAX_HOURS"])
    # No template hook: pages get the account from the view, and the hook
    # would reload it (and fail again) while rendering a database error page.
    login_manager.init_app(app, add_context_processor=False)

    @app.before_request
    def check_web_session() -> Response | None:
        if is_api_request() or request.endpoint == "static":
            return None
        if not current_user.is_authenticated:
            ran_out = g.pop("session_ran_out", None)
            if ran_out is not None:
                return _session_expired(*ran_out)
            if SESSION_TOKEN_KEY in session:
                # The session ended elsewhere (signed out, password changed...):
                # drop the dead token (and nothing else: a CSRF token for the
                # sign-in form may be in the same cookie).
                logout_user()
                session.pop(SESSION_TOKEN_KEY, None)
            return None
        staff: Staff = current_user._get_current_object()  # type: ignore[assignment]
        staff_sessions.keep_alive(g.staff_session)
        g.actor_token = bind_actor(Actor(staff_id=staff.id, label=staff.username))
        return None

    @app.errorhandler(CSRFError)
    def csrf_refused(error: CSRFError) -> Response:
        staff = current_user if current_user.is_authenticated else None
        record_event(
            "csrf_failed",
            staff_id=staff.id if staff else None,
            username=staff.username if staff else None,
            details={"path": request.path, "method": request.method, "why": error.description},
        )
        from webapp.errors import error_page

        return error_page(
            400, "The form was stale or not sent from this site. Reload and try again."
        )
