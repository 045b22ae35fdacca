"""``/api/v1/users``: profiles and their history."""

from __future__ import annotations

from flask import Response, request, url_for

from webapp.api import bp, schemas
from webapp.api.operations import (
    BODY_ERRORS,
    NO_QUERY,
    PAGING,
    Body,
    QueryParameter,
    Reply,
    declared_query,
    documented,
)
from webapp.api.representations import audit_entry_json, etag, user_json
from webapp.api.request_input import (
    if_match_version,
    page_limit,
    parse_bool,
    read_json_object,
    single,
)
from webapp.api.schemas import SEARCH_PATTERN, respond, respond_page
from webapp.auth.permissions import HISTORY_READ, PROFILES_READ, PROFILES_WRITE
from webapp.models import User
from webapp.services import audit_log, users
from webapp.services.profile_rules import SEARCH_MAX

_PROFILE_BODY = schemas.body_fields(schemas.ProfileInput)
PROFILES = "Profiles"

USER_EXAMPLE = {
    "id": 42,
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "created_at": "2026-01-31T12:00:00.000000Z",
    "updated_at": "2026-01-31T12:00:00.000000Z",
    "deleted_at": None,
    "version": 1,
}
SAVED = Reply("The profile as saved.", schemas.User, headers=("ETag",))
REASON_BODY = Body(
    schemas.ReasonOnly,
    {"reason": "account closed"},
    required=False,
    description="Optional: no body at all, or a JSON object with just a `reason`.",
)
WRITE_CONFLICT = (
    "Another active profile has this email, the profile is deleted (restore it first), "
    "or another write won a race (without `If-Match`; `current` shows the profile now). "
    "Nothing was changed."
)
SEARCH = QueryParameter(
    "q",
    "Only profiles whose name or email contains this text (case-insensitive; surrounding "
    "spaces are ignored; no control characters).",
    {"type": "string", "maxLength": SEARCH_MAX, "pattern": SEARCH_PATTERN},
)
INCLUDE_DELETED = QueryParameter(
    "include_deleted",
    "Also list soft-deleted profiles. `true`/`1`/`yes` or `false`/`0`/`no`.",
    {"type": "boolean", "default": False},
)


def _user_response(user: User, status: int = 200) -> Response:
    response = respond(schemas.User, user_json(user), status)
    response.headers["ETag"] = etag(user)
    return response


@bp.get("/users")
@documented(
    "listUsers",
    tag=PROFILES,
    summary="List profiles",
    permission=PROFILES_READ,
    query=(SEARCH, INCLUDE_DELETED, *PAGING),
    responses={200: Reply("One page of profiles.", schemas.UserPage), 400: None},
)
def list_users() -> Response:
    """Profiles in id order, one keyset page. Deleted profiles only with `include_deleted`."""
    args = declared_query()
    page = users.list_users(
        query=single(args, "q"),
        include_deleted=parse_bool(args, "include_deleted"),
        limit=page_limit(args),
        cursor=single(args, "cursor"),
    )
    return respond_page(schemas.UserPage, page, user_json)


@bp.post("/users")
@documented(
    "createUser",
    tag=PROFILES,
    summary="Create a profile",
    permission=PROFILES_WRITE,
    body=Body(
        schemas.ProfileInput,
        {"name": "Ada Lovelace", "email": "ada@example.com", "reason": "signup"},
    ),
    responses={
        201: Reply(
            "Created. `Location` is the new profile's URL, `ETag` its version.",
            schemas.User,
            example=USER_EXAMPLE,
            headers=("ETag", "Location"),
            links=(
                "getUser",
                "replaceUser",
                "updateUser",
                "deleteUser",
                "restoreUser",
                "getUserHistory",
                "getUserPersonalData",
                "eraseUser",
            ),
        ),
        **BODY_ERRORS,
        409: "Another active profile already has this email.",
    },
)
def create_user() -> Response:
    """Creates a profile from `name` and `email`; the optional `reason` is stored on its
    audit entry."""
    body = read_json_object(_PROFILE_BODY)
    reason = body.pop("reason", None)
    user = users.create_user(body, reason=reason)
    response = _user_response(user, 201)
    response.headers["Location"] = url_for("api.get_user", user_id=user.id)
    return response


@bp.get("/users/<int:user_id>")
@documented(
    "getUser",
    tag=PROFILES,
    summary="Read a profile",
    permission=PROFILES_READ,
    responses={
        200: Reply(
            "The profile. `ETag` is its version.",
            schemas.User,
            example=USER_EXAMPLE,
            headers=("ETag",),
        ),
        400: NO_QUERY,
        404: None,
    },
)
def get_user(user_id: int) -> Response:
    """A profile, deleted ones too (with `deleted_at` set)."""
    declared_query()
    return _user_response(users.get_user(user_id))


@bp.put("/users/<int:user_id>")
@documented(
    "replaceUser",
    tag=PROFILES,
    summary="Replace a profile's name and email",
    permission=PROFILES_WRITE,
    if_match=True,
    body=Body(
        schemas.ProfileInput,
        {"name": "Augusta Ada King", "email": "ada@example.com", "reason": "legal name"},
    ),
    responses={200: SAVED, **BODY_ERRORS, 404: None, 409: WRITE_CONFLICT, 412: None},
)
def replace_user(user_id: int) -> Response:
    """Both `name` and `email` are required. With `If-Match`, the write is refused (412)
    unless the profile is still at that version."""
    return _update(user_id, partial=False)


@bp.patch("/users/<int:user_id>")
@documented(
    "updateUser",
    tag=PROFILES,
    summary="Change some of a profile's fields",
    permission=PROFILES_WRITE,
    if_match=True,
    body=Body(schemas.ProfilePatch, {"name": "Augusta Ada King", "reason": "legal name"}),
    responses={200: SAVED, **BODY_ERRORS, 404: None, 409: WRITE_CONFLICT, 412: None},
)
def patch_user(user_id: int) -> Response:
    """Only the fields sent are changed; same rules as `PUT`. An empty object changes
    nothing."""
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
@documented(
    "deleteUser",
    tag=PROFILES,
    summary="Soft-delete a profile",
    permission=PROFILES_WRITE,
    if_match=True,
    body=REASON_BODY,
    responses={
        204: Reply("Deleted."),
        **BODY_ERRORS,
        404: None,
        409: "The profile is already deleted, or another write won a race (without "
        "`If-Match`). Nothing was changed.",
        412: None,
    },
)
def delete_user(user_id: int) -> Response:
    """Marks the profile deleted (`deleted_at`); it and its history stay. Its email
    becomes free for other profiles."""
    expected = if_match_version()
    reason = _optional_reason()
    users.delete_user(user_id, expected_version=expected, reason=reason)
    return Response(status=204)


@bp.post("/users/<int:user_id>/restore")
@documented(
    "restoreUser",
    tag=PROFILES,
    summary="Restore a deleted profile",
    permission=PROFILES_WRITE,
    if_match=True,
    body=REASON_BODY,
    responses={
        200: Reply("The restored profile.", schemas.User, headers=("ETag",)),
        **BODY_ERRORS,
        404: None,
        409: "The profile is not deleted, or another active profile has taken its email "
        "meanwhile. Nothing was changed.",
        412: None,
    },
)
def restore_user(user_id: int) -> Response:
    """Undoes a soft delete."""
    expected = if_match_version()
    reason = _optional_reason()
    return _user_response(users.restore_user(user_id, expected_version=expected, reason=reason))


@bp.get("/users/<int:user_id>/history")
@documented(
    "getUserHistory",
    tag="Audit",
    summary="A profile's audit entries",
    permission=HISTORY_READ,
    query=PAGING,
    responses={200: Reply("One page of audit entries.", schemas.AuditPage), 400: None, 404: None},
)
def user_history(user_id: int) -> Response:
    """That profile's audit entries, newest first."""
    args = declared_query()
    page = audit_log.user_history(user_id, limit=page_limit(args), cursor=single(args, "cursor"))
    return respond_page(schemas.AuditPage, page, audit_entry_json)


def _optional_reason() -> object:
    """DELETE and restore take no body, or a JSON object with just a reason."""
    if not request.content_length and not request.get_data(cache=True):
        return None
    return read_json_object(schemas.body_fields(schemas.ReasonOnly)).get("reason")
