"""Staff accounts: creation, sign-in, roles, passwords, deactivation."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from webapp.extensions import db
from webapp.models import ROLES, Staff
from webapp.services.errors import Conflict, ServiceError, ValidationFailed
from webapp.services.lookup import get_or_not_found
from webapp.services.security_events import record_event
from webapp.services.sign_in_throttle import reserve_attempt, settle_attempt
from webapp.services.staff_sessions import end_all_sessions
from webapp.timestamps import utcnow

USERNAME_MAX = 64
PASSWORD_MIN = 12
PASSWORD_MAX = 1024
# Compared against when the account does not exist, so a wrong username costs
# as much time as a wrong password and reveals nothing.
_DUMMY_HASH = generate_password_hash("not a real password, only for timing")


class InvalidCredentials(ServiceError):
    code = "invalid-credentials"
    title = "Sign-in failed"
    status = 401


def hash_password(password: str) -> str:
    """A salted scrypt hash (werkzeug's current parameters)."""
    return generate_password_hash(password, method="scrypt")


def clean_username(value: object) -> str:
    if not isinstance(value, str):
        raise ValidationFailed.of_field("username", "must be a string")
    text = value.strip()
    if not 1 <= len(text) <= USERNAME_MAX or not all(
        ch.isascii() and (ch.isalnum() or ch in "._-") for ch in text
    ):
        raise ValidationFailed.of_field(
            "username", f"must be 1 to {USERNAME_MAX} letters, digits, dots, dashes or underscores"
        )
    return text


def clean_role(value: object) -> str:
    if value not in ROLES:
        raise ValidationFailed.of_field("role", f"must be one of {', '.join(ROLES)}")
    return str(value)


def clean_password(value: object) -> str:
    if not isinstance(value, str):
        raise ValidationFailed.of_field("password", "must be a string")
    if not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        raise ValidationFailed.of_field(
            "password", f"must be {PASSWORD_MIN} to {PASSWORD_MAX} characters"
        )
    if "\x00" in value:
        raise ValidationFailed.of_field("password", "must not contain NUL characters")
    return value


def get_staff(staff_id: int) -> Staff:
    return get_or_not_found(Staff, staff_id, f"There is no staff account with id {staff_id}.")


def find_by_username(username: str) -> Staff | None:
    return db.session.scalar(
        select(Staff).where(func.lower(Staff.username) == username.strip().lower())
    )


def list_staff() -> list[Staff]:
    return list(db.session.scalars(select(Staff).order_by(func.lower(Staff.username))))


def count_staff() -> int:
    return db.session.scalar(select(func.count()).select_from(Staff)) or 0


def create_staff(username: object, password: object, role: object) -> Staff:
    """Create an active account; ``Conflict`` if the username is taken (any case)."""
    name = clean_username(username)
    secret = clean_password(password)
    chosen_role = clean_role(role)
    if find_by_username(name) is not None:
        raise _taken(name)
    staff = Staff(username=name, password_hash=hash_password(secret), role=chosen_role)
    db.session.add(staff)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise _taken(name) from None
    record_event(
        "staff_created",
        staff_id=staff.id,
        username=name,
        details={"role": chosen_role},
        commit=False,
    )
    db.session.commit()
    return staff


def set_role(staff_id: int, role: object) -> Staff:
    """Change the role; a real change ends every session of the account."""
    staff = get_staff(staff_id)
    new_role = clean_role(role)
    if staff.role != new_role:
        _keep_an_admin(staff)
        old_role = staff.role
        staff.role = new_role
        # Whoever is signed in as the account signs in again, under the new role.
        end_all_sessions(staff.id, "role_changed")
        record_event(
            "role_changed",
            staff_id=staff.id,
            username=staff.username,
            details={"from": old_role, "to": new_role},
            commit=False,
        )
        db.session.commit()
    return staff


def set_password(staff_id: int, password: object) -> Staff:
    """Change the password and end every session of the account."""
    staff = get_staff(staff_id)
    staff.password_hash = hash_password(clean_password(password))
    end_all_sessions(staff.id, "password_changed")
    record_event("password_changed", staff_id=staff.id, username=staff.username, commit=False)
    db.session.commit()
    return staff


def deactivate(staff_id: int) -> Staff:
    """Stop the account: its sessions end at once, its tokens stop working."""
    staff = get_staff(staff_id)
    if staff.active:
        _keep_an_admin(staff)
        staff.active = False
        end_all_sessions(staff.id, "deactivated")
        record_event("staff_deactivated", staff_id=staff.id, username=staff.username, commit=False)
        db.session.commit()
    return staff


def reactivate(staff_id: int) -> Staff:
    """Let a deactivated account sign in again, with its old password.

    Its sessions stay ended (it signs in afresh); its API tokens that were not
    revoked work again, as they did before the deactivation.
    """
    staff = get_staff(staff_id)
    if not staff.active:
        staff.active = True
        record_event("staff_reactivated", staff_id=staff.id, username=staff.username, commit=False)
        db.session.commit()
    return staff


def authenticate(username: object, password: object, *, remote_addr: str | None) -> Staff:
    """Check a sign-in attempt; every outcome is a security event.

    Failures get one message whether or not the account exists. The sign-in
    throttle (``services.sign_in_throttle``) may refuse the attempt first,
    with ``TooManyAttempts``, even with the right password; it never checks
    more passwords than its limits allow, however many requests arrive at once.
    """
    name = username.strip()[:USERNAME_MAX] if isinstance(username, str) else ""
    secret = password if isinstance(password, str) else ""
    attempt = reserve_attempt(name, remote_addr)

    staff = find_by_username(name) if name else None
    password_ok = check_password_hash(staff.password_hash if staff else _DUMMY_HASH, secret)
    if staff is None or not staff.active or not password_ok or not secret:
        settle_attempt(attempt, succeeded=False)
        record_event(
            "login_failed",
            staff_id=staff.id if staff else None,
            username=name or None,
            details={"reason": _failure_reason(staff, password_ok)},
        )
        raise InvalidCredentials("Unknown username or wrong password.")
    settle_attempt(attempt, succeeded=True)
    staff.last_login_at = utcnow()
    record_event("login_succeeded", staff_id=staff.id, username=staff.username, commit=False)
    db.session.commit()
    return staff


def _keep_an_admin(staff: Staff) -> None:
    """Refuse to demote or deactivate the last active admin: no one could manage staff."""
    if staff.role != "admin" or not staff.active:
        return
    others = db.session.scalar(
        select(func.count())
        .select_from(Staff)
        .where(Staff.role == "admin", Staff.active.is_(True), Staff.id != staff.id)
    )
    if not others:
        raise Conflict(
            f"{staff.username} is the last active admin; make another admin first.",
            errors={"role": ["the last active admin must stay an admin"]},
        )


def _failure_reason(staff: Staff | None, password_ok: bool) -> str:
    # Stored for auditors only; the person signing in always sees one message.
    if staff is None:
        return "unknown username"
    if not staff.active:
        return "account deactivated"
    return "wrong password"


def _taken(username: str) -> Conflict:
    return Conflict(
        f"The username {username} is already taken.",
        errors={"username": ["is already taken"]},
    )
