"""``/api/v1/audit``: the audit timeline, filtered, newest first."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import urlencode

from flask import Response, request, stream_with_context

from webapp.api import bp, schemas
from webapp.api.representations import (
    audit_entry_json,
    security_event_json,
    verification_json,
)
from webapp.api.request_input import page_limit, query_args, single
from webapp.api.schemas import respond
from webapp.auth.access import requires
from webapp.auth.permissions import AUDIT_READ, SECURITY_EVENTS_READ
from webapp.services import audit_export, audit_integrity, audit_log, security_events
from webapp.services.audit_filter import (
    FILTER_NAMES,
    FILTER_PARAMETERS,
    REPEATABLE_NAMES,
    AuditFilter,
    parse_audit_filter,
)
from webapp.services.errors import ValidationFailed
from webapp.timestamps import utcnow

#: ``format`` of an export -> its media type and the service writing its lines
#: (looked up when called: audit_export may still be importing this package)
EXPORT_FORMATS: dict[str, tuple[str, Callable[[AuditFilter], Iterator[str | bytes]]]] = {
    "csv": ("text/csv", lambda audit_filter: audit_export.csv_lines(audit_filter)),
    "ndjson": (
        "application/x-ndjson",
        lambda audit_filter: audit_export.ndjson_lines(audit_filter),
    ),
}


@bp.get("/audit")
@requires(AUDIT_READ)
def list_audit_entries() -> Response:
    args = query_args({*FILTER_NAMES, "limit", "cursor"}, repeatable=REPEATABLE_NAMES)
    audit_filter = parse_audit_filter(args)
    page = audit_log.list_entry_rows(
        audit_filter, limit=page_limit(args), cursor=single(args, "cursor")
    )
    items = [audit_entry_json(e) for e in page.items]
    return respond(schemas.AuditPage, {"items": items, "next_cursor": page.next_cursor})


@bp.get("/audit/export")
@requires(AUDIT_READ)
def export_audit_entries() -> Response:
    """Every entry of the filter, newest first, streamed as CSV or NDJSON.

    The same lines as the dashboard's downloads and ``flask audit export``, so
    a script takes a copy in one request instead of paging through the timeline.
    """
    args = query_args({*FILTER_NAMES, "format"}, repeatable=REPEATABLE_NAMES)
    kind = (single(args, "format") or "csv").strip().lower()
    if kind not in EXPORT_FORMATS:
        message = f"must be one of {', '.join(EXPORT_FORMATS)}"
        raise ValidationFailed(f"format {message}", errors={"format": [message]})
    audit_filter = parse_audit_filter(args)
    mimetype, lines = EXPORT_FORMATS[kind]
    if request.method == "GET":  # a HEAD request exports nothing
        # Personal data leaving the application: who took which part is a security event.
        applied = [(p.name, value) for p in FILTER_PARAMETERS for value in args.get(p.name, [])]
        security_events.record_event(
            "audit_exported", details={"format": kind, "filter": urlencode(applied)}
        )
    response = Response(stream_with_context(lines(audit_filter)), mimetype=mimetype)
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    response.headers["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{kind}"'
    return response


@bp.get("/audit/verify")
@requires(AUDIT_READ)
def audit_verification() -> Response:
    """The chain's head now and the result of the last ``flask audit verify``.

    Verification walks the whole log, far too long for a request; a scheduler
    runs it and this reports what it found.
    """
    query_args(set())
    status = audit_integrity.chain_status()
    return respond(
        schemas.AuditVerificationStatus,
        {
            "last_verification": verification_json(status.last_verification),
            "head": {"seq": status.head.seq, "hash": status.head.hash.hex()},
            "pending_entries": status.pending_entries,
            "oldest_unlinked_entry_seconds": status.oldest_unlinked_seconds,
            "unsealed_results_ignored": status.unsealed_results,
        },
    )


@bp.get("/security-events")
@requires(SECURITY_EVENTS_READ)
def list_security_events() -> Response:
    args = query_args({*security_events.FILTER_FIELDS, "limit", "cursor"}, repeatable={"event"})
    event_filter = security_events.parse_event_filter(args)
    page = security_events.list_events(
        event_filter, limit=page_limit(args), cursor=single(args, "cursor")
    )
    items = [security_event_json(e) for e in page.items]
    return respond(schemas.SecurityEventPage, {"items": items, "next_cursor": page.next_cursor})
