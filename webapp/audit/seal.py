"""Entry seals: each entry the application writes vouches for itself.

``seal = HMAC-SHA-256(key, SHA-256(canonical bytes of the entry))``, computed
by the application and written in the entry's own INSERT, in the change's own
transaction. The canonical bytes cover every column a reader is shown and the
entry's id, so an entry inserted by hand (no key, so no valid seal), an entry
edited afterwards, and a sealed entry copied into a new row (another id) are
all told apart from the entries the application wrote.

The canonical bytes are the entry's columns, in a fixed order, each written
as a JSON value (strings escaped as PostgreSQL's ``to_json`` escapes them,
snapshots as ``jsonb``'s text form, times as ISO 8601 UTC with microseconds),
joined by the unit separator U+001F, which no JSON value contains unescaped,
after the encoding number. Verification builds them in the database
(``CANONICAL_ENTRY_SQL``, cheap functions only, so that walking millions of
entries is bounded by reading them); writers build the same bytes in Python
(``canonical_entry``) from the values they insert, so sealing costs no
statement. A property test holds the two to the same bytes.

Hashing the canonical bytes before the HMAC lets the verifier have the
database compute SHA-256 next to the data and send 32 bytes per entry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC
from typing import Any

#: The encoding of the canonical bytes that entry seals and today's links use.
#: Links written before seals existed used encoding 1 (``webapp.audit.chain``).
ENCODING = 2
#: The entry's columns covered by its canonical bytes (all but the seal
#: itself), in their order there, with the kind of value each holds.
SEALED_COLUMNS: dict[str, str] = {
    "id": "integer",
    "user_id": "integer",
    "operation": "text",
    "timestamp": "timestamp",
    "previous_data": "jsonb",
    "new_data": "jsonb",
    "changed_fields": "text[]",
    "version": "integer",
    "reason": "text",
    "actor_id": "integer",
    "actor_label": "text",
    "channel": "text",
    "channel_detail": "text",
    "remote_addr": "text",
    "request_id": "text",
    "unattributed": "boolean",
    "token_id": "integer",
    "client_request_id": "text",
}
SEALED_FIELDS: tuple[str, ...] = tuple(SEALED_COLUMNS)
_SEPARATOR = "\x1f"
#: How a timestamp is written in the canonical bytes (``to_char`` pattern and
#: its Python twin): UTC with microseconds, whatever the session's settings.
_TIMESTAMP_SQL = (
    "pg_catalog.to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
)
_TIMESTAMP_PYTHON = "%Y-%m-%dT%H:%M:%S.%fZ"
# Each kind of column as a JSON value in SQL ('null' for NULL).
_VALUE_SQL = {
    "integer": "{column}::text",
    "text": "pg_catalog.to_json({column})::text",
    "timestamp": "pg_catalog.to_json(" + _TIMESTAMP_SQL + ")::text",
    "jsonb": "{column}::text",
    "text[]": "pg_catalog.array_to_json({column})::text",
    "boolean": "{column}::text",
}


def _canonical_sql(table: str) -> str:
    values = ", ".join(
        f"COALESCE({_VALUE_SQL[kind].format(column=f'{table}.{name}')}, 'null')"
        for name, kind in SEALED_COLUMNS.items()
    )
    return (
        f"pg_catalog.convert_to(pg_catalog.concat_ws(pg_catalog.chr(31), '{ENCODING}', "
        f"{values}), 'UTF8')"
    )


#: SQL for the canonical bytes (UTF-8 ``bytea``) of the ``user_audit`` row in
#: scope. It names only built-in functions, schema-qualified, so nobody can
#: redefine one in the database to show an edited row as it was.
CANONICAL_ENTRY_SQL = _canonical_sql("user_audit")
#: SQL for the SHA-256 of the canonical bytes of the ``user_audit`` row in scope.
ENTRY_DIGEST_SQL = f"pg_catalog.sha256({CANONICAL_ENTRY_SQL})"


def canonical_entry(row: Mapping[str, Any]) -> bytes:
    """The canonical bytes of an entry from the values written for it.

    ``row`` holds the ``SEALED_FIELDS`` as the application inserts them
    (``timestamp`` an aware datetime, snapshots as dicts).
    """
    parts = [str(ENCODING)]
    for name, kind in _KINDS:
        value = row.get(name)
        if value is None:
            parts.append("null")
        elif kind == "timestamp":
            parts.append('"' + value.astimezone(UTC).strftime(_TIMESTAMP_PYTHON) + '"')
        elif kind == "text[]":
            parts.append("[" + ",".join(_json_string(item) for item in value) + "]")
        else:
            parts.append(_jsonb_text(value))
    return _SEPARATOR.join(parts).encode()


_KINDS = tuple(SEALED_COLUMNS.items())


def seal_of(key: bytes, canonical: bytes) -> bytes:
    """The seal of an entry with these canonical bytes."""
    return digest_seal(key, hashlib.sha256(canonical).digest())


def digest_seal(key: bytes, canonical_sha256: bytes) -> bytes:
    """The seal from the SHA-256 of the canonical bytes (as the database sends it)."""
    return hmac.digest(key, canonical_sha256, "sha256")


def _jsonb_key_order(key: str) -> tuple[int, bytes]:
    # jsonb orders an object's keys by length first, then by their bytes.
    encoded = key.encode()
    return len(encoded), encoded


# PostgreSQL's escape_json (used by to_json and jsonb's output) and Python's
# JSON string encoder (its C version, without ASCII escaping) escape exactly
# the same characters the same way: the usual short escapes, other control
# characters as lowercase \u00xx, everything else as it is.
_json_string = json.encoder.encode_basestring  # type: ignore[attr-defined]


def _jsonb_text(value: Any) -> str:
    """``value`` written exactly as PostgreSQL writes the ``jsonb`` it would become."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Mapping):
        keys = sorted(value, key=_jsonb_key_order)
        items = ", ".join(f"{_json_string(key)}: {_jsonb_text(value[key])}" for key in keys)
        return "{" + items + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_jsonb_text(item) for item in value) + "]"
    raise TypeError(f"cannot seal a value of type {type(value).__name__}")
