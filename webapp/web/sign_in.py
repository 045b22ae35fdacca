"""Signing in and out of the dashboard."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from webapp.auth.access import current_staff
from webapp.auth.permissions import AUDIT_READ, STAFF_MANAGE, role_allows
from webapp.auth.web_session import end_session, start_session
from webapp.models import Staff
from webapp.services.security_events import record_event
from webapp.services.sign_in_throttle import TooManyAttempts
from webapp.services.staff import InvalidCredentials, authenticate
from webapp.web import bp
from webapp.web.forms import SignInForm


def landing_page(staff: Staff) -> str:
    """Where a sign-in without a destination goes: support staff work in the
    profile search, so they start there; other roles start at the home page,
    which leads to their pages."""
    if not role_allows(staff.role, AUDIT_READ) and not role_allows(staff.role, STAFF_MANAGE):
        return url_for("web.users_list")
    return url_for("web.index")


def safe_next(target: str | None, fallback: str | None = None) -> str:
    """``target`` if it is a path on this site, else ``fallback`` (the home page).

    Only a path that starts with exactly one slash is accepted: ``//host``
    and ``/\\host`` are read by browsers as another site, and anything with a
    scheme or host is another site outright.
    """
    fallback = fallback or url_for("web.index")
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return fallback
    if "\\" in target or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target):
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return fallback
    # A bare trailing "?" (from a request without a query string) is noise.
    return target.removesuffix("?")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """The sign-in form; a success starts a fresh session and goes where the user was headed."""
    form = SignInForm()
    # HEAD asks for what GET would answer, never for a sign-in attempt.
    showing = request.method in ("GET", "HEAD")
    if showing:
        form.next.data = request.args.get("next", "")
    requested = form.next.data or request.args.get("next")
    signed_in = current_staff()
    if signed_in is not None:
        return redirect(safe_next(requested, landing_page(signed_in)))
    if showing:
        return render_template("login.html", form=form), 200
    if not form.validate():
        return render_template("login.html", form=form), 400
    try:
        staff = authenticate(
            form.username.data, form.password.data, remote_addr=request.remote_addr
        )
    except TooManyAttempts as error:
        return (
            render_template("login.html", form=form, message=error.detail),
            error.status,
            {"Retry-After": str(error.retry_after)},
        )
    except InvalidCredentials as error:
        return render_template("login.html", form=form, message=error.detail), error.status
    start_session(staff)
    return redirect(safe_next(requested, landing_page(staff)))


@bp.post("/logout")
def logout() -> Response:
    """End the session (POST only, so another site cannot sign anyone out)."""
    staff = current_staff()
    end_session("signed_out")
    if staff is not None:
        # Committed with the session's end on the server.
        record_event("logout", staff_id=staff.id, username=staff.username)
    # After end_session: it clears the session, flashed messages included.
    flash("You have signed out.", "info")
    return redirect(url_for("web.login"))
