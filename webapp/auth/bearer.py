"""API authentication: ``Authorization: Bearer <token>`` and nothing else."""

from __future__ import annotations

from flask import Flask, Response, current_app, g, request

from webapp.api.problems import problem
from webapp.audit.context import Actor, bind_actor
from webapp.auth import is_api_request
from webapp.services.api_tokens import resolve_bearer

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="profile-audit"'}


def unauthorized(detail: str) -> Response:
    return problem(401, detail=detail, headers=_CHALLENGE)


def is_public_view() -> bool:
    """A view marked public (the API's own description: it grants nothing)."""
    view = current_app.view_functions.get(request.endpoint or "")
    return bool(getattr(view, "public_api", False))


def init_app(app: Flask) -> None:
    @app.before_request
    def authenticate_api_request() -> Response | None:
        # OPTIONS only asks which methods a path allows: it reads and grants
        # nothing (and a browser's CORS preflight never carries a token).
        if not is_api_request() or is_public_view() or request.method == "OPTIONS":
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            return unauthorized("Send an API token: Authorization: Bearer <token>.")
        token = resolve_bearer(secret.strip())
        if token is None:
            return unauthorized("The API token is unknown, revoked or expired.")
        g.api_staff = token.staff
        g.api_token = token
        g.actor_token = bind_actor(
            Actor(
                staff_id=token.staff.id,
                label=token.staff.username,
                channel_detail=token.name,
                token_id=token.id,
            )
        )
        return None
