"""Exports written by PostgreSQL: the cell rules in SQL are the Python rules of
``webapp.services.spreadsheet_cells``, and every export byte is what the Python
formatting of the same entry writes (``csv.writer`` cells, ``json.dumps`` of the
API's shape), for any value an entry can hold."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, insert, text

from webapp.api.representations import audit_entry_json
from webapp.audit import seal
from webapp.audit.chain import write_entries
from webapp.audit.personal_data import encrypt_snapshot, new_wrapped_key
from webapp.models import ProfileDataKey
from webapp.services import audit_export
from webapp.services.audit_filter import AuditFilter
from webapp.services.audit_log import list_entry_rows, resolve_actor
from webapp.services.spreadsheet_cells import json_cell, neutralise
from webapp.timestamps import iso_utc

KEY = b"a key for the export tests"

# Text as it can reach an entry (no NUL), with the characters the rules are about
# made likely: separators, formula starts, quotes, line ends, backslashes.
_awkward = st.sampled_from([";", "\t", "\r", "\n", " ", "=", "+", "-", "@", '"', ",", "\\", "'"])
texts = st.lists(
    _awkward | st.characters(codec="utf-8", exclude_characters="\x00", exclude_categories=["Cs"]),
    max_size=30,
).map("".join)
snapshots = st.fixed_dictionaries({"name": texts, "email": texts, "deleted_at": st.none() | texts})
entries = st.fixed_dictionaries(
    {
        "operation": st.sampled_from(["create", "update", "delete", "restore"]),
        "timestamp": st.datetimes(
            min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
        ),
        "previous_data": st.none() | snapshots,
        "new_data": snapshots,
        "changed_fields": st.lists(st.sampled_from(["name", "email", "deleted_at"]), max_size=3),
        "version": st.integers(1, 2**31 - 1),
        "reason": st.none() | texts,
        "actor_label": st.none() | texts.map(lambda value: value[:100]),
        "channel": st.sampled_from(["web", "api", "cli", "database"]),
        "channel_detail": st.none() | texts.map(lambda value: value[:100]),
        "remote_addr": st.none() | texts.map(lambda value: value[:64]),
        "request_id": st.none() | texts,
        "client_request_id": st.none() | texts,
        "unattributed": st.booleans(),
    }
).map(
    # A create, and only a create, has no previous snapshot.
    lambda entry: (
        {**entry, "operation": "create"}
        if entry["previous_data"] is None
        else {
            **entry,
            "operation": "update" if entry["operation"] == "create" else entry["operation"],
        }
    )
)


def python_csv_row(entry: Any) -> list[str | int]:
    """An entry's CSV cells by the Python rules (as exports were written before COPY)."""
    created_by = (entry.token_created_by or "unknown") if entry.token_id is not None else ""
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


def python_export(audit_filter: AuditFilter, kind: str) -> bytes:
    """The whole export of ``audit_filter`` formatted in Python, entry by entry."""
    rows = list_entry_rows(resolve_actor(audit_filter), limit=100_000).items
    if kind == "ndjson":
        return b"".join(
            (
                json.dumps(audit_entry_json(row), ensure_ascii=False, separators=(",", ":")) + "\n"
            ).encode()
            for row in rows
        )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(audit_export.CSV_COLUMNS)
    writer.writerows(python_csv_row(row) for row in rows)
    return buffer.getvalue().encode()


def sql_export(audit_filter: AuditFilter, kind: str) -> bytes:
    lines = audit_export.csv_lines if kind == "csv" else audit_export.ndjson_lines
    return b"".join(lines(audit_filter))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=texts)
def test_neutralising_in_sql_is_the_python_rule(engine: Engine, value: str) -> None:
    with engine.connect() as connection:
        in_sql = connection.execute(
            text(f"SELECT {audit_export.neutralised_sql('CAST(:value AS text)')}"),
            {"value": value},
        ).scalar_one()
    assert in_sql == neutralise(value)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(snapshot=st.none() | snapshots | st.dictionaries(texts, st.none() | texts, max_size=4))
def test_json_cells_in_sql_are_the_python_rule(engine: Engine, snapshot: Any) -> None:
    """Both forms: the wide CSV's sorted cell, and the NDJSON's compact object in
    the order the driver decodes it (any keys: a snapshot's fields take a short cut)."""
    value = None if snapshot is None else json.dumps(snapshot)
    with engine.connect() as connection:
        in_sql, compact, decoded = connection.execute(
            text(
                f"SELECT {audit_export.json_cell_sql('CAST(:value AS jsonb)')}, "
                f"{audit_export.compact_json_sql('CAST(:value AS jsonb)')}, CAST(:value AS jsonb)"
            ),
            {"value": value},
        ).one()
    assert (in_sql or "") == json_cell(snapshot)
    assert compact == json.dumps(decoded, ensure_ascii=False, separators=(",", ":"))


def _a_profile(engine: Engine) -> int:
    with engine.begin() as connection:
        return connection.execute(
            text(
                "INSERT INTO users (name, email, version) "
                "VALUES ('P', gen_random_uuid() || '@example.com', 1) RETURNING id"
            )
        ).scalar_one()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(entries, min_size=1, max_size=3))
def test_exports_are_byte_for_byte_the_python_formatting(app_context, engine, batch) -> None:
    user_id = _a_profile(engine)
    with engine.begin() as connection:
        for entry in batch:
            entry_id = connection.execute(
                text("SELECT nextval(pg_get_serial_sequence('user_audit', 'id'))")
            ).scalar_one()
            row = {"id": entry_id, "user_id": user_id, "actor_id": None, **entry}
            row["seal"] = seal.seal_of(KEY, seal.canonical_entry(row))
            write_entries(connection, [row])
    audit_filter = AuditFilter(user_id=user_id)
    for kind in ("csv", "ndjson"):
        assert sql_export(audit_filter, kind) == python_export(audit_filter, kind), kind


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(entries, min_size=1, max_size=3))
def test_encrypted_entries_are_byte_for_byte_the_python_formatting(
    app_context, engine, batch
) -> None:
    """Personal values stored encrypted, decrypted by the export and spliced into
    its cells: the same bytes as the Python formatting of the decrypted entries."""
    user_id = _a_profile(engine)
    cipher, data_key = new_wrapped_key()
    with engine.begin() as connection:
        connection.execute(
            insert(ProfileDataKey).values(
                user_id=user_id,
                master_key_id=data_key.master_key_id,
                wrapped_key=data_key.wrapped_key,
            )
        )
        for entry in batch:
            entry_id = connection.execute(
                text("SELECT nextval(pg_get_serial_sequence('user_audit', 'id'))")
            ).scalar_one()
            row = {"id": entry_id, "user_id": user_id, "actor_id": None, **entry}
            if row["previous_data"] is not None:
                row["previous_data"] = encrypt_snapshot(
                    cipher, entry_id, user_id, "previous", row["previous_data"]
                )
            row["new_data"] = encrypt_snapshot(cipher, entry_id, user_id, "new", row["new_data"])
            row["seal"] = seal.seal_of(KEY, seal.canonical_entry(row))
            write_entries(connection, [row])
    audit_filter = AuditFilter(user_id=user_id)
    for kind in ("csv", "ndjson"):
        exported = sql_export(audit_filter, kind)
        assert exported == python_export(audit_filter, kind), kind
        assert b"ciphertext" not in exported


def test_token_entries_are_byte_for_byte_the_python_formatting(app_context, client) -> None:
    """Entries made through an API token name it and its creator, as before."""
    created = client.post(
        "/api/v1/users", json={"name": "Ada;=1", "email": "ada@example.com", "reason": "+1"}
    )
    assert created.status_code == 201
    client.patch(f"/api/v1/users/{created.get_json()['id']}", json={"name": "Ada\r\n\\x"})
    for kind in ("csv", "ndjson"):
        exported = sql_export(AuditFilter(), kind)
        assert exported == python_export(AuditFilter(), kind), kind
        assert b'"created_by":{"id":' in exported or kind == "csv"
