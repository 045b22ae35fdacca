"""Profile operations: find, create, edit, soft-delete and restore.

Each write is one transaction: the change, and the audit entry the flush
listeners add for it, commit together. Any refusal rolls back and raises a
``ServiceError``, so nothing is half-done.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from webapp.audit.context import change_context
from webapp.audit.personal_data import email_index
from webapp.extensions import db
from webapp.models import User
from webapp.services.errors import (
    AlreadyDeleted,
    AlreadyErased,
    DuplicateEmail,
    NotDeleted,
    StaleVersion,
    ValidationFailed,
)
from webapp.services.lookup import get_or_not_found
from webapp.services.pagination import Page, decode_id_cursor, encode_id_cursor
from webapp.services.profile_rules import FieldError, clean_profile, clean_reason, clean_search
from webapp.timestamps import utcnow

# The application's uniqueness index (the email's keyed blind index) and the
# database's own on the address, which also holds for writes around the app.
_EMAIL_INDEXES = ("uq_users_email_index_active", "uq_users_lower_email_active")


def get_user(user_id: int) -> User:
    """The profile with ``user_id``, deleted or not; ``NotFound`` otherwise."""
    return get_or_not_found(User, user_id, f"There is no profile with id {user_id}.")


def list_users(
    *,
    query: str | None = None,
    include_deleted: bool = False,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[User]:
    """Profiles in id order, optionally filtered by a name/email substring."""
    statement = select(User).order_by(User.id).limit(limit + 1)
    if not include_deleted:
        statement = statement.where(User.deleted_at.is_(None))
    if query:
        try:
            text = clean_search(query)
        except FieldError as error:
            raise ValidationFailed.of_field("q", str(error)) from None
        if text:
            pattern = "%" + _escape_like(text) + "%"
            statement = statement.where(
                or_(User.name.ilike(pattern, escape="\\"), User.email.ilike(pattern, escape="\\"))
            )
    if cursor:
        statement = statement.where(User.id > decode_id_cursor(cursor))
    rows = list(db.session.scalars(statement))
    next_cursor = encode_id_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return Page(items=rows[:limit], next_cursor=next_cursor)


def create_user(fields: Mapping[str, object], *, reason: object = None) -> User:
    """Create a profile from ``name`` and ``email``."""
    cleaned = clean_profile(fields, partial=False)
    why = _clean_reason(reason)
    _ensure_email_free(cleaned["email"])
    user = User(name=cleaned["name"], email=cleaned["email"])
    with _unit_of_work(why):
        db.session.add(user)
    return user


def update_user(
    user_id: int,
    changes: Mapping[str, object],
    *,
    expected_version: int | None = None,
    reason: object = None,
    partial: bool = True,
) -> User:
    """Change some (``partial``) or all of a profile's fields.

    ``expected_version`` is the version the caller's form or ETag was based
    on; if the profile has moved on since, nothing is written.
    """
    cleaned = clean_profile(changes, partial=partial)
    why = _clean_reason(reason)
    user = _current(user_id, expected_version)
    if user.is_deleted:
        raise AlreadyDeleted(f"Profile {user_id} is deleted; restore it before editing.")
    if "email" in cleaned and cleaned["email"].lower() != user.email.lower():
        _ensure_email_free(cleaned["email"], exclude_id=user.id)
    with _unit_of_work(why, user, expected_version):
        for field, value in cleaned.items():
            if getattr(user, field) != value:
                setattr(user, field, value)
    return user


def delete_user(
    user_id: int, *, expected_version: int | None = None, reason: object = None
) -> User:
    """Soft-delete a profile: it stays, marked with ``deleted_at``."""
    why = _clean_reason(reason)
    user = _current(user_id, expected_version)
    if user.is_deleted:
        raise AlreadyDeleted(f"Profile {user_id} is already deleted.")
    with _unit_of_work(why, user, expected_version):
        user.deleted_at = utcnow()
    return user


def restore_user(
    user_id: int, *, expected_version: int | None = None, reason: object = None
) -> User:
    """Undo a soft delete, unless another active profile has taken the email."""
    why = _clean_reason(reason)
    user = _current(user_id, expected_version)
    if not user.is_deleted:
        raise NotDeleted(f"Profile {user_id} is not deleted.")
    _ensure_email_free(user.email, exclude_id=user.id)
    with _unit_of_work(why, user, expected_version):
        user.deleted_at = None
    return user


def _current(user_id: int, expected_version: int | None) -> User:
    user = get_user(user_id)
    if user.is_erased:
        raise AlreadyErased(f"Profile {user_id} was erased; it can no longer be changed.")
    if expected_version is not None and user.version != expected_version:
        raise StaleVersion(
            f"Profile {user_id} is at version {user.version}, not {expected_version}: "
            "it was changed since you loaded it.",
            current=user,
            expected_version=expected_version,
        )
    return user


def _clean_reason(reason: object) -> str | None:
    try:
        return clean_reason(reason)
    except FieldError as error:
        raise ValidationFailed.of_field("reason", str(error)) from None


def _ensure_email_free(email: str, *, exclude_id: int | None = None) -> None:
    taken = select(User.id).where(User.email_index == email_index(email), User.deleted_at.is_(None))
    if exclude_id is not None:
        taken = taken.where(User.id != exclude_id)
    holder_id = db.session.scalar(taken.limit(1))
    if holder_id is not None:
        raise _duplicate(email, holder_id)


def _duplicate(email: str | None = None, holder_id: int | None = None) -> DuplicateEmail:
    return DuplicateEmail(
        f"{email or 'The email'} is already used by another active profile.",
        errors={"email": ["is already used by another active profile"]},
        holder_id=holder_id,
    )


@contextmanager
def _unit_of_work(
    reason: str | None, user: User | None = None, expected_version: int | None = None
) -> Iterator[None]:
    """Commit what the block changed, with ``reason`` on its audit entries.

    The unique index and the version check are the final word under
    concurrency: their errors become the same refusals the checks above give.
    """
    user_id = user.id if user is not None else None
    try:
        with change_context(reason=reason):
            yield
            db.session.commit()
    except StaleDataError:
        db.session.rollback()
        raise StaleVersion(
            "The profile was changed by someone else while saving; nothing was written.",
            current=db.session.get(User, user_id) if user_id is not None else None,
            # Losing the race against a precondition is still a failed precondition.
            expected_version=expected_version,
        ) from None
    except IntegrityError as error:
        db.session.rollback()
        constraint = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
        if constraint in _EMAIL_INDEXES:
            # Lost a race with another save of the same email.
            raise _duplicate() from None
        raise
    except BaseException:
        db.session.rollback()
        raise


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
