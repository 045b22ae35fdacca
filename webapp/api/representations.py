"""JSON shapes of the API's resources.

An audit entry's shape is shared with the exports, so it lives with them
(``webapp.services.audit_records``) and is only named here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from webapp.api import schemas
from webapp.models import AuditVerification, User
from webapp.services.audit_records import audit_entry_json
from webapp.timestamps import iso_utc

__all__ = [
    "audit_entry_json",
    "etag",
    "security_event_json",
    "user_json",
    "verification_json",
]


def user_json(user: User) -> schemas.User:
    return {
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "created_at": iso_utc(user.created_at),
        "updated_at": iso_utc(user.updated_at),
        "deleted_at": iso_utc(user.deleted_at),
        "version": user.version,
    }


def security_event_json(event: Row[Any]) -> schemas.SecurityEvent:
    """An event (a row of its columns with ``count`` and ``last_seen``) in the API's shape."""
    return {
        "id": event.id,
        "timestamp": iso_utc(event.timestamp),
        "event": event.event,
        "count": event.count,
        "last_seen": iso_utc(event.last_seen),
        "staff_id": event.staff_id,
        "username": event.username,
        "actor": event.actor_label,
        "remote_addr": event.remote_addr,
        "request_id": event.request_id,
        "client_request_id": event.client_request_id,
        "details": event.details,
    }


def etag(user: User) -> str:
    """The strong entity tag of a profile: its version, quoted."""
    return f'"{user.version}"'


def verification_json(row: AuditVerification | None) -> schemas.AuditVerification | None:
    """The last ``flask audit verify`` run, or None if there has been none."""
    if row is None:
        return None
    return {
        "ok": row.ok,
        "started_at": iso_utc(row.started_at),
        "finished_at": iso_utc(row.finished_at),
        "entries_checked": row.entries_checked,
        "head": {"seq": row.head_seq, "hash": row.head_hash.hex()},
        "pending_entries": row.pending_entries,
        "drifted_profiles": row.drifted_profiles,
        "checkpoint_seq": row.checkpoint_seq,
        "first_bad_entry_id": row.first_bad_entry_id,
        "problem": row.problem,
        "verified_by": row.verified_by,
    }
