"""Audit log exports: every entry of a filter as CSV or NDJSON, at the database's speed.

PostgreSQL writes most of the export: one ``COPY (SELECT …) TO STDOUT`` per
export, with the cells formatted and neutralised in SQL by the same rules as
``webapp.services.spreadsheet_cells`` (``neutralise``, ``json_cell``) and the
API's JSON shape of an entry (``audit_entry_json``). The database holds no
key, so the snapshot cells (and the long form's before and after) leave it
as *tokens* at the end of each row, in characters that neither CSV nor COPY's
text format ever quote or escape; Python decrypts their personal values and
splices the finished cells in (``_SnapshotCells``). The rows are gathered
into large chunks, so an export of millions of entries holds one chunk at a
time; each profile's data key is read and unwrapped at most once per export
(``webapp.services.entry_decryption``).

A token is one of:

- ``e`` + the hex of each non-personal field's ``jsonb`` text, then each
  personal field's ciphertext (base64), joined by ``.``: a snapshot of the usual
  fields whose personal values are all encrypted (nearly every entry);
- ``p`` + the hex of the cell as SQL formats it: a snapshot holding no
  encrypted value (entries written before encryption, shown as they are);
- ``r`` + the hex of the snapshot's ``jsonb`` text: any other snapshot holding
  an encrypted value, revealed and formatted in Python;
- nothing (CSV) or ``n`` (NDJSON): no snapshot (a create's previous data).
"""

from __future__ import annotations

import binascii
import csv
import json
import operator
from binascii import a2b_base64, a2b_hex
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from datetime import UTC, datetime, time, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import func, literal_column, true
from sqlalchemy.dialects import postgresql

from webapp.audit.personal_data import key_provider, reveal_snapshot
from webapp.audit.snapshot import SNAPSHOT_FIELDS
from webapp.extensions import db
from webapp.models import PERSONAL_FIELDS, ApiToken, UserAudit
from webapp.services.audit_filter import AuditFilter
from webapp.services.audit_log import (
    filtered_statement,
)
from webapp.services.entry_decryption import (
    ERASED_JSON,
    UNREADABLE_JSON,
    ProfileKeys,
    associated_data_prefix,
    shown_json,
    side_field,
)
from webapp.services.spreadsheet_cells import neutralise

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

# --- snapshot tokens (module docstring) ---------------------------------------------

#: The snapshot's fields that are not personal, in snapshot order (tokens hold them first).
_OTHER_FIELDS = tuple(name for name in SNAPSHOT_FIELDS if name not in PERSONAL_FIELDS)
# Base64 only: a ciphertext with another character (altered in the table) is
# left out of the long form's token, and so shown as unreadable.
_BASE64_ONLY = "'[^A-Za-z0-9+/=]'"


def _hex(expression: str) -> str:
    return f"encode(convert_to({expression}, 'UTF8'), 'hex')"


def _ciphertext(expression: str, name: str) -> str:
    return f"({expression} -> '{name}' ->> 'ciphertext')"


def snapshot_token_sql(expression: str, formatted: str) -> str:
    """SQL: the token of the snapshot ``expression`` (a ``jsonb`` column);
    ``formatted`` is the SQL of its finished cell when it holds no encrypted value."""
    ciphertexts = [_ciphertext(expression, name) for name in PERSONAL_FIELDS]
    usual = " AND ".join(
        [
            _is_snapshot(expression),
            *(f"{ciphertext} IS NOT NULL" for ciphertext in ciphertexts),
            *(f"jsonb_typeof({expression} -> '{name}') <> 'object'" for name in _OTHER_FIELDS),
        ]
    )
    # A null (nearly every deleted_at) is left empty, which saves its hex.
    parts = [
        f"CASE WHEN {expression} -> '{name}' = 'null'::jsonb THEN '' "
        f"ELSE {_hex(f'({expression} -> {chr(39)}{name}{chr(39)})::text')} END"
        for name in _OTHER_FIELDS
    ]
    encrypted = "'e' || " + " || '.' || ".join([*parts, *ciphertexts])
    # Fixed SQL around a column expression of this module; no input reaches it.
    holds_ciphertext = (
        f"EXISTS (SELECT FROM jsonb_each({expression}) AS member "
        "WHERE jsonb_typeof(member.value) = 'object' AND member.value ? 'ciphertext')"
    )
    plain = f"'p' || {_hex(formatted)}"
    # CASE tries its branches in order: jsonb_each runs on objects only.
    return (
        f"CASE WHEN {expression} IS NULL THEN NULL WHEN {usual} THEN {encrypted} "
        f"WHEN jsonb_typeof({expression}) <> 'object' THEN {plain} "
        f"WHEN {holds_ciphertext} THEN 'r' || {_hex(f'{expression}::text')} "
        f"ELSE {plain} END"
    )


def value_token_sql(expression: str, field: str, cell: str) -> str:
    """SQL: the long form's token of one value (``expression``: ``jsonb``) of field
    ``field``: ``e`` + the field + ``.`` + its ciphertext when a personal field's
    value is encrypted, else ``p`` + the hex of the finished text ``cell``."""
    ciphertext = f"({expression} ->> 'ciphertext')"
    personal = ", ".join(f"'{name}'" for name in PERSONAL_FIELDS)
    return (
        f"CASE WHEN {field} IN ({personal}) AND jsonb_typeof({expression}) = 'object' "
        f"AND {ciphertext} IS NOT NULL THEN 'e' || {field} || '.' || "
        f"CASE WHEN {ciphertext} !~ {_BASE64_ONLY} THEN {ciphertext} ELSE '' END "
        f"WHEN {cell} IS NULL THEN NULL ELSE 'p' || {_hex(cell)} END"
    )


# One CSV record per entry, in CSV_COLUMNS order, the snapshots as tokens.
# Timestamps, operations, field names and JSON cells hold nothing neutralise()
# changes, so it is not run on them.
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
    snapshot_token_sql("user_audit.previous_data", json_cell_sql("user_audit.previous_data")),
    snapshot_token_sql("user_audit.new_data", json_cell_sql("user_audit.new_data")),
)

# The API's shape of an entry (webapp.services.audit_records.audit_entry_json),
# compact, keys in its order; COPY's text format doubles each backslash, which
# the reader undoes (a JSON text has no other character COPY escapes). Its
# columns: id, user_id, the line up to the previous data, the two tokens, the rest.
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
_NDJSON_HEAD = " || ".join(
    [
        "'{\"id\":' || user_audit.id",
        "',\"user_id\":' || " + _number("user_audit.user_id"),
        "',\"operation\":' || " + _json("user_audit.operation"),
        "',\"timestamp\":' || " + _json(_TIMESTAMP),
        "',\"version\":' || " + _number("user_audit.version"),
        "',\"changed_fields\":' || " + _json("user_audit.changed_fields"),
        "',\"previous_data\":'",
    ]
)
_NDJSON_TAIL = " || ".join(
    [
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
_NDJSON_CELLS: tuple[str, ...] = (
    "user_audit.id",
    "user_audit.user_id",
    _NDJSON_HEAD,
    "coalesce("
    + snapshot_token_sql("user_audit.previous_data", compact_json_sql("user_audit.previous_data"))
    + ", 'n')",
    "coalesce("
    + snapshot_token_sql("user_audit.new_data", compact_json_sql("user_audit.new_data"))
    + ", 'n')",
    _NDJSON_TAIL,
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


# --- splicing the decrypted cells in --------------------------------------------------

_CSV_QUOTED = (b",", b'"', b"\r", b"\n")
_NONCE_BYTES = 12


def _csv_cell(value: bytes) -> bytes:
    """``value`` as COPY's CSV writes a cell: quoted when it holds a delimiter,
    a quote or a line end (csv.writer's minimal quoting agrees)."""
    if any(special in value for special in _CSV_QUOTED):
        return b'"' + value.replace(b'"', b'""') + b'"'
    return value


def _json_cell(json_text: bytes) -> bytes:
    """A snapshot object's JSON text as its CSV cell: ``;`` spelt ``\\u003b``
    (``json_cell``), then quoted as COPY quotes it (an object always holds quotes)."""
    return b'"' + json_text.replace(b";", b"\\u003b").replace(b'"', b'""') + b'"'


def _template(order: Sequence[str], colon: str, comma: str) -> tuple[bytes, Any]:
    """A snapshot's JSON text with ``%s`` for each value, fields in ``order``, and
    the getter that puts a token's values (non-personal fields, then personal
    ones) in that order."""
    text = "{" + comma.join(f'"{name}"{colon}%s' for name in order) + "}"
    token_order = [*_OTHER_FIELDS, *PERSONAL_FIELDS]
    return text.encode(), operator.itemgetter(*(token_order.index(name) for name in order))


class _SnapshotCells:
    """Turns one export's snapshot tokens into JSON texts, personal values decrypted."""

    def __init__(self, keys: ProfileKeys, *, csv: bool) -> None:
        self.keys = keys
        if csv:
            self._text, self._order = _template(sorted(SNAPSHOT_FIELDS), ": ", ", ")
        else:
            self._text, self._order = _template(_JSONB_ORDER, ":", ",")
        # A revealed snapshot as json_cell (";" is spelt out with the rest) or compact.
        self._dumps = (
            (lambda shown: json.dumps(shown, ensure_ascii=False, sort_keys=True))
            if csv
            else (lambda shown: json.dumps(shown, ensure_ascii=False, separators=(",", ":")))
        )
        self._others = len(_OTHER_FIELDS)
        self._parts = len(_OTHER_FIELDS) + len(PERSONAL_FIELDS)
        self._ends = {
            side: [side_field(side, name) for name in PERSONAL_FIELDS]
            for side in ("previous", "new")
        }

    @staticmethod
    def needs_key(token: bytes) -> bool:
        """Whether the token holds an encrypted value (its profile's key is needed)."""
        return token[:1] in (b"e", b"r")

    def json_text(
        self,
        token: bytes,
        side: str,
        entry_id: int,
        user_id: int,
        cipher: AESGCM | None,
        prefix: bytes,
    ) -> bytes | None:
        """The snapshot's JSON text as readers see it (None: no snapshot); ``p``
        tokens are the finished cell, as SQL formatted it. ``cipher`` is the
        profile's (None: erased or keyless), ``prefix`` the entry's associated data."""
        kind = token[:1]
        if kind == b"e":
            parts = token[1:].split(b".")
            others = self._others
            values = [a2b_hex(part) if part else b"null" for part in parts[:others]]
            if cipher is None or len(parts) != self._parts:
                # Erased or keyless; or a ciphertext altered to hold a "." (the
                # non-personal values come first and are hex: they stay readable).
                erased = cipher is None and self.keys.erased(user_id)
                values += [ERASED_JSON if erased else UNREADABLE_JSON] * len(PERSONAL_FIELDS)
            else:
                decrypt = cipher.decrypt
                for stored, end in zip(parts[others:], self._ends[side], strict=True):
                    try:
                        raw = a2b_base64(stored, strict_mode=True)
                        values.append(decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], prefix + end))
                    except (InvalidTag, binascii.Error, ValueError):
                        values.append(UNREADABLE_JSON)
            return self._text % self._order(values)
        if kind == b"p":
            return a2b_hex(token[1:])
        if kind == b"r":
            stored = json.loads(a2b_hex(token[1:]))
            return self._revealed(stored, side, entry_id, user_id, cipher)
        return None

    def _revealed(
        self, stored: Any, side: str, entry_id: int, user_id: int, cipher: AESGCM | None
    ) -> bytes:
        """Any other snapshot holding an encrypted value, revealed as the ORM reveals it."""
        erased = self.keys.erased(user_id)
        shown = reveal_snapshot(cipher, entry_id, user_id, side, stored, erased=erased)
        return self._dumps(shown).encode()


def _csv_records(rows: list[bytes], cells: _SnapshotCells) -> bytes:
    """Wide CSV rows (15 cells, then the two tokens) as finished records."""
    split = []
    wanted = set()
    needs_key = cells.needs_key
    for row in rows:
        head, previous, new = row[:-1].rsplit(b",", 2)
        if b'"' in previous or b'"' in new:
            head, previous, new = _quoted_tokens(row)
        if needs_key(previous) or needs_key(new):
            entry_id, _, user_id, _ = head.split(b",", 3)
            ids = (int(entry_id), int(user_id))
            wanted.add(ids[1])
        else:
            ids = None
        split.append((head, previous, new, ids))
    keys = cells.keys
    keys.load(wanted)
    json_text = cells.json_text
    records = []
    for head, previous, new, ids in split:
        if ids is None:  # no key needed: plain snapshots and none
            entry_id = user_id = 0
            cipher, prefix = None, b""
        else:
            entry_id, user_id = ids
            cipher, prefix = keys.cipher(user_id), associated_data_prefix(entry_id, user_id)
        shown_previous = json_text(previous, "previous", entry_id, user_id, cipher, prefix)
        shown_new = json_text(new, "new", entry_id, user_id, cipher, prefix)
        records.append(
            b"%s,%s,%s\r\n"
            % (
                head,
                b"" if shown_previous is None else _csv_snapshot(previous, shown_previous),
                b"" if shown_new is None else _csv_snapshot(new, shown_new),
            )
        )
    return b"".join(records)


def _csv_snapshot(token: bytes, json_text: bytes) -> bytes:
    # A "p" token is the cell's text as json_cell_sql wrote it (";" already spelt out).
    return _csv_cell(json_text) if token[:1] == b"p" else _json_cell(json_text)


def _quoted_tokens(row: bytes) -> tuple[bytes, bytes, bytes]:
    """A row whose tokens COPY quoted (an altered ciphertext holding a comma,
    quote or line end): its head as COPY wrote it, and its two tokens."""
    cells = next(csv.reader([row[:-1].decode()]))
    head = b",".join(_csv_cell(cell.encode()) for cell in cells[:-2])
    return head, cells[-2].encode(), cells[-1].encode()


def _ndjson_lines(rows: list[bytes], cells: _SnapshotCells) -> bytes:
    """NDJSON rows (id, user id, head, two tokens, tail) as finished lines."""
    split = []
    wanted = set()
    needs_key = cells.needs_key
    for row in rows:
        # COPY's text format: tabs only between columns (JSON and tokens hold none
        # raw), backslashes doubled (only the JSON parts hold any).
        entry_id, user_id, head, previous, new, tail = row[:-1].replace(b"\\\\", b"\\").split(b"\t")
        ids = (int(entry_id), int(user_id))
        if needs_key(previous) or needs_key(new):
            wanted.add(ids[1])
        split.append((head, previous, new, tail, ids))
    keys = cells.keys
    keys.load(wanted)
    json_text = cells.json_text
    lines = []
    for head, previous, new, tail, (entry_id, user_id) in split:
        cipher, prefix = keys.cipher(user_id), associated_data_prefix(entry_id, user_id)
        shown_previous = json_text(previous, "previous", entry_id, user_id, cipher, prefix)
        shown_new = json_text(new, "new", entry_id, user_id, cipher, prefix)
        lines.append(
            b'%s%s,"new_data":%s%s\n'
            % (
                head,
                b"null" if shown_previous is None else shown_previous,
                b"null" if shown_new is None else shown_new,
                tail,
            )
        )
    return b"".join(lines)


def _chunks(
    rows: Generator[memoryview, None, None],
    finish: Callable[[list[bytes]], bytes],
    *,
    batch_size: int,
    on_entries: EntriesWritten | None,
) -> Iterator[bytes]:
    """The rows, ``batch_size`` at a time, finished by ``finish`` into one ``bytes`` each."""
    with closing(rows):  # ends the COPY when the reader stops early
        batch: list[bytes] = []
        for row in rows:
            batch.append(bytes(row))
            if len(batch) == batch_size:
                yield finish(batch)
                if on_entries is not None:
                    on_entries(len(batch))
                batch = []
        if batch:
            yield finish(batch)
            if on_entries is not None:
                on_entries(len(batch))


def _profile_keys() -> ProfileKeys:
    return ProfileKeys(db.engine, key_provider())


def csv_lines(
    audit_filter: AuditFilter,
    *,
    batch_size: int = CHUNK_ENTRIES,
    on_entries: EntriesWritten | None = None,
) -> Iterator[bytes]:
    """The header, then every entry as a CSV record (RFC 4180 line ends), in
    UTF-8 chunks of ``batch_size`` entries; ``on_entries`` hears each chunk's count."""
    yield (",".join(CSV_COLUMNS) + "\r\n").encode()
    keys = _profile_keys()
    cells = _SnapshotCells(keys, csv=True)
    rows = _copy_rows(audit_filter, _CSV_CELLS, "(FORMAT csv)")
    yield from _chunks(
        rows,
        lambda batch: _csv_records(batch, cells),
        batch_size=batch_size,
        on_entries=on_entries,
    )


def ndjson_lines(
    audit_filter: AuditFilter,
    *,
    batch_size: int = CHUNK_ENTRIES,
    on_entries: EntriesWritten | None = None,
) -> Iterator[bytes]:
    """One JSON object per line in the API's shape of an entry, in UTF-8 chunks of
    ``batch_size`` entries; ``on_entries`` hears each chunk's count."""
    keys = _profile_keys()
    cells = _SnapshotCells(keys, csv=False)
    rows = _copy_rows(audit_filter, _NDJSON_CELLS, "")
    yield from _chunks(
        rows,
        lambda batch: _ndjson_lines(batch, cells),
        batch_size=batch_size,
        on_entries=on_entries,
    )


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
# one record with the field empty), the values as text, neutralised as above;
# before and after as tokens.
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
    value_token_sql(
        "(user_audit.previous_data -> changed.field)",
        "changed.field",
        _text_cell("user_audit.previous_data ->> changed.field"),
    ),
    value_token_sql(
        "(user_audit.new_data -> changed.field)",
        "changed.field",
        _text_cell("user_audit.new_data ->> changed.field"),
    ),
)


def _long_value(token: bytes, side: str, entry_id: int, user_id: int, keys: ProfileKeys) -> bytes:
    """The long form's finished before/after cell of a token."""
    if token[:1] == b"p":
        return _csv_cell(bytes.fromhex(token[1:].decode()))
    if token[:1] != b"e":
        return b""
    field, _, stored = token[1:].partition(b".")
    associated_data = associated_data_prefix(entry_id, user_id) + side_field(side, field.decode())
    value = json.loads(shown_json(keys, user_id, stored, associated_data))
    # As ``->>`` gives it: a string as itself, null as nothing, others as JSON.
    if value is None:
        return b""
    shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return _csv_cell(neutralise(shown).encode())


def _long_records(rows: list[bytes], keys: ProfileKeys) -> bytes:
    split = []
    wanted = set()
    for row in rows:
        head, before, after = row[:-1].rsplit(b",", 2)
        entry_id, _, user_id, _ = head.split(b",", 3)
        ids = (int(entry_id), int(user_id or 0))
        if before[:1] == b"e" or after[:1] == b"e":
            wanted.add(ids[1])
        split.append((head, before, after, ids))
    keys.load(wanted)
    return b"".join(
        [
            b"%s,%s,%s\r\n"
            % (
                head,
                _long_value(before, "previous", *ids, keys),
                _long_value(after, "new", *ids, keys),
            )
            for head, before, after, ids in split
        ]
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
    keys = _profile_keys()
    rows = _copy_rows(audit_filter, _LONG_CSV_CELLS, "(FORMAT csv)", per_field=True)
    yield from _chunks(
        rows,
        lambda batch: _long_records(batch, keys),
        batch_size=batch_size,
        on_entries=on_entries,
    )


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
