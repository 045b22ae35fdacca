"""The audit timeline for auditors: filters, diffs, activity chart, exports."""

from __future__ import annotations

from flask import Response

from webapp.auth.access import requires
from webapp.auth.permissions import AUDIT_READ
from webapp.web import bp
from webapp.web.rendering import render_page


@bp.get("/audit")
@requires(AUDIT_READ)
def audit_timeline() -> Response:
    return render_page("audit/timeline.html")
