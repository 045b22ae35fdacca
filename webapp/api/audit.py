"""``/api/v1/audit``: the audit timeline, filtered, newest first."""

from __future__ import annotations

from flask import Response, jsonify

from webapp.api import bp
from webapp.api.representations import audit_entry_json
from webapp.api.request_input import page_limit, query_args, single
from webapp.services import audit_log


@bp.get("/audit")
def list_audit_entries() -> Response:
    args = query_args(
        {"user_id", "operation", "since", "until", "field", "limit", "cursor"},
        repeatable={"operation", "field"},
    )
    audit_filter = audit_log.parse_audit_filter(args)
    page = audit_log.list_entries(
        audit_filter, limit=page_limit(args), cursor=single(args, "cursor")
    )
    return jsonify(items=[audit_entry_json(e) for e in page.items], next_cursor=page.next_cursor)
