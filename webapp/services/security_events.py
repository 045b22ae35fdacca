"""Security events: sign-ins, account and token changes, refusals.

Each event is a row in ``security_events`` (append-only) and a log line.
Neither ever holds a password or a token.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy import insert, select, tuple_

from webapp.audit.context import current_actor, current_origin
from webapp.extensions import db
from webapp.models import SecurityEvent
from webapp.services.pagination import Page, decode_time_id_cursor, encode_time_id_cursor

log = logging.getLogger("profile_audit.security")

# Every event the app records; record_event refuses any other name.
EVENTS: tuple[str, ...] = (
    "login_succeeded",
    "login_failed",
    "login_throttled",
    "logout",
    "session_expired",
    "staff_created",
    "role_changed",
    "password_changed",
    "staff_deactivated",
    "token_created",
    "token_revoked",
    "token_rejected",
    "csrf_failed",
    "forbidden",
)


def record_event(
    event: str,
    *,
    staff_id: int | None = None,
    username: str | None = None,
    details: Mapping[str, object] | None = None,
    commit: bool = True,
) -> None:
    """Store and log one event, with the current origin and actor.

    It is written with its own INSERT and, by default, committed at once: a
    refused sign-in must leave its trace even though nothing else is saved.
    """
    if event not in EVENTS:
        # A misspelt name would silently hide the event from anyone filtering.
        raise ValueError(f"unknown security event {event!r}")
    origin = current_origin()
    actor = current_actor()
    row = {
        "event": event,
        "staff_id": staff_id,
        "username": username[:64] if username else None,
        "actor_label": actor.label if actor else None,
        "remote_addr": origin.remote_addr if origin else None,
        "request_id": origin.request_id if origin else None,
        "details": dict(details or {}),
    }
    db.session.execute(insert(SecurityEvent).values(**row))
    if commit:
        db.session.commit()
    log.info(
        "security event %s",
        event,
        extra={"security_event": {k: v for k, v in row.items() if k != "details"}},
    )


def list_events(*, limit: int, cursor: str | None = None) -> Page[SecurityEvent]:
    """Events newest first, one keyset page."""
    statement = select(SecurityEvent)
    if cursor:
        moment, last_id = decode_time_id_cursor(cursor)
        statement = statement.where(
            tuple_(SecurityEvent.timestamp, SecurityEvent.id) < tuple_(moment, last_id)
        )
    statement = statement.order_by(SecurityEvent.timestamp.desc(), SecurityEvent.id.desc())
    rows = list(db.session.scalars(statement.limit(limit + 1)))
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_time_id_cursor(rows[limit - 1].timestamp, rows[limit - 1].id)
    return Page(items=rows[:limit], next_cursor=next_cursor)
