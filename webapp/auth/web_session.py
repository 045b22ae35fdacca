"""Dashboard sign-in sessions (Flask-Login over Flask's signed cookie).

The session stores the account id with its session version, so a password
change or deactivation ends every session at once. Idle and absolute
timeouts are checked on each request.
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
from webapp.auth import is_api_request
from webapp.models import Staff
from webapp.services.security_events import record_event
from webapp.services.staff import staff_for_session
from webapp.timestamps import iso_utc, parse_iso_datetime, utcnow

login_manager = LoginManager()
login_manager.login_view = "web.login"
login_manager.login_message = "Please sign in to continue."
login_manager.session_protection = None  # session rotation is done at sign-in


class SessionInterface(SecureCookieSessionInterface):
    """Marks the cookie Secure whenever the request came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or (
            has_request_context() and request.is_secure
        )


@login_manager.user_loader
def load_staff(key: str) -> Staff | None:
    return staff_for_session(key)


def start_session(staff: Staff) -> None:
    """Sign ``staff`` in on a fresh session (old session data and CSRF token dropped)."""
    session.clear()
    login_user(staff)
    now = iso_utc(utcnow())
    session["signed_in_at"] = now
    session["seen_at"] = now
    session.permanent = True


def end_session() -> None:
    logout_user()
    session.clear()


def _expired(app: Flask) -> bool:
    now = utcnow()
    try:
        signed_in = parse_iso_datetime(session.get("signed_in_at", ""))
        seen = parse_iso_datetime(session.get("seen_at", ""))
    except ValueError:
        return True
    idle = timedelta(minutes=app.config["SESSION_IDLE_MINUTES"])
    absolute = timedelta(hours=app.config["SESSION_MAX_HOURS"])
    return now - seen > idle or now - signed_in > absolute


def _touch() -> None:
    # Rewriting the cookie on every request is wasteful; a minute's precision
    # is plenty for an idle timeout counted in minutes.
    seen = session.get("seen_at")
    now = utcnow()
    if not seen or now - parse_iso_datetime(seen) > timedelta(minutes=1):
        session["seen_at"] = iso_utc(now)


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
            return None
        staff: Staff = current_user._get_current_object()  # type: ignore[assignment]
        if _expired(app):
            record_event("session_expired", staff_id=staff.id, username=staff.username)
            end_session()
            flash("Your session has expired. Please sign in again.", "info")
            return redirect(url_for("web.login", next=request.full_path.rstrip("?")))
        _touch()
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
