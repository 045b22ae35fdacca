"""The audit timeline for auditors: filters, diffs, activity chart, exports."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Protocol

from flask import Response, current_app, request, stream_with_context, url_for

from webapp.auth.access import requires
from webapp.auth.permissions import AUDIT_READ
from webapp.errors import error_page
from webapp.models import OPERATIONS
from webapp.services import audit_export, audit_integrity, audit_views
from webapp.services.audit_filter import AuditFilter
from webapp.services.audit_log import list_entries
from webapp.services.errors import ValidationFailed
from webapp.services.pagination import parse_limit
from webapp.services.security_events import record_event
from webapp.timestamps import utcnow
from webapp.typed_text import parse_flag
from webapp.web import bp
from webapp.web.filter_chips import filter_chips
from webapp.web.profile_lookup import look_up_profile
from webapp.web.rendering import render_page, wants_fragment, without_empty_parameters
from webapp.web.timeline_presenters import TimelineLinks, activity_chart, quick_ranges

TEMPLATE = "audit/timeline.html"


def _query() -> audit_views.TimelineQuery:
    """The filter in this request's query string."""
    return audit_views.read_timeline_query(request.args.to_dict(flat=False))


@bp.get("/audit")
@requires(AUDIT_READ)
def audit_timeline() -> Response:
    """Entries matching the filter in the URL, newest first, with their activity.

    htmx asks for the results block when the filter changes and for the
    next rows (``cursor``) when the reader scrolls to the end; anything
    else, a history restore included, gets the whole page.
    """
    cleaned = without_empty_parameters()
    if cleaned is not None:
        return cleaned
    query = _query()
    links = TimelineLinks(query)
    cursor = request.args.get("cursor") or None
    config = current_app.config
    context = {
        "query": query,
        "links": links,
        "operations": OPERATIONS,
        "snapshot_fields": audit_views.SNAPSHOT_FIELDS,
        "quick_ranges": quick_ranges(),
        "fragment": wants_fragment(),
        "cursor": cursor,
        "limit_param": request.args.get("limit") or None,
        # Called by the template only when it renders the whole page.
        "verification_status": audit_integrity.verification_status,
        "filter_chips": filter_chips,
    }
    block = "rows" if cursor else "results"
    try:
        limit = parse_limit(request.args.get("limit"), default=25, maximum=config["PAGE_SIZE_MAX"])
    except ValidationFailed as error:
        query.errors.setdefault("limit", []).extend(error.errors.get("limit", [error.detail]))
        return render_page(TEMPLATE, "results", status=400, **context)
    if query.errors:
        return render_page(TEMPLATE, "results", status=400, **context)
    if query.audit_filter is None:
        # A search that matched several profiles or none: nothing to list yet.
        return render_page(TEMPLATE, "results", **context)
    try:
        page = list_entries(query.audit_filter, limit=limit, cursor=cursor)
    except ValidationFailed:
        query.errors["cursor"] = [
            "This link to older entries is not valid; start again from the newest."
        ]
        return render_page(TEMPLATE, "results", status=400, **context)
    extra = {"limit": context["limit_param"]} if context["limit_param"] else {}
    next_query = links.with_params(**extra, cursor=page.next_cursor) if page.next_cursor else None
    response = render_page(
        TEMPLATE,
        block,
        **context,
        entries=page.items,
        next_query=next_query,
        activity_url=None if cursor else f"{url_for('web.audit_activity')}?{links.query_string}",
    )
    if wants_fragment():
        # Heard through the page's live region (static/app.js): the list
        # itself changes silently.
        count = len(page.items)
        news = f"{count} {'more ' if cursor else ''}{'entry' if count == 1 else 'entries'}"
        response.headers["HX-Trigger"] = json.dumps({"announce": news})
    return response


@bp.get("/audit/activity")
@requires(AUDIT_READ)
def audit_activity() -> Response:
    """The activity chart of the filter in the URL: a fragment for the
    timeline page, which loads it after the entries, or a page of its own."""
    query = _query()
    if query.errors or query.audit_filter is None:
        return render_page(
            "audit/activity.html",
            "activity",
            status=400 if query.errors else 200,
            query=query,
            links=TimelineLinks(query),
            operations=OPERATIONS,
            chart=None,
        )
    return render_page(
        "audit/activity.html",
        "activity",
        query=query,
        links=TimelineLinks(query),
        operations=OPERATIONS,
        chart=activity_chart(audit_views.activity(query.audit_filter)),
    )


_EXPORT_FORMS = {"": "wide", "wide": "wide", "long": "long"}


def _export(kind: str, mimetype: str, lines: Callable[[AuditFilter], Iterator[bytes]]) -> Response:
    """Stream the filter's entries as a download named after the filter; a bad
    filter is a 400 page. A CSV may be ``form=long`` (one row per changed
    field) and ``excel=1`` (a byte order mark first, so Excel reads UTF-8)."""
    query = _query()
    form = _EXPORT_FORMS.get(request.args.get("form", "")) if kind == "csv" else "wide"
    if query.errors or query.audit_filter is None or form is None:
        problems = [f"{name}: {m}" for name, messages in query.errors.items() for m in messages]
        if form is None:
            problems.append("form: must be wide or long")
        if not problems:
            problems = [f"The user “{query.user_search}” does not name exactly one profile."]
        return error_page(400, "The export was not made. " + " ".join(problems))
    excel = kind == "csv" and bool(parse_flag(request.args.get("excel"), default=False))
    if request.method == "GET":  # a HEAD request exports nothing
        # Personal data leaving the application: who took which part is a security event.
        details = {"format": kind, "filter": TimelineLinks(query).query_string}
        if form == "long" or excel:
            details.update(form=form, excel=excel)
        record_event("audit_exported", details=details)
    chunks = (
        lines(query.audit_filter)
        if form == "wide"
        else audit_export.long_csv_lines(query.audit_filter)
    )
    if excel:
        chunks = audit_export.for_excel(chunks)
    name_form = "-".join(
        part for part in ("long" if form == "long" else "", "excel" if excel else "") if part
    )
    filename = audit_export.export_filename(query.audit_filter, kind, form=name_form)
    response = Response(stream_with_context(chunks), mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@bp.get("/audit/export.csv")
@requires(AUDIT_READ)
def audit_export_csv() -> Response:
    """Every entry of the filter as CSV, streamed; cells safe to open in a spreadsheet."""
    return _export("csv", "text/csv", audit_export.csv_lines)


@bp.get("/audit/export.ndjson")
@requires(AUDIT_READ)
def audit_export_ndjson() -> Response:
    """Every entry of the filter as newline-delimited JSON, streamed."""
    return _export("ndjson", "application/x-ndjson", audit_export.ndjson_lines)


@bp.get("/audit/compare")
@requires(AUDIT_READ)
def audit_compare() -> Response:
    """Two versions of one profile side by side; 400 for bad input, 404 for no profile."""
    return _profile_versions_page(
        "audit/compare.html",
        "comparison",
        lambda user_id, typed: audit_views.compare_versions(user_id, typed("from"), typed("to")),
        ("from", "to"),
    )


@bp.get("/audit/as-of")
@requires(AUDIT_READ)
def audit_as_of() -> Response:
    """A profile as it was at a moment; 400 for bad input, 404 for no profile."""
    return _profile_versions_page(
        "audit/as_of.html",
        "as_of",
        lambda user_id, typed: audit_views.profile_as_of(user_id, typed("at")),
        ("at",),
        now=utcnow(),
    )


class _ShownVersions(Protocol):
    values: dict[str, str]
    errors: dict[str, list[str]]


def _profile_versions_page(
    template: str,
    name: str,
    read: Callable[[str | None, Callable[[str], str | None]], _ShownVersions],
    typed_names: tuple[str, ...],
    **context: object,
) -> Response:
    """A page about one profile's versions, the profile given by id or by name or email.

    While the profile is being looked up (several or no matches), the other
    fields are not read yet but shown back as typed, with the lookup's complaints.
    """
    cleaned = without_empty_parameters()
    if cleaned is not None:
        return cleaned
    raw_user = request.args.get("user_id")
    lookup = look_up_profile(raw_user)
    looking_up = lookup.search is not None
    shown = read(lookup.user_id, lambda field: None if looking_up else request.args.get(field))
    if looking_up:
        shown.values["user_id"] = raw_user or ""
        for field in typed_names:
            shown.values[field] = request.args.get(field, "")
        if lookup.errors:
            shown.errors["user_id"] = lookup.errors
    status = 400 if shown.errors else 200
    return render_page(template, status=status, lookup=lookup, **{name: shown}, **context)
