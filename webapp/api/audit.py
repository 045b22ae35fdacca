"""``/api/v1/audit``: the audit timeline, filtered, newest first."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import urlencode

from flask import Response, request, stream_with_context

from webapp.api import bp, schemas
from webapp.api.operations import (
    NO_QUERY,
    PAGING,
    POSITIVE_BIGINT,
    QueryParameter,
    Reply,
    declared_query,
    documented,
    ref,
)
from webapp.api.representations import (
    audit_entry_json,
    security_event_json,
    verification_json,
)
from webapp.api.request_input import page_limit, single
from webapp.api.schemas import respond, respond_page
from webapp.auth.permissions import AUDIT_READ, SECURITY_EVENTS_READ
from webapp.request_id import CLIENT_ID_PATTERN
from webapp.services import audit_export, audit_integrity, audit_log, security_events
from webapp.services.audit_filter import (
    ACTOR_MAX,
    FILTER_PARAMETERS,
    AuditFilter,
    Kind,
    parse_audit_filter,
)
from webapp.services.errors import ValidationFailed

#: ``format`` of an export -> its media type and the service writing its lines
EXPORT_FORMATS: dict[str, tuple[str, Callable[[AuditFilter], Iterator[bytes]]]] = {
    "csv": ("text/csv", audit_export.csv_lines),
    "ndjson": ("application/x-ndjson", audit_export.ndjson_lines),
}
AUDIT = "Audit"
_FILTER_SCHEMAS = {
    Kind.ID: POSITIVE_BIGINT,
    Kind.TIME: ref("TimeBound"),
    Kind.ACTOR: {"type": "string", "maxLength": ACTOR_MAX},
    Kind.FLAG: {"type": "boolean", "default": False},
    Kind.REQUEST_ID: {"type": "string", "pattern": CLIENT_ID_PATTERN},
}
#: the timeline filter's query parameters, from its one declaration
FILTER = tuple(
    QueryParameter(
        p.name,
        p.help,
        {"type": "array", "items": {"enum": list(p.choices)}}
        if p.repeatable
        else _FILTER_SCHEMAS[p.kind],
        repeatable=p.repeatable,
    )
    for p in FILTER_PARAMETERS
)
EXPORT_FORMAT = QueryParameter(
    "format",
    "`csv` (the default) or `ndjson`.",
    {"enum": list(EXPORT_FORMATS), "default": "csv"},
)
_EVENT_TIME = "ISO 8601 date or datetime"
EVENT_FILTER = (
    QueryParameter(
        "event",
        "Only these kinds. Repeat the parameter or separate values with commas.",
        {"type": "array", "items": {"enum": list(security_events.EVENTS)}},
        repeatable=True,
    ),
    QueryParameter(
        "account",
        "Only events about this username, case-insensitive.",
        {"type": "string", "maxLength": security_events.ACCOUNT_MAX},
    ),
    QueryParameter(
        "address",
        "Only events from this IP address.",
        {"anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]},
    ),
    QueryParameter("since", f"Events at or after this {_EVENT_TIME}.", ref("TimeBound")),
    QueryParameter(
        "until",
        "Events at or before this ISO 8601 date (the whole UTC day included) or datetime. "
        "Must be later than `since`.",
        ref("TimeBound"),
    ),
)
_REPEATED = ", ".join(f"`{e}`" for e in sorted(security_events.REPEATED_EVENTS))
_WINDOW_MINUTES = int(security_events.REPEAT_WINDOW.total_seconds() // 60)


@bp.get("/audit")
@documented(
    "listAuditEntries",
    tag=AUDIT,
    summary="The audit timeline",
    permission=AUDIT_READ,
    query=(*FILTER, *PAGING),
    responses={200: Reply("One page of audit entries.", schemas.AuditPage), 400: None},
)
def list_audit_entries() -> Response:
    """Audit entries across all profiles, newest first, filtered. Filters combine with
    AND; the values of a repeated filter with OR."""
    args = declared_query()
    audit_filter = parse_audit_filter(args)
    page = audit_log.list_entry_rows(
        audit_filter, limit=page_limit(args), cursor=single(args, "cursor")
    )
    return respond_page(schemas.AuditPage, page, audit_entry_json)


@bp.get("/audit/export")
@documented(
    "exportAuditEntries",
    tag=AUDIT,
    summary="Export the audit timeline",
    permission=AUDIT_READ,
    query=(EXPORT_FORMAT, *FILTER),
    responses={
        200: Reply(
            "The entries, streamed.",
            {"type": "string"},
            own_headers={
                "Content-Disposition": {
                    "description": "`attachment` with a file name.",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^attachment; "},
                }
            },
            media_types=tuple(mimetype for mimetype, _ in EXPORT_FORMATS.values()),
        ),
        400: None,
    },
)
def export_audit_entries() -> Response:
    """Every audit entry the filters select, newest first, in one streamed response: CSV
    (cells that a spreadsheet would run as a formula are neutralised with a leading `'`)
    or one JSON object per line in the shape of `AuditEntry`. The same filters as
    `GET /audit`; the export is kept as an `audit_exported` security event."""
    # The same lines as the dashboard's downloads and ``flask audit export``, so a
    # script takes a copy in one request instead of paging through the timeline.
    args = declared_query()
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
    filename = audit_export.export_filename(audit_filter, kind)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@bp.get("/audit/verify")
@documented(
    "getAuditVerification",
    tag=AUDIT,
    summary="The audit chain's state and last verification",
    permission=AUDIT_READ,
    responses={200: Reply("The chain's state.", schemas.AuditVerificationStatus), 400: NO_QUERY},
)
def audit_verification() -> Response:
    """The hash chain's head now, the entries waiting for their link, and the result of
    the last `flask audit verify` run (`null` if there has been none). Verification
    itself runs on a schedule, not per request."""
    # It walks the whole log, far too long for a request: this reports what it found.
    declared_query()
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
@documented(
    "listSecurityEvents",
    tag="Security events",
    summary="Security events",
    permission=SECURITY_EVENTS_READ,
    query=(*EVENT_FILTER, *PAGING),
    responses={200: Reply("One page of security events.", schemas.SecurityEventPage), 400: None},
    description=(
        "Sign-ins, account and token changes, refusals and exports, newest first, "
        "filtered. They never hold a password or a token. Events anyone can repeat at "
        f"will ({_REPEATED}) are listed once per kind, address, account and reason in each "
        f"{_WINDOW_MINUTES}-minute window, with `count` and `last_seen`."
    ),
)
def list_security_events() -> Response:
    args = declared_query()
    event_filter = security_events.parse_event_filter(args)
    page = security_events.list_events(
        event_filter, limit=page_limit(args), cursor=single(args, "cursor")
    )
    return respond_page(schemas.SecurityEventPage, page, security_event_json)
