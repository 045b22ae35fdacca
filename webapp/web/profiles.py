"""Profiles for support staff: find, create, edit, soft-delete, restore, history."""

from __future__ import annotations

from flask import Response

from webapp.auth.access import requires
from webapp.auth.permissions import PROFILES_READ
from webapp.web import bp
from webapp.web.rendering import render_page


@bp.get("/users")
@requires(PROFILES_READ)
def users_list() -> Response:
    return render_page("profiles/list.html")
