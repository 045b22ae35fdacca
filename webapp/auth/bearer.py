"""API authentication: ``Authorization: Bearer <token>`` and nothing else."""

from __future__ import annotations

from flask import Flask, Response, current_app, g, request

from webapp.audit.context import Actor, bind_actor
from webapp.http.api_paths import is_api_request, is_public
from webapp.http.problems import problem
from webapp.models import ApiToken
from webapp.services.api_tokens import resolve_bearer

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="profile-audit"'}


def unauthorized(detail: str) -> Response:
    return problem(401, detail=detail, headers=_CHALLENGE)


def is_public_view() -> bool:
    """A view marked public (the API's own description: it grants nothing)."""
    view = current_app.view_functions.get(request.endpoint or "")
    return is_public(view)


def bearer_secret() -> str | None:
    """The token sent as ``Authorization: Bearer <token>``, or ``None`` if none is."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


def act_as_token(token: ApiToken) -> None:
    """Make the token's owner this request's caller and audit actor.

    The auth teardown unbinds the actor; the token is named on every entry
    and log line the request causes.
    """
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


def init_app(app: Flask) -> None:
    @app.before_request
    def authenticate_api_request() -> Response | None:
        # OPTIONS only asks which methods a path allows: it reads and grants
        # nothing (and a browser's CORS preflight never carries a token).
        if not is_api_request() or is_public_view() or request.method == "OPTIONS":
            return None
        secret = bearer_secret()
        if secret is None:
            return unauthorized("Send an API token: Authorization: Bearer <token>.")
        token = resolve_bearer(secret)  # records a refused token as a security event
        if token is None:
            return unauthorized("The API token is unknown, revoked or expired.")
        act_as_token(token)
        return None
