"""Which requests belong to the JSON API: everything under ``/api``.

Those answer errors in problem+json, authenticate with bearer tokens only and
act on the ``api`` channel; the one rule is kept here for all of them.
"""

from __future__ import annotations

from flask import request

API_PREFIX = "/api"


def is_api_request() -> bool:
    """Whether this request's path is ``/api`` or below it."""
    return request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/")
