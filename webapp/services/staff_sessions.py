"""Dashboard sessions kept on the server: started at sign-in, checked on every
request, ended by sign-out, a password or role change, deactivation, or their
idle and absolute lifetimes.

The browser's cookie only carries a random token (256 bits); the database
keeps its SHA-256, so neither a copy of the cookie replayed after the session
ended nor someone reading the table can open a session.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, select, update

from webapp.extensions import db
from webapp.models import Staff, StaffSession
from webapp.timestamps import utcnow

# last_seen_at is written at most this often per session, not on every
# request: a minute's precision is plenty for an idle lifetime in minutes.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
TOKEN_MAX_LENGTH = 200
USER_AGENT_MAX = 255


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def idle_lifetime() -> timedelta:
    return timedelta(minutes=current_app.config["SESSION_IDLE_MINUTES"])


def absolute_lifetime() -> timedelta:
    return timedelta(hours=current_app.config["SESSION_MAX_HOURS"])


def start_session(staff: Staff, *, remote_addr: str | None, user_agent: str | None) -> str:
    """Record a new session of ``staff`` and return its token (for the cookie only).

    Committed at once. The account's sessions that are over for certain
    (begun longer ago than the absolute lifetime) are deleted on the way, so
    the table holds no more than each account's recent sign-ins.
    """
    now = utcnow()
    token = secrets.token_urlsafe(32)
    db.session.execute(
        delete(StaffSession).where(
            StaffSession.staff_id == staff.id,
            StaffSession.created_at < now - absolute_lifetime(),
        )
    )
    db.session.add(
        StaffSession(
            token_hash=_digest(token),
            staff_id=staff.id,
            created_at=now,
            last_seen_at=now,
            remote_addr=remote_addr,
            user_agent=(user_agent or "")[:USER_AGENT_MAX] or None,
        )
    )
    db.session.commit()
    return token


def find_session(token: object) -> StaffSession | None:
    """The session (with its account) whose token is ``token``, open or not."""
    if not isinstance(token, str) or not token or len(token) > TOKEN_MAX_LENGTH:
        return None
    return db.session.scalar(select(StaffSession).where(StaffSession.token_hash == _digest(token)))


def why_over(record: StaffSession, now: datetime | None = None) -> str | None:
    """Why ``record`` no longer opens anything, or ``None`` while it is open.

    ``idle`` and ``max_age`` are lifetimes that ran out (the session may not
    be marked ended yet); the other reasons are the recorded ``end_reason``,
    and ``deactivated`` also covers an account stopped in any other way.
    """
    if record.ended_at is not None:
        return record.end_reason
    if not record.staff.active:
        return "deactivated"
    now = now or utcnow()
    if now - record.created_at > absolute_lifetime():
        return "max_age"
    if now - record.last_seen_at > idle_lifetime():
        return "idle"
    return None


def keep_alive(record: StaffSession) -> None:
    """Note that ``record`` was used now (written at most once a minute)."""
    now = utcnow()
    if now - record.last_seen_at >= LAST_SEEN_RESOLUTION:
        record.last_seen_at = now
        db.session.commit()


def end_session(record: StaffSession, reason: str) -> None:
    """Mark ``record`` ended; the caller commits (with its security event)."""
    if record.ended_at is None:
        record.ended_at = utcnow()
        record.end_reason = reason


def end_all_sessions(staff_id: int, reason: str) -> None:
    """End every open session of an account; the caller commits."""
    db.session.execute(
        update(StaffSession)
        .where(StaffSession.staff_id == staff_id, StaffSession.ended_at.is_(None))
        .values(ended_at=utcnow(), end_reason=reason)
    )
