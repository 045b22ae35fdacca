"""The security event log: sign-ins, account and token changes, refusals."""

from __future__ import annotations

from flask import Response, current_app, render_template, request

from webapp.auth.access import requires
from webapp.auth.permissions import SECURITY_EVENTS_READ
from webapp.errors import error_page
from webapp.services.errors import ValidationFailed
from webapp.services.pagination import parse_limit
from webapp.services.security_events import list_events
from webapp.web import bp

# Events a reader should notice: refusals and anything that took access away.
WARNING_EVENTS = frozenset(
    {
        "login_failed",
        "login_throttled",
        "token_rejected",
        "csrf_failed",
        "forbidden",
        "staff_deactivated",
        "token_revoked",
    }
)


@bp.get("/security-events")
@requires(SECURITY_EVENTS_READ)
def security_events() -> str | Response:
    """Events newest first, one keyset page at a time (a bad cursor is a 400 page)."""
    config = current_app.config
    limit = parse_limit(
        request.args.get("limit"),
        default=config["PAGE_SIZE_DEFAULT"],
        maximum=config["PAGE_SIZE_MAX"],
    )
    try:
        page = list_events(limit=limit, cursor=request.args.get("cursor") or None)
    except ValidationFailed:
        # The service's wording is for API clients; a person followed a link.
        return error_page(
            400, "This link to older events is not valid. Start again from the newest events."
        )
    return render_template(
        "security_events.html",
        page=page,
        limit=limit if request.args.get("limit") else None,
        first_page=not request.args.get("cursor"),
        warning_events=WARNING_EVENTS,
    )
