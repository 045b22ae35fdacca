"""The home page: who is signed in and where they can go."""

from __future__ import annotations

from flask import render_template

from webapp.auth.access import requires
from webapp.auth.permissions import PROFILES_READ
from webapp.web import bp


@bp.get("/")
@requires(PROFILES_READ)
def index() -> str:
    """Every role may read profiles, so this asks only that someone is signed in."""
    return render_template("index.html")
