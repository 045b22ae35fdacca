"""Erasing a profile's personal data from the dashboard: admins only, after a
confirmation page that says what cannot be undone, with a required reason.

The page works as a plain form; htmx posts it and gets the form back (its
``erase_form`` block) when the erasure is refused, or is sent to the erased
profile's page when it is done.
"""

from __future__ import annotations

from flask import flash, redirect, request, url_for
from werkzeug.wrappers import Response

from webapp.audit.personal_data import ERASED
from webapp.auth.access import requires
from webapp.auth.permissions import PERSONAL_DATA_ERASE
from webapp.models import User
from webapp.services import privacy, users
from webapp.services.errors import AlreadyErased, ServiceError, ValidationFailed
from webapp.services.profile_rules import REASON_MAX
from webapp.web import bp
from webapp.web.rendering import render_page, wants_fragment


def _erase_page(
    user: User,
    *,
    status: int = 200,
    message: str | None = None,
    reason_error: str | None = None,
    reason: str | None = None,
) -> Response:
    return render_page(
        "profiles/erase.html",
        "erase_form",
        status=status,
        user=user,
        message=message,
        reason_error=reason_error,
        reason=reason,
        erased_marker=ERASED,
        reason_max=REASON_MAX,
    )


@bp.get("/users/<int:user_id>/erase")
@requires(PERSONAL_DATA_ERASE)
def user_erase_confirm(user_id: int) -> Response:
    """Ask before erasing, saying what it does, with the reason to give."""
    return _erase_page(users.get_user(user_id))


@bp.post("/users/<int:user_id>/erase")
@requires(PERSONAL_DATA_ERASE)
def user_erase(user_id: int) -> Response:
    """Erase the profile's personal data, then show the erased profile."""
    user = users.get_user(user_id)
    reason = request.form.get("reason")
    try:
        erased = privacy.erase_user(user_id, reason=reason)
    except ValidationFailed as error:
        # No reason, or one the rules refuse: asked again, with what was typed.
        messages = error.errors.get("reason")
        return _erase_page(
            user,
            status=error.status,
            message=None if messages else error.detail,
            reason_error=messages[0] if messages else None,
            reason=reason,
        )
    except AlreadyErased:
        # Someone else was quicker: the page now says the profile is erased.
        return _erase_page(users.get_user(user_id), status=AlreadyErased.status)
    except ServiceError as error:
        return _erase_page(user, status=error.status, message=error.detail, reason=reason)
    flash(
        f"Personal data of profile #{erased.id} erased: its history shows {ERASED} "
        "in place of every name and email.",
        "success",
    )
    target = url_for("web.user_detail", user_id=erased.id)
    if wants_fragment():
        # A new page, not a piece of this one: htmx loads it whole.
        response = Response(status=204)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target)
