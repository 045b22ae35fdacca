"""Audit log exports: every entry of a filter as CSV or NDJSON, in constant memory.

Entries are read in keyset batches, newest first, and written as they come,
so an export of millions of rows holds one batch at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Row

from webapp.services.audit_filter import AuditFilter
from webapp.services.audit_log import list_entry_rows, resolve_actor
from webapp.services.audit_records import audit_entry_json
from webapp.services.spreadsheet_cells import csv_stream, json_cell, neutralise
from webapp.timestamps import iso_utc

BATCH_SIZE = 1000

CSV_COLUMNS: tuple[str, ...] = (
    "id",
    "timestamp",
    "user_id",
    "operation",
    "version",
    "changed_fields",
    "actor",
    "channel",
    "channel_detail",
    "token_id",
    "token_created_by",
    "remote_addr",
    "request_id",
    "client_request_id",
    "reason",
    "previous_data",
    "new_data",
)


def iter_entries(audit_filter: AuditFilter, *, batch_size: int = BATCH_SIZE) -> Iterator[Row[Any]]:
    """Every entry of the filter, newest first, one keyset batch at a time.

    Rows of columns, not ORM objects: they read the same (``entry.operation``)
    and an export of a million entries makes no million objects.
    """
    audit_filter = resolve_actor(audit_filter)
    cursor: str | None = None
    while True:
        page = list_entry_rows(audit_filter, limit=batch_size, cursor=cursor)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def csv_row(entry: Row[Any]) -> list[str | int]:
    """One entry as CSV cells; the snapshots as JSON text.

    An entry made through an API token names the token (``channel_detail``,
    ``token_id``) and who created it (``token_created_by``, ``unknown`` when
    that was not recorded), who may be someone else than the ``actor``.
    """
    created_by = ""
    if entry.token_id is not None:
        created_by = entry.token_created_by or "unknown"
    text_cells = [
        iso_utc(entry.timestamp) or "",
        entry.operation,
        ",".join(entry.changed_fields),
        entry.actor_label or "",
        entry.channel or "",
        entry.channel_detail or "",
        created_by,
        entry.remote_addr or "",
        entry.request_id or "",
        entry.client_request_id or "",
        entry.reason or "",
        json_cell(entry.previous_data),
        json_cell(entry.new_data),
    ]
    timestamp, operation, changed, actor, channel, detail, created_by, *rest = (
        neutralise(cell) for cell in text_cells
    )
    token_id = entry.token_id if entry.token_id is not None else ""
    return [
        entry.id,
        timestamp,
        entry.user_id,
        operation,
        entry.version,
        changed,
        actor,
        channel,
        detail,
        token_id,
        created_by,
        *rest,
    ]


def csv_lines(audit_filter: AuditFilter, *, batch_size: int = BATCH_SIZE) -> Iterator[str]:
    """The header, then one CSV line per entry (RFC 4180 line ends)."""
    return csv_stream(
        CSV_COLUMNS, (csv_row(entry) for entry in iter_entries(audit_filter, batch_size=batch_size))
    )


def ndjson_lines(audit_filter: AuditFilter, *, batch_size: int = BATCH_SIZE) -> Iterator[str]:
    """One JSON object per line, in the API's shape of an audit entry."""
    for entry in iter_entries(audit_filter, batch_size=batch_size):
        yield json.dumps(audit_entry_json(entry), ensure_ascii=False, separators=(",", ":")) + "\n"
