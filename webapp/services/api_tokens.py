"""API tokens for scripts: shown once, stored only as a SHA-256 hash.

Tokens are 256 random bits, so a fast hash is enough: there is nothing to
brute-force, unlike a password.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from webapp.audit.context import current_actor
from webapp.audit.errors import UnattributedChangeError
from webapp.extensions import db
from webapp.models import ApiToken, Staff
from webapp.services.errors import Conflict, ValidationFailed
from webapp.services.lookup import get_or_not_found
from webapp.services.profile_rules import looks_blank
from webapp.services.security_events import record_event
from webapp.timestamps import utcnow
from webapp.typed_text import parse_whole_number

TOKEN_PREFIX = "pa_"  # noqa: S105 - a marker, not a secret
NAME_MAX = 100
MAX_EXPIRY_DAYS = 3650
# last_used_at is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def clean_token_name(value: object) -> str:
    """1 to 100 printable characters, not all of them invisible (a Hangul filler...)."""
    text = value.strip() if isinstance(value, str) else ""
    # isprintable() already refuses format characters (bidirectional
    # overrides, zero-width spaces); some invisible letters pass it.
    if not 1 <= len(text) <= NAME_MAX or not text.isprintable() or looks_blank(text):
        raise ValidationFailed.of_field("name", f"must be 1 to {NAME_MAX} printable characters")
    return text


def clean_expiry_days(value: object) -> int | None:
    if value is None or value == "":
        return None
    days = parse_whole_number(value, maximum=MAX_EXPIRY_DAYS)
    if days is None:
        raise ValidationFailed.of_field(
            "expires_in_days", f"must be a whole number from 1 to {MAX_EXPIRY_DAYS}"
        )
    return days


def _name_taken(staff: Staff, name: str) -> Conflict:
    message = (
        f"{staff.username} already has a token named {name} "
        "(names of revoked and expired tokens stay taken)"
    )
    return Conflict(f"{message}.", errors={"name": [message]})


def create_token(
    staff: Staff, name: object, *, expires_in_days: object = None
) -> tuple[ApiToken, str]:
    """Create a token for ``staff``; returns the row and the token, shown only now.

    The acting account or command is recorded as its creator: the token acts
    as ``staff``, and its entries must still show who made it. Names are
    unique per owner whatever their case, revoked tokens included, so a name
    on an entry always means one token.
    """
    creator = current_actor()
    if creator is None:
        raise UnattributedChangeError(
            "Refusing to create an API token with no actor: bind one with "
            "webapp.audit.context.acting_as(...) (requests and CLI commands do)."
        )
    if not staff.active:
        raise Conflict(f"{staff.username} is deactivated; it cannot get new tokens.")
    token_name = clean_token_name(name)
    days = clean_expiry_days(expires_in_days)
    taken = db.session.scalar(
        select(ApiToken.id).where(
            ApiToken.staff_id == staff.id, func.lower(ApiToken.name) == token_name.lower()
        )
    )
    if taken is not None:
        raise _name_taken(staff, token_name)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        staff_id=staff.id,
        name=token_name,
        token_hash=_digest(secret),
        prefix=secret[:10],
        expires_at=utcnow() + timedelta(days=days) if days else None,
        created_by_id=creator.staff_id,
        created_by_label=creator.label,
    )
    db.session.add(token)
    try:
        db.session.flush()
    except IntegrityError:
        # Another request took the name between the check and the insert.
        db.session.rollback()
        raise _name_taken(staff, token_name) from None
    record_event(
        "token_created",
        staff_id=staff.id,
        username=staff.username,
        details={"token_id": token.id, "name": token_name, "expires_in_days": days},
        commit=False,
    )
    db.session.commit()
    return token, secret


def revoke_token(token_id: int) -> ApiToken:
    token = get_token(token_id)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        record_event(
            "token_revoked",
            staff_id=token.staff_id,
            username=token.staff.username,
            details={"token_id": token.id, "name": token.name},
            commit=False,
        )
        db.session.commit()
    return token


def get_token(token_id: int) -> ApiToken:
    return get_or_not_found(ApiToken, token_id, f"There is no API token with id {token_id}.")


def list_tokens(staff_id: int | None = None) -> list[ApiToken]:
    statement = select(ApiToken).options(joinedload(ApiToken.staff)).order_by(ApiToken.id)
    if staff_id is not None:
        statement = statement.where(ApiToken.staff_id == staff_id)
    return list(db.session.scalars(statement))


def token_status(token: ApiToken) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= utcnow():
        return "expired"
    if not token.staff.active:
        return "account deactivated"
    return "active"


def resolve_bearer(secret: str) -> ApiToken | None:
    """The usable token for ``secret``, or ``None`` (unknown, revoked, expired, account off).

    Records the refusal as a security event, and keeps last_used_at current.
    """
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        token = None
    else:
        token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(secret)))
    status = token_status(token) if token is not None else "unknown"
    if token is None or status != "active":
        record_event(
            "token_rejected",
            staff_id=token.staff_id if token else None,
            username=token.staff.username if token else None,
            details={"why": status, **({"token_id": token.id} if token else {})},
        )
        return None
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        token.last_used_at = now
        db.session.commit()
    return token
