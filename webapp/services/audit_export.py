"""Audit log exports: every entry of a filter as CSV or NDJSON, at the database's speed.

PostgreSQL writes the export: one ``COPY (SELECT …) TO STDOUT`` per export,
with the cells formatted and neutralised in SQL by the same rules as
``webapp.services.spreadsheet_cells`` (``neutralise``, ``json_cell``) and the
API's JSON shape of an entry (``audit_entry_json``). Python only gathers the
rows into large chunks, so an export of millions of entries holds one chunk at
a time and costs little more than the server's scan.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, literal_column, true
from sqlalchemy.dialects import postgresql

from webapp.audit.snapshot import SNAPSHOT_FIELDS
from webapp.extensions import db
from webapp.models import ApiToken, UserAudit
from webapp.services.audit_filter import AuditFilter
from webapp.services.audit_log import (
    filtered_statement,
)

#: Entries per chunk handed to the response or the file: about 0.5 to 1 MiB.
CHUNK_ENTRIES = 2000

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

#: A row count callback: how many entries the chunk just yielded holds.
EntriesWritten = Callable[[int], None]

# --- the cell rules, in SQL ------------------------------------------------------
# spreadsheet_cells.neutralise: a "'" after each ";" or tab that starts a formula
# (after spaces), then one before the whole cell if it starts (after spaces) with
# a formula character. "-" last in the brackets, so it is itself.
_FORMULA_AFTER_SEPARATOR = r"'([;\t])( *[=+@\r-])'"
_FORMULA_AT_START = r"'^( *[=+@\t\r-])'"


def neutralised_sql(expression: str) -> str:
    """SQL text of ``spreadsheet_cells.neutralise`` applied to a text ``expression``."""
    after_separators = (
        f"regexp_replace({expression}, {_FORMULA_AFTER_SEPARATOR}, E'\\\\1\\'\\\\2', 'g')"
    )
    return f"regexp_replace({after_separators}, {_FORMULA_AT_START}, E'\\'\\\\1')"


def _text_cell(expression: str) -> str:
    # COPY writes an empty string as "" and NULL as nothing; csv.writer wrote
    # an empty cell as nothing.
    return f"NULLIF({neutralised_sql(f'coalesce({expression}, {chr(39)}{chr(39)})')}, '')"


def json_cell_sql(expression: str) -> str:
    """SQL text of ``spreadsheet_cells.json_cell`` of a ``jsonb`` object (NULL for NULL).

    ``json.dumps(sort_keys=True)``: keys in code point order (``COLLATE "C"``
    on UTF-8), ``": "`` and ``", "``; the values are the snapshot's scalars,
    whose ``jsonb`` text is Python's. ``;`` spelt ``\\u003b``.
    """
    # Fixed SQL around a column expression of this module; no input reaches it.
    members = (
        f"(SELECT string_agg(to_json(member.key)::text || ': ' || member.value::text, ', '"  # noqa: S608
        f' ORDER BY member.key COLLATE "C") FROM jsonb_each({expression}) AS member)'
    )
    as_text = (
        f"CASE WHEN {_is_snapshot(expression)} "
        f"THEN {_snapshot_members(expression, sorted(SNAPSHOT_FIELDS), ', ', ': ')}"
        f" WHEN jsonb_typeof({expression}) = 'object' THEN '{{' || coalesce({members}, '') "
        f"|| '}}' ELSE {expression}::text END"
    )
    return f"replace({as_text}, ';', '\\u003b')"


def _is_snapshot(expression: str) -> str:
    """SQL: the value is an object of exactly the snapshot's fields (nearly every entry)."""
    fields = ", ".join(f"'{name}'" for name in SNAPSHOT_FIELDS)
    return (
        f"jsonb_typeof({expression}) = 'object' AND {expression} ?& ARRAY[{fields}]"
        f" AND {expression} - ARRAY[{fields}] = '{{}}'::jsonb"
    )


def _snapshot_members(expression: str, order: list[str], comma: str, colon: str) -> str:
    """SQL: a snapshot object's text with its members in ``order``, without a subquery."""
    parts = " || ".join(
        f"'{comma if index else ''}\"{name}\"{colon}' || ({expression} -> '{name}')::text"
        for index, name in enumerate(order)
    )
    return f"('{{' || {parts} || '}}')"


#: jsonb's own order of keys (shorter first, then bytewise), which json.loads keeps.
_JSONB_ORDER = sorted(SNAPSHOT_FIELDS, key=lambda name: (len(name.encode()), name.encode()))


def compact_json_sql(expression: str) -> str:
    """A ``jsonb`` object as ``json.dumps(separators=(",", ":"))`` writes it after
    loading it: members in ``jsonb``'s own order, no spaces; ``null`` for NULL."""
    # Fixed SQL around a column expression of this module; no input reaches it.
    members = (
        f"(SELECT string_agg(to_json(member.key)::text || ':' || member.value::text, ','"  # noqa: S608
        f" ORDER BY member.position) FROM jsonb_each({expression}) WITH ORDINALITY"
        f" AS member(key, value, position))"
    )
    return (
        f"CASE WHEN {_is_snapshot(expression)} "
        f"THEN {_snapshot_members(expression, _JSONB_ORDER, ',', ':')}"
        f" WHEN jsonb_typeof({expression}) = 'object' THEN '{{' || coalesce({members}, '') "
        f"|| '}}' ELSE coalesce({expression}::text, 'null') END"
    )


def _number(expression: str) -> str:
    return f"coalesce(({expression})::text, 'null')"


def _json(expression: str) -> str:
    return f"coalesce(to_json({expression})::text, 'null')"


_TIMESTAMP = (
    """to_char(user_audit."timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
)
_CREATOR_CELL = (
    "CASE WHEN user_audit.token_id IS NULL THEN NULL"
    " ELSE coalesce(NULLIF(api_tokens.created_by_label, ''), 'unknown') END"
)

# One CSV record per entry, in CSV_COLUMNS order. Timestamps, operations, field
# names and JSON cells hold nothing neutralise() changes, so it is not run on them.
_CSV_CELLS: tuple[str, ...] = (
    "user_audit.id",
    _TIMESTAMP,
    "user_audit.user_id",
    "user_audit.operation",
    "user_audit.version",
    "NULLIF(array_to_string(user_audit.changed_fields, ','), '')",
    _text_cell("user_audit.actor_label"),
    _text_cell("user_audit.channel"),
    _text_cell("user_audit.channel_detail"),
    "user_audit.token_id",
    _text_cell(_CREATOR_CELL),
    _text_cell("user_audit.remote_addr"),
    _text_cell("user_audit.request_id"),
    _text_cell("user_audit.client_request_id"),
    _text_cell("user_audit.reason"),
    json_cell_sql("user_audit.previous_data"),
    json_cell_sql("user_audit.new_data"),
)

# The API's shape of an entry (webapp.services.audit_records.audit_entry_json),
# compact, keys in its order; COPY's text format doubles each backslash, which
# the reader undoes (a JSON text has no other character COPY escapes).
_TOKEN_JSON = (
    "CASE WHEN user_audit.token_id IS NULL THEN 'null' ELSE "
    "'{\"id\":' || user_audit.token_id || ',\"name\":' || " + _json("api_tokens.name") + " || "
    "',\"created_by\":' || CASE WHEN api_tokens.created_by_label IS NULL THEN 'null' ELSE "
    "'{\"id\":' || "
    + _number("api_tokens.created_by_id")
    + " || ',\"label\":' || "
    + _json("api_tokens.created_by_label")
    + " || '}' END || '}' END"
)
_NDJSON_LINE = " || ".join(
    [
        "'{\"id\":' || user_audit.id",
        "',\"user_id\":' || " + _number("user_audit.user_id"),
        "',\"operation\":' || " + _json("user_audit.operation"),
        "',\"timestamp\":' || " + _json(_TIMESTAMP),
        "',\"version\":' || " + _number("user_audit.version"),
        "',\"changed_fields\":' || " + _json("user_audit.changed_fields"),
        "',\"previous_data\":' || " + compact_json_sql("user_audit.previous_data"),
        "',\"new_data\":' || " + compact_json_sql("user_audit.new_data"),
        "',\"reason\":' || " + _json("user_audit.reason"),
        '\',"actor":{"id":\' || ' + _number("user_audit.actor_id"),
        "',\"label\":' || " + _json("user_audit.actor_label"),
        "',\"channel\":' || " + _json("user_audit.channel"),
        "',\"channel_detail\":' || " + _json("user_audit.channel_detail"),
        "',\"token\":' || " + _TOKEN_JSON,
        "'},\"remote_addr\":' || " + _json("user_audit.remote_addr"),
        "',\"request_id\":' || " + _json("user_audit.request_id"),
        "',\"client_request_id\":' || " + _json("user_audit.client_request_id"),
        "',\"unattributed\":' || CASE WHEN user_audit.unattributed THEN 'true' ELSE 'false' END",
        "'}'",
    ]
)


def _copy_statement(
    audit_filter: AuditFilter, cells: Sequence[str], options: str, *, per_field: bool = False
) -> tuple[str, dict[str, Any]]:
    """``COPY (SELECT cells …) TO STDOUT`` of the filter's entries, newest first, with its
    parameters: the WHERE clause is the timeline's own (``filtered_statement``).

    ``per_field``: one row per changed field (``changed.field``), in the entry's order.
    """
    statement = (
        filtered_statement(audit_filter)
        .with_only_columns(*(literal_column(cell) for cell in cells))
        .select_from(UserAudit)
        .outerjoin(ApiToken, ApiToken.id == UserAudit.token_id)
        .order_by(UserAudit.timestamp.desc(), UserAudit.id.desc())
    )
    if per_field:
        changed = (
            func.unnest(UserAudit.changed_fields)
            .table_valued("field", with_ordinality="position")
            .render_derived()
            .lateral("changed")
        )
        statement = statement.outerjoin(changed, true()).order_by(changed.c.position)
    compiled = statement.compile(
        dialect=postgresql.psycopg.dialect(), compile_kwargs={"render_postcompile": True}
    )
    return f"COPY ({compiled.string}) TO STDOUT {options}", dict(compiled.params)


def _copy_rows(
    audit_filter: AuditFilter, cells: Sequence[str], options: str, *, per_field: bool = False
) -> Generator[memoryview, None, None]:
    """The COPY's rows, one at a time (libpq hands COPY data over row by row);
    each is valid until the next is read."""
    sql, params = _copy_statement(audit_filter, cells, options, per_field=per_field)
    # The session's own connection and transaction: the command line's export
    # reads one REPEATABLE READ snapshot, as its count does.
    driver_connection = db.session.connection().connection.driver_connection
    with driver_connection.cursor() as cursor:
        # One statement reads the whole export, which may take longer than the
        # statement timeout that guards every other query: lifted for this
        # transaction only (SET LOCAL), as the batches of 1,000 it replaces were each short.
        cursor.execute("SET LOCAL statement_timeout = 0")
        with cursor.copy(sql, params) as copy:
            yield from copy


def _chunks(
    rows: Generator[memoryview, None, None],
    *,
    batch_size: int,
    on_entries: EntriesWritten | None,
    csv_records: bool,
) -> Iterator[bytes]:
    """The rows gathered ``batch_size`` at a time into one ``bytes`` each.

    CSV: COPY ends each record with "\n" (a "\n" inside a quoted cell stays
    as it is), RFC 4180 wants "\r\n". Text (NDJSON): COPY doubles each
    backslash, the only character of a JSON text it escapes.
    """
    with closing(rows):  # ends the COPY when the reader stops early
        yield from _gathered(
            rows, batch_size=batch_size, on_entries=on_entries, csv_records=csv_records
        )


def _gathered(
    rows: Iterator[memoryview],
    *,
    batch_size: int,
    on_entries: EntriesWritten | None,
    csv_records: bool,
) -> Iterator[bytes]:
    chunk = bytearray()
    count = 0
    for row in rows:
        if csv_records:
            chunk += row[:-1]
            chunk += b"\r\n"
        else:
            chunk += row
        count += 1
        if count == batch_size:
            yield bytes(chunk) if csv_records else bytes(chunk.replace(b"\\\\", b"\\"))
            if on_entries is not None:
                on_entries(count)
            chunk.clear()
            count = 0
    if count:
        yield bytes(chunk) if csv_records else bytes(chunk.replace(b"\\\\", b"\\"))
        if on_entries is not None:
            on_entries(count)


def csv_lines(
    audit_filter: AuditFilter,
    *,
    batch_size: int = CHUNK_ENTRIES,
    on_entries: EntriesWritten | None = None,
) -> Iterator[bytes]:
    """The header, then every entry as a CSV record (RFC 4180 line ends), in
    UTF-8 chunks of ``batch_size`` entries; ``on_entries`` hears each chunk's count."""
    yield (",".join(CSV_COLUMNS) + "\r\n").encode()
    rows = _copy_rows(audit_filter, _CSV_CELLS, "(FORMAT csv)")
    yield from _chunks(rows, batch_size=batch_size, on_entries=on_entries, csv_records=True)


def ndjson_lines(
    audit_filter: AuditFilter,
    *,
    batch_size: int = CHUNK_ENTRIES,
    on_entries: EntriesWritten | None = None,
) -> Iterator[bytes]:
    """One JSON object per line in the API's shape of an entry, in UTF-8 chunks of
    ``batch_size`` entries; ``on_entries`` hears each chunk's count."""
    rows = _copy_rows(audit_filter, (_NDJSON_LINE,), "")
    yield from _chunks(rows, batch_size=batch_size, on_entries=on_entries, csv_records=False)


# --- what auditors open ----------------------------------------------------------

#: Excel reads a CSV as UTF-8 only when it starts with a byte order mark.
EXCEL_BOM = b"\xef\xbb\xbf"

LONG_CSV_COLUMNS: tuple[str, ...] = (
    "entry",
    "timestamp",
    "user_id",
    "operation",
    "version",
    "actor",
    "channel",
    "reason",
    "field",
    "before",
    "after",
)

# One record per changed field of each entry (an entry that changed none keeps
# one record with the field empty), the values as text, neutralised as above.
_LONG_CSV_CELLS: tuple[str, ...] = (
    "user_audit.id",
    _TIMESTAMP,
    "user_audit.user_id",
    "user_audit.operation",
    "user_audit.version",
    _text_cell("user_audit.actor_label"),
    _text_cell("user_audit.channel"),
    _text_cell("user_audit.reason"),
    "changed.field",
    _text_cell("user_audit.previous_data ->> changed.field"),
    _text_cell("user_audit.new_data ->> changed.field"),
)


def long_csv_lines(
    audit_filter: AuditFilter,
    *,
    batch_size: int = CHUNK_ENTRIES,
    on_entries: EntriesWritten | None = None,
) -> Iterator[bytes]:
    """The long form: the header, then one CSV record per changed field of each entry
    (``entry, …, field, before, after``), fields in the entry's order; ``on_entries``
    hears how many records each chunk holds."""
    yield (",".join(LONG_CSV_COLUMNS) + "\r\n").encode()
    rows = _copy_rows(audit_filter, _LONG_CSV_CELLS, "(FORMAT csv)", per_field=True)
    yield from _chunks(rows, batch_size=batch_size, on_entries=on_entries, csv_records=True)


def for_excel(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The same CSV with a byte order mark first, so Excel reads it as UTF-8."""
    yield EXCEL_BOM
    yield from chunks


def _name_part(value: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c in "._") else "-" for c in value)


def _day(value: datetime) -> str:
    return (
        value.strftime("%Y-%m-%d") if value.time() == time() else value.strftime("%Y-%m-%dT%H%MZ")
    )


def export_filename(audit_filter: AuditFilter, extension: str, *, form: str = "") -> str:
    """A file name that says what the export holds, e.g.
    ``audit_user-42_update_2026-11-01_2026-11-30.csv``.

    The days are those of the filter as given: ``until`` is kept exclusive in
    the filter, so a whole-day bound shows the day before it.
    """
    parts = ["audit"]
    if audit_filter.user_id is not None:
        parts.append(f"user-{audit_filter.user_id}")
    parts.extend(audit_filter.operations)
    if audit_filter.fields:
        parts.append("field-" + "-".join(audit_filter.fields))
    if audit_filter.actor_id is not None:
        parts.append(f"actor-{audit_filter.actor_id}")
    elif audit_filter.actor_label is not None:
        parts.append("actor-" + _name_part(audit_filter.actor_label))
    if audit_filter.unattributed:
        parts.append("unattributed")
    if audit_filter.since is not None or audit_filter.until is not None:
        parts.append(_day(audit_filter.since.astimezone(UTC)) if audit_filter.since else "start")
        if audit_filter.until is None:
            parts.append("now")
        else:
            until = audit_filter.until.astimezone(UTC)
            parts.append(_day(until - timedelta(days=1) if until.time() == time() else until))
    if len(parts) == 1:
        parts.append("all")
    if form:
        parts.append(form)
    return "_".join(parts) + "." + extension
