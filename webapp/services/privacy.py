"""Erasure of a profile's personal data, and access to everything held about it.

Erasure (GDPR Art. 17) destroys the profile's data key: every personal value
its history holds was encrypted with it (``webapp.audit.personal_data``), so
all of them become unreadable at once while the entries themselves stay,
sealed and linked, and ``flask audit verify`` still passes. The profile row is
anonymised in the same transaction and an ``erase`` entry records who, when
and why. An erased profile is deleted and can no longer be changed or
restored; its email is free for a new profile, which gets a new key and a
history of its own.

Access (GDPR Art. 15) gives everything held about a profile, its history
decrypted, as one document; each access is a security event.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text

from webapp.audit.context import change_context
from webapp.audit.personal_data import clear_values_sql, data_keys, encrypt_clear_entries_of
from webapp.extensions import db
from webapp.models import User, UserAudit
from webapp.services.audit_records import audit_entry_json
from webapp.services.errors import AlreadyErased, NotFound, TrailNotEncrypted, ValidationFailed
from webapp.services.lookup import get_or_not_found
from webapp.services.profile_rules import FieldError, clean_reason
from webapp.services.security_events import record_event
from webapp.timestamps import iso_utc, utcnow
from webapp.typed_text import MAX_BIGINT

#: What an erased profile's name becomes.
ERASED_NAME = "Erased profile"


_PROFILE_HOLDS_CLEAR_VALUES = text(
    "SELECT EXISTS (SELECT 1 FROM user_audit a "  # noqa: S608 (constants only)
    f"WHERE a.user_id = :user_id AND {clear_values_sql('a')})"
)


def erased_email(user_id: int) -> str:
    """What an erased profile's email becomes: unique, and never deliverable."""
    return f"erased-{user_id}@erased.invalid"


def erase_user(user_id: int, *, reason: object) -> User:
    """Erase profile ``user_id``'s personal data: destroy its key, anonymise it.

    ``reason`` is required (the request or legal ground). Refused, changing
    nothing, when the profile is already erased or when its history holds
    values written before encryption (``flask privacy encrypt-trail`` first).
    """
    try:
        why = clean_reason(reason)
    except FieldError as error:
        raise ValidationFailed.of_field("reason", str(error)) from None
    if not why:
        raise ValidationFailed.of_field("reason", "is required to erase a profile")
    # An id no bigint holds is simply not there (the database would fail on it).
    user = None
    if 0 < user_id <= MAX_BIGINT:
        user = db.session.scalar(
            select(User).where(User.id == user_id).with_for_update(of=User.__table__)
        )
    if user is None:
        db.session.rollback()
        raise NotFound(f"There is no profile with id {user_id}.")
    try:
        if user.is_erased:
            raise AlreadyErased(f"Profile {user_id} is already erased.")
        connection = db.session.connection()
        # Values the safety net wrote in clear, not yet linked: encrypted now,
        # under the key about to go, like every other value of the profile.
        if encrypt_clear_entries_of(connection, db.session().audit_chain_key, user_id):
            # A profile made around the application gets its key there: read it.
            db.session.expire(user, ["data_key"])
        if _holds_clear_values(user_id):
            raise TrailNotEncrypted(
                f"Profile {user_id}'s history has entries written before encryption: run "
                "`flask privacy encrypt-trail` first, then erase it."
            )
        now = utcnow()
        with change_context(reason=why):
            user.name = ERASED_NAME
            user.email = erased_email(user.id)
            if user.deleted_at is None:
                user.deleted_at = now
            user.erased_at = now
            # The erase entry is encrypted with the key, like the rest.
            db.session.flush()
            data_key = user.data_key
            wrapped = data_key.wrapped_key if data_key is not None else None
            if data_key is not None:
                data_key.wrapped_key = None
                data_key.master_key_id = None
                data_key.erased_at = now
            db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    if wrapped is not None:
        data_keys.forget(wrapped)
    return user


def _holds_clear_values(user_id: int) -> bool:
    """Whether an entry of the profile holds a personal value in clear."""
    return bool(db.session.scalar(_PROFILE_HOLDS_CLEAR_VALUES, {"user_id": user_id}))


def personal_data(user_id: int) -> dict[str, Any]:
    """Everything held about profile ``user_id``, its history decrypted, as one
    JSON-ready document; recorded as a security event."""
    user = get_or_not_found(User, user_id, f"There is no profile with id {user_id}.")
    entries = db.session.scalars(
        select(UserAudit).where(UserAudit.user_id == user_id).order_by(UserAudit.id)
    ).all()
    data_key = user.data_key
    document = {
        "profile": {
            "id": user.id,
            "name": user.name,
            "email": user.email,
            "created_at": iso_utc(user.created_at),
            "updated_at": iso_utc(user.updated_at),
            "deleted_at": iso_utc(user.deleted_at) if user.deleted_at else None,
            "erased_at": iso_utc(user.erased_at) if user.erased_at else None,
            "version": user.version,
        },
        "data_key": {
            "state": ("none" if data_key is None else "erased" if data_key.erased_at else "held"),
            "created_at": iso_utc(data_key.created_at) if data_key else None,
            "erased_at": (iso_utc(data_key.erased_at) if data_key and data_key.erased_at else None),
        },
        "history": [audit_entry_json(entry) for entry in entries],
        "generated_at": iso_utc(utcnow()),
    }
    record_event("personal_data_exported", details={"user_id": user_id})
    return document
