"""Role checks for views and endpoints."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import abort, g, redirect, request, url_for
from flask_login import current_user

from webapp.auth.permissions import role_allows
from webapp.http.api_paths import is_api_request
from webapp.models import Staff
from webapp.services.security_events import record_event

F = TypeVar("F", bound=Callable[..., Any])


def current_staff() -> Staff | None:
    """The signed-in account (dashboard) or the token's owner (API).

    API requests never fall back to the session cookie: that is what makes it
    safe to exempt them from CSRF checks.
    """
    if is_api_request():
        return g.get("api_staff")
    if current_user.is_authenticated:
        return current_user._get_current_object()  # type: ignore[no-any-return]
    return None


def can(permission: str) -> bool:
    staff = current_staff()
    return staff is not None and role_allows(staff.role, permission)


def requires(permission: str) -> Callable[[F], F]:
    """Allow the view only to roles with ``permission``; others get 403 (logged)."""

    def decorate(view: F) -> F:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            staff = current_staff()
            if staff is None:
                if is_api_request():
                    abort(401)
                return redirect(url_for("web.login", next=request.full_path.rstrip("?")))
            if not role_allows(staff.role, permission):
                record_event(
                    "forbidden",
                    staff_id=staff.id,
                    username=staff.username,
                    details={
                        "permission": permission,
                        "path": request.path,
                        "method": request.method,
                    },
                )
                abort(403)
            return view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate
