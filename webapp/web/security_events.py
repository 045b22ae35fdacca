"""The security event log: sign-ins, account and token changes, refusals, exports."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Response, current_app, render_template, request, stream_with_context

from webapp.auth.access import requires
from webapp.auth.permissions import SECURITY_EVENTS_READ
from webapp.errors import error_page
from webapp.services import security_events as events_service
from webapp.services.errors import ValidationFailed
from webapp.services.pagination import parse_limit
from webapp.timestamps import utcnow
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


def _filter_args() -> dict[str, list[str]]:
    return {name: request.args.getlist(name) for name in events_service.FILTER_FIELDS}


@bp.get("/security-events")
@requires(SECURITY_EVENTS_READ)
def security_events() -> tuple[str, int] | Response:
    """Events newest first, filtered, one keyset page at a time.

    A bad filter is shown beside its field (400); a bad cursor is a 400 page.
    """
    config = current_app.config
    raw = _filter_args()
    values = {name: next((v.strip() for v in raw[name] if v.strip()), "") for name in raw}
    context = {
        "values": values,
        "labels": events_service.EVENT_LABELS,
        "event_label": events_service.event_label,
        "warning_events": WARNING_EVENTS,
        "repeat_minutes": int(events_service.REPEAT_WINDOW.total_seconds() // 60),
        "first_page": not request.args.get("cursor"),
        "limit": request.args.get("limit") or None,
    }
    try:
        event_filter = events_service.parse_event_filter(raw)
    except ValidationFailed as error:
        return render_template(
            "security_events.html", page=None, errors=error.errors, **context
        ), 400
    limit = parse_limit(
        request.args.get("limit"),
        default=config["PAGE_SIZE_DEFAULT"],
        maximum=config["PAGE_SIZE_MAX"],
    )
    try:
        page = events_service.list_events(
            event_filter, limit=limit, cursor=request.args.get("cursor") or None
        )
    except ValidationFailed:
        # The service's wording is for API clients; a person followed a link.
        return error_page(
            400, "This link to older events is not valid. Start again from the newest events."
        )
    params = event_filter.as_params(raw)
    sized = [*params, ("limit", context["limit"])] if context["limit"] else params
    return render_template(
        "security_events.html",
        page=page,
        errors={},
        filter_query=urlencode(params),
        newest_query=urlencode(sized),
        next_query=urlencode([*sized, ("cursor", page.next_cursor)]) if page.next_cursor else None,
        **context,
    ), 200


@bp.get("/security-events/export.csv")
@requires(SECURITY_EVENTS_READ)
def security_events_export_csv() -> Response:
    """Every event of the filter as CSV, streamed; the export is itself an event."""
    try:
        event_filter = events_service.parse_event_filter(_filter_args())
    except ValidationFailed as error:
        return error_page(400, f"The export was not made: {error.detail}.")
    if request.method == "GET":  # a HEAD request exports nothing
        events_service.record_event(
            "security_events_exported",
            details={"format": "csv", **events_service.describe_filter(event_filter)},
        )
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    response = Response(
        stream_with_context(events_service.csv_lines(event_filter)), mimetype="text/csv"
    )
    response.headers["Content-Disposition"] = f'attachment; filename="security-events-{stamp}.csv"'
    return response
