"""Which requests belong to the JSON API: everything under ``/api``.

Those answer errors in problem+json, authenticate with bearer tokens only and
act on the ``api`` channel; the one rule is kept here for all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import request

API_PREFIX = "/api"
_PUBLIC = "public_api"

F = TypeVar("F", bound=Callable[..., Any])


def public(view: F) -> F:
    """Mark an ``/api`` view as readable without a token (the bearer check honours it).

    Only for views that describe the API and grant nothing.
    """
    setattr(view, _PUBLIC, True)
    return view


def is_public(view: object) -> bool:
    """Whether ``view`` was marked with :func:`public`."""
    return bool(getattr(view, _PUBLIC, False))


def is_api_request() -> bool:
    """Whether this request's path is ``/api`` or below it."""
    return request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/")
