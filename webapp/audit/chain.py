"""The keyed hash chain that makes any change to the audit trail evident.

Every entry gets a link: a gap-free sequence number ``seq`` and
``hash = HMAC-SHA-256(key, previous hash || seq || canonical bytes of the
entry)``. The canonical bytes cover every column of the entry, so editing,
deleting, inserting or reordering entries breaks the chain at the first entry
touched; the key comes from configuration and is never stored in the
database, so someone with only database access cannot re-hash the chain to
hide an edit.

The canonical bytes are PostgreSQL's text form of a ``jsonb`` object built
from the row (``CANONICAL_ENTRY``): ``jsonb`` orders keys and spaces its
output one fixed way, and building it in the database spares the writer and
the verifier decoding and re-encoding JSON in Python, which dominated both.
The expression is sent by the application and names only built-in functions,
so it cannot be redefined in the database to show an edited row as it was.

Appending locks the single row of ``audit_chain_head`` (``SELECT ... FOR
UPDATE``): under READ COMMITTED a writer that waited for the lock re-reads the
row its predecessor committed, so writers queue instead of forking, and only
for the last statements of their transaction. The primary key on ``seq``
turns a fork into an error should anything get past the lock.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, insert, literal_column, select, table, text
from sqlalchemy.sql.elements import ColumnElement

from webapp.models import UserAudit

#: The hash the first link chains to.
GENESIS_HASH = bytes(32)
#: Part of the canonical bytes; bumped if their definition ever changes.
ENCODING_VERSION = 1
#: Columns added after entries were first chained. They join the canonical
#: bytes only when set, so the bytes (and hashes) of older entries, where they
#: are null, stay what they were; setting or clearing one still changes them.
OPTIONAL_CHAINED_FIELDS: tuple[str, ...] = ("token_id", "client_request_id")
#: The entry's columns covered by its hash (all of them).
CHAINED_FIELDS: tuple[str, ...] = (
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
    *OPTIONAL_CHAINED_FIELDS,
)
#: Safety-net entries sealed per append, so a backlog never stalls one save.
SEAL_BATCH = 100

_VALUE_OF = {
    # Independent of the session's time zone and DateStyle.
    "timestamp": "pg_catalog.to_char(user_audit.timestamp AT TIME ZONE 'UTC', "
    '\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\')',
    "changed_fields": "pg_catalog.to_jsonb(user_audit.changed_fields)",
}


def _pairs(names: Iterable[str]) -> str:
    return ", ".join(f"'{name}', {_VALUE_OF.get(name, f'user_audit.{name}')}" for name in names)


#: SQL for the canonical bytes of the ``user_audit`` row in scope (UTF-8 ``bytea``).
CANONICAL_ENTRY_SQL = (
    "pg_catalog.convert_to((pg_catalog.jsonb_build_object("
    + _pairs(name for name in CHAINED_FIELDS if name not in OPTIONAL_CHAINED_FIELDS)
    + f", 'encoding', {ENCODING_VERSION}) OPERATOR(pg_catalog.||) "
    + "pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object("
    + _pairs(OPTIONAL_CHAINED_FIELDS)
    + ")))::text, 'UTF8')"
)


def canonical_entry() -> ColumnElement[bytes]:
    """The canonical bytes of the ``user_audit`` row in scope, as a column."""
    return literal_column(CANONICAL_ENTRY_SQL).label("canonical")


_LOCK_HEAD = text(
    "SELECT seq, hash, EXISTS (SELECT 1 FROM audit_chain_pending) AS has_pending, "
    # The flush's writes are done: from here on the safety net watches again.
    "set_config('profile_audit.capturing', 'off', true) "
    "FROM audit_chain_head WHERE id = 1 FOR UPDATE"
)
_CLAIM_PENDING = text(
    "WITH claimed AS (DELETE FROM audit_chain_pending WHERE entry_id IN "  # noqa: S608 (constants only)
    "(SELECT entry_id FROM audit_chain_pending ORDER BY entry_id LIMIT :limit) "
    "RETURNING entry_id) "
    f"SELECT user_audit.id, {CANONICAL_ENTRY_SQL} AS canonical "
    "FROM claimed JOIN user_audit ON user_audit.id = claimed.entry_id ORDER BY user_audit.id"
)
_APPEND = text(
    "WITH links AS (INSERT INTO audit_chain (seq, entry_id, hash) "
    "SELECT * FROM unnest(CAST(:seqs AS bigint[]), CAST(:entry_ids AS bigint[]), "
    "CAST(:hashes AS bytea[]))) "
    "UPDATE audit_chain_head SET seq = :seq, hash = :hash WHERE id = 1"
)


def _by_id(row: Any) -> int:
    return row.id


def _insert_entries() -> Any:
    entries = UserAudit.__table__
    head = (
        select(
            literal_column("seq").label("seq"),
            literal_column("hash").label("hash"),
            literal_column("EXISTS (SELECT 1 FROM audit_chain_pending)").label("has_pending"),
            # The flush's writes to users are done: the safety net watches again.
            func.set_config("profile_audit.capturing", "off", True).label("capturing"),
        )
        .select_from(table("audit_chain_head"))
        .where(literal_column("id") == 1)
        .with_for_update()
        .cte("chain_head")
    )
    return (
        insert(entries)
        .add_cte(head)
        .returning(
            entries.c.id,
            canonical_entry(),
            select(head.c.seq).scalar_subquery().label("head_seq"),
            select(head.c.hash).scalar_subquery().label("head_hash"),
            select(head.c.has_pending).scalar_subquery().label("has_pending"),
        )
    )


_INSERT_ENTRIES = _insert_entries()


@dataclass(frozen=True)
class ChainHead:
    """The newest link: what a checkpoint records."""

    seq: int
    hash: bytes


def link_hash(key: bytes, previous_hash: bytes, seq: int, canonical: bytes) -> bytes:
    """HMAC-SHA-256 of the previous link's hash, the link's number and the entry."""
    return hmac.new(
        key, previous_hash + seq.to_bytes(8, "big") + canonical, hashlib.sha256
    ).digest()


def write_entries(
    connection: Connection, key: bytes, rows: Sequence[Mapping[str, Any]]
) -> ChainHead:
    """Insert audit entries (``user_audit`` column values) and link them.

    Two statements: the INSERT, which also locks the head (a CTE ``FOR UPDATE``
    whose values RETURNING reports, fresh even after waiting for the lock) and
    lowers the safety net's "capturing" flag again; then the links and the new
    head. Up to ``SEAL_BATCH`` entries the safety net queued are sealed first.
    The head stays locked until the transaction ends.
    """
    # One compiled statement, cached; SQLAlchemy sends the rows as multi-row
    # INSERTs ("insertmanyvalues"), each with the head CTE.
    written = connection.execute(_INSERT_ENTRIES, list(rows)).all()
    first = written[0]
    to_chain = _claim_pending(connection) if first.has_pending else []
    # Entries of one flush are chained in the order the database numbered them.
    to_chain.extend((row.id, bytes(row.canonical)) for row in sorted(written, key=_by_id))
    return _write_links(
        connection, key, ChainHead(first.head_seq, bytes(first.head_hash)), to_chain
    )


def seal_pending(connection: Connection, key: bytes) -> int:
    """Seal up to ``SEAL_BATCH`` queued safety-net entries; return how many."""
    head = connection.execute(_LOCK_HEAD).one()
    if not head.has_pending:
        return 0
    claimed = _claim_pending(connection)
    if claimed:
        _write_links(connection, key, ChainHead(head.seq, bytes(head.hash)), claimed)
    return len(claimed)


def read_head(connection: Connection) -> ChainHead:
    """The newest link as the head row records it (no lock)."""
    row = connection.execute(text("SELECT seq, hash FROM audit_chain_head WHERE id = 1")).one()
    return ChainHead(row.seq, bytes(row.hash))


def _claim_pending(connection: Connection) -> list[tuple[int, bytes]]:
    # Only ever called with the head locked, so no other sealer claims them too.
    rows = connection.execute(_CLAIM_PENDING, {"limit": SEAL_BATCH})
    return [(row.id, bytes(row.canonical)) for row in rows]


def _write_links(
    connection: Connection, key: bytes, head: ChainHead, entries: Iterable[tuple[int, bytes]]
) -> ChainHead:
    seqs: list[int] = []
    entry_ids: list[int] = []
    hashes: list[bytes] = []
    seq, previous = head.seq, head.hash
    for entry_id, canonical in entries:
        seq += 1
        previous = link_hash(key, previous, seq, canonical)
        seqs.append(seq)
        entry_ids.append(entry_id)
        hashes.append(previous)
    connection.execute(
        _APPEND,
        {"seqs": seqs, "entry_ids": entry_ids, "hashes": hashes, "seq": seq, "hash": previous},
    )
    return ChainHead(seq, previous)
