"""JSON shapes of the API's resources."""

from __future__ import annotations

from typing import Any

from webapp.models import User, UserAudit
from webapp.timestamps import iso_utc


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "created_at": iso_utc(user.created_at),
        "updated_at": iso_utc(user.updated_at),
        "deleted_at": iso_utc(user.deleted_at),
        "version": user.version,
    }


def audit_entry_json(entry: UserAudit) -> dict[str, Any]:
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
    }


def etag(user: User) -> str:
    """The strong entity tag of a profile: its version, quoted."""
    return f'"{user.version}"'
