"""The keyed hash chain that makes any change to the audit trail evident.

Every entry gets a link: a gap-free sequence number ``seq`` and
``hash = HMAC-SHA-256(key, previous hash || canonical bytes of the entry)``.
The canonical bytes (``canonical_bytes``) include ``seq`` and every column of
the entry, so editing, deleting, inserting or reordering entries breaks the
chain at the first entry touched; the key comes from configuration and is
never stored in the database, so someone with only database access cannot
re-hash the chain to hide an edit.

Appending locks the single row of ``audit_chain_head`` (``SELECT ... FOR
UPDATE``): under READ COMMITTED a writer that waited for the lock re-reads the
row its predecessor committed, so writers queue instead of forking, and only
for the last statements of their transaction. The primary key on ``seq``
turns a fork into an error should anything get past the lock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, text

from webapp.models import UserAudit
from webapp.timestamps import iso_utc

#: The hash the first link chains to.
GENESIS_HASH = bytes(32)
#: Bumped if the canonical encoding ever changes, so old links stay checkable.
ENCODING_VERSION = 1
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
)
#: Safety-net entries sealed per append, so a backlog never stalls one save.
SEAL_BATCH = 100

# One encoder, built once: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)

_LOCK_HEAD = text(
    "SELECT seq, hash, EXISTS (SELECT 1 FROM audit_chain_pending) AS has_pending, "
    # The flush's writes are done: from here on the safety net watches again.
    "set_config('profile_audit.capturing', 'off', true) "
    "FROM audit_chain_head WHERE id = 1 FOR UPDATE"
)
_CLAIM_PENDING = text(
    "DELETE FROM audit_chain_pending WHERE entry_id IN "
    "(SELECT entry_id FROM audit_chain_pending ORDER BY entry_id LIMIT :limit) "
    "RETURNING entry_id"
)
_APPEND = text(
    "WITH links AS (INSERT INTO audit_chain (seq, entry_id, hash) "
    "SELECT * FROM unnest(CAST(:seqs AS bigint[]), CAST(:entry_ids AS bigint[]), "
    "CAST(:hashes AS bytea[]))) "
    "UPDATE audit_chain_head SET seq = :seq, hash = :hash WHERE id = 1"
)


@dataclass(frozen=True)
class ChainHead:
    """The newest link: what a checkpoint records."""

    seq: int
    hash: bytes


def canonical_bytes(seq: int, entry: Mapping[str, Any]) -> bytes:
    """The bytes hashed for ``entry`` as link ``seq``.

    Compact JSON with sorted keys, UTF-8, timestamps as ISO 8601 UTC with
    microseconds: the same bytes whether the entry comes from the flush that
    wrote it or from the database years later.
    """
    document = {name: entry[name] for name in CHAINED_FIELDS}
    timestamp = document["timestamp"]
    if isinstance(timestamp, datetime):
        document["timestamp"] = iso_utc(timestamp)
    document["seq"] = seq
    document["encoding"] = ENCODING_VERSION
    return _ENCODER.encode(document).encode()


def link_hash(key: bytes, previous_hash: bytes, seq: int, entry: Mapping[str, Any]) -> bytes:
    """HMAC-SHA-256 of the previous link's hash and the entry's canonical bytes."""
    return hmac.new(key, previous_hash + canonical_bytes(seq, entry), hashlib.sha256).digest()


def entries_statement() -> Any:
    """SELECT of the chained columns of ``user_audit``, in ``CHAINED_FIELDS`` order."""
    return select(*(UserAudit.__table__.c[name] for name in CHAINED_FIELDS))


def append(connection: Connection, key: bytes, entries: Sequence[Mapping[str, Any]]) -> ChainHead:
    """Chain ``entries`` (inserted in this transaction, oldest first).

    Also seals up to ``SEAL_BATCH`` entries the safety net queued, ahead of
    ``entries``. The head stays locked until the transaction ends.
    """
    head = connection.execute(_LOCK_HEAD).one()
    to_chain: list[Mapping[str, Any]] = []
    if head.has_pending:
        claimed = connection.execute(_CLAIM_PENDING, {"limit": SEAL_BATCH}).scalars().all()
        if claimed:
            to_chain.extend(_stored_entries(connection, claimed))
    to_chain.extend(entries)
    if not to_chain:
        return ChainHead(head.seq, bytes(head.hash))
    return _write_links(connection, key, ChainHead(head.seq, bytes(head.hash)), to_chain)


def seal_pending(connection: Connection, key: bytes) -> int:
    """Seal up to ``SEAL_BATCH`` queued safety-net entries; return how many."""
    head = connection.execute(_LOCK_HEAD).one()
    if not head.has_pending:
        return 0
    claimed = connection.execute(_CLAIM_PENDING, {"limit": SEAL_BATCH}).scalars().all()
    if claimed:
        _write_links(
            connection,
            key,
            ChainHead(head.seq, bytes(head.hash)),
            _stored_entries(connection, claimed),
        )
    return len(claimed)


def read_head(connection: Connection) -> ChainHead:
    """The newest link as the head row records it (no lock)."""
    row = connection.execute(text("SELECT seq, hash FROM audit_chain_head WHERE id = 1")).one()
    return ChainHead(row.seq, bytes(row.hash))


def _stored_entries(connection: Connection, entry_ids: Iterable[int]) -> list[Mapping[str, Any]]:
    table = UserAudit.__table__
    statement = entries_statement().where(table.c.id.in_(list(entry_ids))).order_by(table.c.id)
    return [row._mapping for row in connection.execute(statement)]


def _write_links(
    connection: Connection, key: bytes, head: ChainHead, entries: Sequence[Mapping[str, Any]]
) -> ChainHead:
    seqs: list[int] = []
    hashes: list[bytes] = []
    seq, previous = head.seq, head.hash
    for entry in entries:
        seq += 1
        previous = link_hash(key, previous, seq, entry)
        seqs.append(seq)
        hashes.append(previous)
    connection.execute(
        _APPEND,
        {
            "seqs": seqs,
            "entry_ids": [entry["id"] for entry in entries],
            "hashes": hashes,
            "seq": seq,
            "hash": previous,
        },
    )
    return ChainHead(seq, previous)
