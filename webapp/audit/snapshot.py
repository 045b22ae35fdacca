"""Snapshots: the audited fields of a profile as JSON-ready values."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import inspect

from webapp.timestamps import iso_utc

# The profile's own fields. Bookkeeping columns (updated_at, version) are left
# out so that a snapshot changes only when the profile does.
SNAPSHOT_FIELDS: tuple[str, ...] = ("name", "email", "deleted_at")

Snapshot = dict[str, Any]


def _json_value(value: object) -> object:
    if isinstance(value, datetime):
        return iso_utc(value)
    return value


def current_snapshot(obj: object) -> Snapshot:
    """The values ``obj`` holds now, i.e. what the pending flush will write."""
    return {field: _json_value(getattr(obj, field)) for field in SNAPSHOT_FIELDS}


def committed_snapshot(obj: object) -> Snapshot:
    """The values ``obj`` had in the database before the changes being flushed.

    The audited columns are mapped with ``active_history=True``, so the old
    value is loaded before it is overwritten even when it had been expired.
    """
    state = inspect(obj)
    snapshot: Snapshot = {}
    for field in SNAPSHOT_FIELDS:
        history = state.attrs[field].history
        if history.deleted:
            value = history.deleted[0]
        elif history.unchanged:
            value = history.unchanged[0]
        else:
            value = None
        snapshot[field] = _json_value(value)
    return snapshot


def changed_fields(previous: Snapshot | None, new: Snapshot) -> list[str]:
    """Names of the fields whose value differs, in snapshot order."""
    if previous is None:
        return [field for field in SNAPSHOT_FIELDS if new.get(field) is not None]
    return [field for field in SNAPSHOT_FIELDS if previous.get(field) != new.get(field)]
