"""HTML pages for support staff, auditors and admins.

Views are thin: read the form, call a service, then redirect with a message
(post/redirect/get) or render the form again with the service's complaints.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response
from flask.sansio.blueprints import BlueprintSetupState
from markupsafe import Markup
from sqlalchemy.exc import SQLAlchemyError

from webapp.auth import permissions
from webapp.auth.access import can, current_staff
from webapp.errors import error_page
from webapp.services.errors import ServiceError
from webapp.services.profile_rules import spell_out_bidi_controls
from webapp.timestamps import UTC, iso_utc
from webapp.web.snapshot_diff import diff_snapshots

bp = Blueprint("web", __name__)


def show_bidi_controls(value: Any) -> Any:
    """Every printed text with its bidirectional controls made visible.

    The rules refuse them in new names, but older data, failed sign-ins'
    usernames or a reason may hold one: an override (U+202E) would reorder
    the text it is printed in, and staff would read something else than what
    is stored. Markup (already built HTML, whose own values went through
    this) is left alone.
    """
    if isinstance(value, str) and not isinstance(value, Markup):
        return spell_out_bidi_controls(value)
    return value


@bp.record_once
def _install_finalize(state: BlueprintSetupState) -> None:
    # Jinja calls ``finalize`` on the value of every {{ ... }} before escaping it.
    state.app.jinja_env.finalize = show_bidi_controls


@bp.errorhandler(ServiceError)
def refused(error: ServiceError) -> Response:
    """A refusal no view showed in place (an unknown id, a bad cursor...)."""
    return error_page(error.status, error.detail)


@bp.app_context_processor
def signed_in_context() -> dict[str, Any]:
    """Who is signed in and what they may do, for the header of every page."""
    try:
        staff = current_staff()
    except SQLAlchemyError:
        # The page being rendered may be the one that reports the database
        # outage; it must still render, just without the account menu.
        staff = None
    return {"signed_in": staff, "can": can if staff else _nothing, "perm": permissions}


def _nothing(permission: str) -> bool:
    return False


@bp.app_template_filter("utc")
def utc_seconds(value: Any) -> str:
    """A timestamp as ISO 8601 UTC to the second, for reading in tables."""
    if value is None:
        return ""
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@bp.app_template_filter("readable")
def utc_minutes(value: Any) -> str:
    """A timestamp as people read it: ``2026-12-02 02:21 UTC`` (the full value goes
    in ``<time datetime>`` and its tooltip, see the ``timestamp`` macro)."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# Templates diff snapshots where they show them: one diff for every page.
bp.add_app_template_global(diff_snapshots, "diff_snapshots")


@bp.app_template_filter("iso")
def utc_precise(value: Any) -> str:
    """A timestamp as full-precision ISO 8601 UTC (``datetime`` attributes)."""
    return iso_utc(value) or ""


# The view modules attach their routes to ``bp`` when imported.
from webapp.web import (  # noqa: E402, F401
    admin,
    api_docs,
    home,
    profile_erasure,
    profiles,
    security_events,
    sign_in,
    timeline,
)
