"""Entry seals: each entry the application writes vouches for itself.

``seal = HMAC-SHA-256(key, SHA-256(canonical bytes of the entry))``, computed
by the application and written in the entry's own INSERT, in the change's own
transaction. The canonical bytes cover every column a reader is shown and the
entry's id, so an entry inserted by hand (no key, so no valid seal), an entry
edited afterwards, and a sealed entry copied into a new row (another id) are
all told apart from the entries the application wrote.

The canonical bytes are PostgreSQL's text form of a ``jsonb`` object of the
entry (``canonical_entry_sql``): ``jsonb`` orders keys by length, then
bytewise, and spaces its output one fixed way. Verification builds them in the
database, which spares it decoding and re-encoding JSON in Python; writers
build the same bytes in Python (``canonical_entry``) from the values they
insert, so sealing costs no statement. A property test holds the two to the
same bytes.

Hashing the canonical bytes before the HMAC lets the verifier have the
database compute SHA-256 next to the data and send 32 bytes per entry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

#: The encoding of the canonical bytes that entry seals and today's links use.
#: Links written before seals existed use encoding 1 (``webapp.audit.chain``).
ENCODING = 2
#: The entry's columns covered by its canonical bytes: all but the seal itself.
SEALED_FIELDS: tuple[str, ...] = (
    "id",
    "user_id",
    "operation",
    "timestamp",
    "previous_data",
    "new_data",
    "changed_fields",
    "version",
    "reason",
    "actor_id",
    "actor_label",
    "channel",
    "channel_detail",
    "remote_addr",
    "request_id",
    "unattributed",
)
#: How a timestamp is written in the canonical bytes (``to_char`` pattern and
#: its Python twin): UTC with microseconds, whatever the session's settings.
_TIMESTAMP_SQL = (
    "pg_catalog.to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
)
_TIMESTAMP_PYTHON = "%Y-%m-%dT%H:%M:%S.%fZ"


def canonical_entry_sql(fields: tuple[str, ...], encoding: int, table: str = "user_audit") -> str:
    """SQL for the canonical bytes (UTF-8 ``bytea``) of the ``table`` row in scope.

    The expression names only built-in functions, so nobody can redefine one
    in the database to show an edited row as it was.
    """
    values = {
        "timestamp": _TIMESTAMP_SQL.format(column=f"{table}.timestamp"),
        "changed_fields": f"pg_catalog.to_jsonb({table}.changed_fields)",
    }
    pairs = ", ".join(f"'{name}', {values.get(name, f'{table}.{name}')}" for name in fields)
    return (
        f"pg_catalog.convert_to(pg_catalog.jsonb_build_object({pairs}, "
        f"'encoding', {encoding})::text, 'UTF8')"
    )


#: SQL for the SHA-256 of the canonical bytes of the ``user_audit`` row in scope.
ENTRY_DIGEST_SQL = f"pg_catalog.sha256({canonical_entry_sql(SEALED_FIELDS, ENCODING)})"


def canonical_entry(row: Mapping[str, Any]) -> bytes:
    """The canonical bytes of an entry from the values written for it.

    ``row`` holds the ``SEALED_FIELDS`` as the application inserts them
    (``timestamp`` an aware datetime, snapshots as dicts).
    """
    parts = []
    for name, prefix in _DOCUMENT_KEYS:
        if name == "encoding":
            value: Any = ENCODING
        else:
            value = row.get(name)
            if name == "timestamp" and isinstance(value, datetime):
                value = value.astimezone(UTC).strftime(_TIMESTAMP_PYTHON)
        parts.append(prefix + _jsonb_text(value))
    return ("{" + ", ".join(parts) + "}").encode()


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


# PostgreSQL's escape_json and Python's JSON string encoder (its C version,
# without ASCII escaping) escape exactly the same characters the same way:
# the usual short escapes, other control characters as lowercase \u00xx.
_jsonb_string = json.encoder.encode_basestring  # type: ignore[attr-defined]

#: The canonical document's keys in jsonb's order, each with its written prefix.
_DOCUMENT_KEYS = tuple(
    (name, f"{_jsonb_string(name)}: ")
    for name in sorted((*SEALED_FIELDS, "encoding"), key=_jsonb_key_order)
)


def _jsonb_text(value: Any) -> str:
    """``value`` written exactly as PostgreSQL writes the ``jsonb`` it would become."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _jsonb_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Mapping):
        keys = sorted(value, key=_jsonb_key_order)
        items = ", ".join(f"{_jsonb_string(key)}: {_jsonb_text(value[key])}" for key in keys)
        return "{" + items + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_jsonb_text(item) for item in value) + "]"
    raise TypeError(f"cannot seal a value of type {type(value).__name__}")
