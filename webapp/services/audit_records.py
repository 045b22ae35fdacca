"""An audit entry as JSON: one shape for the API, the NDJSON exports and ``flask audit export``.

A reader who pulls entries through any of them gets the same fields, so a
script can switch between the API and an export without translating.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from webapp.models import UserAudit
from webapp.timestamps import iso_utc


def token_json(entry: UserAudit | Row[Any]) -> dict[str, Any] | None:
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


def audit_entry_json(entry: UserAudit | Row[Any]) -> dict[str, Any]:
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
