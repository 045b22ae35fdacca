"""The API's resources filled from models and rows, in the shapes of ``webapp.api.schemas``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from webapp.api import schemas
from webapp.models import AuditVerification, User, UserAudit
from webapp.timestamps import iso_utc


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


def token_json(entry: UserAudit | Row[Any]) -> schemas.ActingToken | None:
    """The API token an entry came through and who created it; ``None`` for other channels.

    The token acts as its owner (the entry's actor), but an admin may have
    created it for that account: its creator is who really chose to act.
    """
    if entry.token_id is None:
        return None
    created_by = None
    if entry.token_created_by is not None:  # unknown for tokens older than the record
        created_by = {"id": entry.token_created_by_id, "label": entry.token_created_by}
    return {"id": entry.token_id, "name": entry.token_name, "created_by": created_by}


def audit_entry_json(entry: UserAudit | Row[Any]) -> schemas.AuditEntry:
    """An entry in the API's shape; a row of its columns (and its token's) reads the same."""
    return {
        "id": entry.id,
        "user_id": entry.user_id,
        "operation": entry.operation,
        "timestamp": iso_utc(entry.timestamp),
        "version": entry.version,
        "changed_fields": list(entry.changed_fields),
        "previous_data": entry.previous_data,
        "new_data": entry.new_data,
        "reason": entry.reason,
        "actor": {
            "id": entry.actor_id,
            "label": entry.actor_label,
            "channel": entry.channel,
            "channel_detail": entry.channel_detail,
            "token": token_json(entry),
        },
        "remote_addr": entry.remote_addr,
        "request_id": entry.request_id,
        "client_request_id": entry.client_request_id,
        "unattributed": entry.unattributed,
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
