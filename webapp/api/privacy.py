"""``/api/v1/users/{id}/erasure`` and ``/personal-data``: erasure of a profile's
personal data, and everything held about a profile (``webapp.services.privacy``)."""

from __future__ import annotations

from flask import Response

from webapp.api import bp, schemas
from webapp.api.operations import BODY_ERRORS, NO_QUERY, Body, Reply, declared_query, documented
from webapp.api.representations import etag, user_json
from webapp.api.request_input import read_json_object
from webapp.auth.permissions import PERSONAL_DATA_ERASE, PERSONAL_DATA_READ
from webapp.services import privacy

PRIVACY = "Privacy"

ERASED_EXAMPLE = {
    "id": 42,
    "name": privacy.ERASED_NAME,
    "email": privacy.erased_email(42),
    "created_at": "2026-01-31T12:00:00.000000Z",
    "updated_at": "2026-03-01T09:30:00.000000Z",
    "deleted_at": "2026-03-01T09:30:00.000000Z",
    "version": 4,
}


@bp.post("/users/<int:user_id>/erasure")
@documented(
    "eraseUser",
    tag=PRIVACY,
    summary="Erase a profile's personal data",
    permission=PERSONAL_DATA_ERASE,
    body=Body(schemas.ErasureRequest, {"reason": "erasure request of 2026-03-01 (ticket 1234)"}),
    responses={
        200: Reply(
            "Erased: the profile as it is now, anonymised and deleted. `ETag` is its version.",
            schemas.User,
            example=ERASED_EXAMPLE,
            headers=("ETag",),
        ),
        **BODY_ERRORS,
        404: None,
        409: "The profile is already erased, or its history still holds values written "
        "before encryption (`flask privacy encrypt-trail` first). Nothing was changed.",
    },
)
def erase_user(user_id: int) -> Response:
    """Destroys the profile's data key, so that every name and email its history holds
    reads `[erased]` from now on, anonymises the profile (`Erased profile`,
    `erased-<id>@erased.invalid`) and deletes it. The history's entries stay, sealed and
    linked, and an `erase` entry records who, when and why. Irreversible: an erased
    profile can no longer be changed or restored. `reason` is required."""
    body = read_json_object(schemas.body_fields(schemas.ErasureRequest))
    user = privacy.erase_user(user_id, reason=body.get("reason"))
    response = schemas.respond(schemas.User, user_json(user))
    response.headers["ETag"] = etag(user)
    return response


@bp.get("/users/<int:user_id>/personal-data")
@documented(
    "getUserPersonalData",
    tag=PRIVACY,
    summary="Everything held about a profile",
    permission=PERSONAL_DATA_READ,
    responses={
        200: Reply(
            "The profile, the state of its data key and its whole history, decrypted.",
            schemas.PersonalData,
        ),
        400: NO_QUERY,
        404: None,
    },
)
def get_user_personal_data(user_id: int) -> Response:
    """Everything held about the profile as one document, for a subject access request:
    the profile as stored, whether its data key is held or erased, and every audit entry
    of it, oldest first, its personal values decrypted (`[erased]` once erased). Each
    call is kept as a `personal_data_exported` security event. Never cached."""
    declared_query()
    response = schemas.respond(schemas.PersonalData, privacy.personal_data(user_id))
    # Already the default for every answer; said here too, as it matters most here.
    response.headers["Cache-Control"] = "no-store"
    return response
