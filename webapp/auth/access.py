"""Role checks for views and endpoints."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import abort, g, request
from flask_login import current_user

from webapp.auth.permissions import ROLE_PERMISSIONS, role_allows
from webapp.auth.web_session import ENDED_DURING_UPDATE, sign_in_again
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
                if request.headers.get("HX-Request") == "true":
                    return sign_in_again(ENDED_DURING_UPDATE)
                return sign_in_again()
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
                if is_api_request():
                    abort(403)
                abort(403, description=_needed_role(staff.role, permission))
            return view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate


def _needed_role(role: str, permission: str) -> str:
    """What a refused person reads: which roles may do this, and whom to ask."""
    allowed = [name for name, granted in ROLE_PERMISSIONS.items() if permission in granted]
    roles = " or ".join(f"the {name} role" for name in allowed)
    return (
        f"This needs {roles}; you are signed in with the {role} role. "
        "If your work needs it, ask an admin to change your role."
    )
