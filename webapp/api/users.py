"""``/api/v1/users``: profiles and their history."""

from __future__ import annotations

from flask import Response, request, url_for

from webapp.api import bp, schemas
from webapp.api.representations import audit_entry_json, etag, user_json
from webapp.api.request_input import (
    if_match_version,
    page_limit,
    parse_bool,
    query_args,
    read_json_object,
    single,
)
from webapp.api.schemas import respond
from webapp.auth.access import requires
from webapp.auth.permissions import HISTORY_READ, PROFILES_READ, PROFILES_WRITE
from webapp.models import User
from webapp.services import audit_log, users

_PROFILE_BODY = schemas.body_fields(schemas.ProfileInput)


def _user_response(user: User, status: int = 200) -> Response:
    response = respond(schemas.User, user_json(user), status)
    response.headers["ETag"] = etag(user)
    return response


@bp.get("/users")
@requires(PROFILES_READ)
def list_users() -> Response:
    args = query_args({"q", "include_deleted", "limit", "cursor"})
    page = users.list_users(
        query=single(args, "q"),
        include_deleted=parse_bool(args, "include_deleted"),
        limit=page_limit(args),
        cursor=single(args, "cursor"),
    )
    items = [user_json(u) for u in page.items]
    return respond(schemas.UserPage, {"items": items, "next_cursor": page.next_cursor})


@bp.post("/users")
@requires(PROFILES_WRITE)
def create_user() -> Response:
    body = read_json_object(_PROFILE_BODY)
    reason = body.pop("reason", None)
    user = users.create_user(body, reason=reason)
    response = _user_response(user, 201)
    response.headers["Location"] = url_for("api.get_user", user_id=user.id)
    return response


@bp.get("/users/<int:user_id>")
@requires(PROFILES_READ)
def get_user(user_id: int) -> Response:
    query_args(())
    return _user_response(users.get_user(user_id))


@bp.put("/users/<int:user_id>")
@requires(PROFILES_WRITE)
def replace_user(user_id: int) -> Response:
    return _update(user_id, partial=False)


@bp.patch("/users/<int:user_id>")
@requires(PROFILES_WRITE)
def patch_user(user_id: int) -> Response:
    return _update(user_id, partial=True)


def _update(user_id: int, *, partial: bool) -> Response:
    expected = if_match_version()
    body = read_json_object(_PROFILE_BODY)
    reason = body.pop("reason", None)
    user = users.update_user(
        user_id, body, expected_version=expected, reason=reason, partial=partial
    )
    return _user_response(user)


@bp.delete("/users/<int:user_id>")
@requires(PROFILES_WRITE)
def delete_user(user_id: int) -> Response:
    expected = if_match_version()
    reason = _optional_reason()
    users.delete_user(user_id, expected_version=expected, reason=reason)
    return Response(status=204)


@bp.post("/users/<int:user_id>/restore")
@requires(PROFILES_WRITE)
def restore_user(user_id: int) -> Response:
    expected = if_match_version()
    reason = _optional_reason()
    return _user_response(users.restore_user(user_id, expected_version=expected, reason=reason))


@bp.get("/users/<int:user_id>/history")
@requires(HISTORY_READ)
def user_history(user_id: int) -> Response:
    args = query_args({"limit", "cursor"})
    page = audit_log.user_history(user_id, limit=page_limit(args), cursor=single(args, "cursor"))
    items = [audit_entry_json(e) for e in page.items]
    return respond(schemas.AuditPage, {"items": items, "next_cursor": page.next_cursor})


def _optional_reason() -> object:
    """DELETE and restore take no body, or a JSON object with just a reason."""
    if not request.content_length and not request.get_data(cache=True):
        return None
    return read_json_object(schemas.body_fields(schemas.ReasonOnly)).get("reason")
