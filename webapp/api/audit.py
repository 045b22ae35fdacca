"""``/api/v1/audit``: the audit timeline, filtered, newest first."""

from __future__ import annotations

from flask import Response, jsonify

from webapp.api import bp
from webapp.api.representations import (
    audit_entry_json,
    security_event_json,
    verification_json,
)
from webapp.api.request_input import page_limit, query_args, single
from webapp.auth.access import requires
from webapp.auth.permissions import AUDIT_READ, SECURITY_EVENTS_READ
from webapp.services import audit_integrity, audit_log, security_events
from webapp.services.audit_filter import FILTER_NAMES, REPEATABLE_NAMES, parse_audit_filter


@bp.get("/audit")
@requires(AUDIT_READ)
def list_audit_entries() -> Response:
    args = query_args({*FILTER_NAMES, "limit", "cursor"}, repeatable=REPEATABLE_NAMES)
    audit_filter = parse_audit_filter(args)
    page = audit_log.list_entry_rows(
        audit_filter, limit=page_limit(args), cursor=single(args, "cursor")
    )
    return jsonify(items=[audit_entry_json(e) for e in page.items], next_cursor=page.next_cursor)


@bp.get("/audit/verify")
@requires(AUDIT_READ)
def audit_verification() -> Response:
    """The chain's head now and the result of the last ``flask audit verify``.

    Verification walks the whole log, far too long for a request; a scheduler
    runs it and this reports what it found.
    """
    query_args(set())
    status = audit_integrity.chain_status()
    return jsonify(
        last_verification=verification_json(status.last_verification),
        head={"seq": status.head.seq, "hash": status.head.hash.hex()},
        pending_entries=status.pending_entries,
        oldest_unlinked_entry_seconds=status.oldest_unlinked_seconds,
        unsealed_results_ignored=status.unsealed_results,
    )


@bp.get("/security-events")
@requires(SECURITY_EVENTS_READ)
def list_security_events() -> Response:
    args = query_args({*security_events.FILTER_FIELDS, "limit", "cursor"}, repeatable={"event"})
    event_filter = security_events.parse_event_filter(args)
    page = security_events.list_events(
        event_filter, limit=page_limit(args), cursor=single(args, "cursor")
    )
    return jsonify(items=[security_event_json(e) for e in page.items], next_cursor=page.next_cursor)
