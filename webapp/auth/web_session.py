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
from urllib.parse import urlsplit

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
_EXPIRED = "Your session has expired. Please sign in again."
#: Said when a live update (a save, a search) found the session gone.
ENDED_DURING_UPDATE = (
    "Your session has ended. Sign in again to continue where you were; "
    "an edit you had not saved is kept in this browser tab."
)


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


def _asked_by_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def page_to_return_to() -> str | None:
    """The page the person is on, as a path of this site, to come back to after signing in.

    A request htmx made from a page (a save, a live search) is not that page:
    htmx names the page in ``HX-Current-URL``. A plain GET is the page
    itself; a plain form post came from the page in ``Referer``. Either
    counts only when it is on this very site.
    """
    if _asked_by_htmx():
        return _path_on_this_site(request.headers.get("HX-Current-URL"))
    if request.method in ("GET", "HEAD"):
        return request.full_path.rstrip("?")
    return _path_on_this_site(request.referrer)


def _path_on_this_site(url: str | None) -> str | None:
    current = urlsplit(url or "")
    here = urlsplit(request.host_url)
    if (current.scheme, current.netloc) != (here.scheme, here.netloc) or not current.path:
        return None
    path = current.path + (f"?{current.query}" if current.query else "")
    # Only a plain path: never "//host", a backslash or control characters.
    if path.startswith("//") or any(ch == "\\" or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        return None
    return path


def sign_in_again(message: str | None = None) -> Response:
    """Send the person to the sign-in page, to come back to the page they are on.

    htmx would follow a redirect by itself and paste the sign-in page into the
    spot it was updating, under a header still showing the account: it is
    told to load the sign-in page as a whole page instead (``HX-Redirect``).
    """
    if message:
        flash(message, "info")
    target = url_for("web.login", next=page_to_return_to())
    if _asked_by_htmx():
        response = Response(status=401)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target)


def reload_page(message: str) -> Response:
    """Have htmx load the page it was on again (a fresh form token), saying why."""
    flash(message, "info")
    response = Response(status=400)
    response.headers["HX-Redirect"] = page_to_return_to() or url_for("web.index")
    return response


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
    return sign_in_again(_EXPIRED)


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
        if _asked_by_htmx():
            # An htmx update answered with an error page would paste a whole
            # page into the spot it updates: load a page instead.
            if staff is None:
                return sign_in_again(ENDED_DURING_UPDATE)
            return reload_page(
                "The page had been open too long to send changes from, so it was "
                "reloaded. Nothing was saved: open the form again to get back "
                "what you had typed."
            )
        from webapp.errors import error_page

        return error_page(
            400, "The form was stale or not sent from this site. Reload and try again."
        )
