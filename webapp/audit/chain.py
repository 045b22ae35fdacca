"""The keyed hash chain that makes removing, reordering or rewriting entries evident.

Every entry gets a link: a gap-free sequence number ``seq`` and
``hash = HMAC-SHA-256(key, previous hash || seq || entry digest)``. For links of
encoding 2 (every link written since entries carry seals) the entry digest is
``HMAC-SHA-256(key, SHA-256(canonical bytes))``, the value the entry's seal
must have (``webapp.audit.seal``); links of encoding 1, written before seals
existed, hashed the canonical bytes themselves and still verify that way.
The key comes from configuration and is never stored in the database, so
someone with only database access cannot re-hash the chain to hide an edit.

Entries are linked after COMMIT, never inside a save: the INSERT of an entry
queues it in ``audit_chain_pending`` (a statement trigger, so nothing that
inserts entries can skip the queue), and a sealer (``webapp.audit.sealer``,
``flask audit seal``) claims queued entries and appends their links in
batches. A queued row becomes visible only when the transaction that wrote it
commits, and stays until a sealer claims it, so an entry whose transaction
commits late, whatever its id, is linked by a later batch: none is skipped.
One sealer at a time owns the head: it locks the head's single row with
``SKIP LOCKED``, so a second sealer returns at once instead of queueing, and
no user transaction ever waits for the head. The primary key on ``seq`` turns
a fork into an error should anything get past the lock.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, text

from webapp.audit.personal_data import encrypt_queued_clear_entries
from webapp.audit.seal import ENCODING, ENTRY_DIGEST_SQL
from webapp.audit.seal import digest_seal as entry_digest
from webapp.models import AuditChainHead, ProfileDataKey, UserAudit

log = logging.getLogger(__name__)

#: The hash the first link chains to.
GENESIS_HASH = bytes(32)
#: Links written before entries carried seals hashed these canonical bytes:
#: PostgreSQL's text form of a ``jsonb`` object of the entry's columns as they
#: were then (fixed for good: columns added since are not part of them).
LEGACY_ENCODING = 1
_LEGACY_FIELDS = (
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
_LEGACY_VALUES = {
    "timestamp": "pg_catalog.to_char(user_audit.timestamp AT TIME ZONE 'UTC', "
    '\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\')',
    "changed_fields": "pg_catalog.to_jsonb(user_audit.changed_fields)",
}
#: Columns added to entries since: in the legacy bytes only when set, so
#: that the bytes of the entries linked then stay what they were, while
#: setting one afterwards still changes them.
_LEGACY_OPTIONAL_FIELDS = ("token_id", "client_request_id")


def _legacy_pairs(names: tuple[str, ...]) -> str:
    return ", ".join(
        f"'{name}', {_LEGACY_VALUES.get(name, f'user_audit.{name}')}" for name in names
    )


#: The legacy bytes as they were when those links were made, before the
#: token columns existed (what the links of encoding 1 hashed).
CANONICAL_ENTRY_V1_AS_LINKED_SQL = (
    "pg_catalog.convert_to(pg_catalog.jsonb_build_object("
    + _legacy_pairs(_LEGACY_FIELDS)
    + f", 'encoding', {LEGACY_ENCODING})::text, 'UTF8')"
)
CANONICAL_ENTRY_V1_SQL = (
    "pg_catalog.convert_to((pg_catalog.jsonb_build_object("
    + _legacy_pairs(_LEGACY_FIELDS)
    + f", 'encoding', {LEGACY_ENCODING}) OPERATOR(pg_catalog.||) "
    + "pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object("
    + _legacy_pairs(_LEGACY_OPTIONAL_FIELDS)
    + ")))::text, 'UTF8')"
)
#: Queued entries linked per sealer transaction.
LINK_BATCH = 500

_INSERT_ENTRIES = insert(UserAudit.__table__)
_INSERT_KEYS = insert(ProfileDataKey.__table__)
# Bound parameters throughout, so the statement is compiled once and cached.
_INSERT_ENTRY_WITH_KEY = insert(UserAudit.__table__).add_cte(
    insert(ProfileDataKey.__table__)
    .values(
        user_id=bindparam("key_user_id"),
        master_key_id=bindparam("key_master_key_id"),
        wrapped_key=bindparam("key_wrapped_key"),
    )
    .cte("new_data_key")
)

_READ_HEAD = select(AuditChainHead.seq, AuditChainHead.hash).where(AuditChainHead.id == 1)
# The sealer's three statements stay SQL text. They are its hot path: the
# head's lock through Core (the same SELECT with a bound id) measured slower
# back to back; the data-modifying CTEs, the digest expression (ENTRY_DIGEST_SQL,
# shared with verify) and unnest() over arrays would reach Core only as text
# fragments anyway, adding compile work per batch and no checking.
_LOCK_HEAD = text("SELECT seq, hash FROM audit_chain_head WHERE id = 1 FOR UPDATE SKIP LOCKED")
# Entries queued more than once, or already linked (a hand-made queue row),
# are taken off the queue without a second link.
_CLAIM_PENDING = text(
    "WITH claimed AS (DELETE FROM audit_chain_pending WHERE entry_id IN "  # noqa: S608 (constants only)
    "(SELECT entry_id FROM audit_chain_pending ORDER BY entry_id LIMIT :limit) "
    "RETURNING entry_id, queued_at) "
    f"SELECT user_audit.id, user_audit.seal, {ENTRY_DIGEST_SQL} AS digest "
    "FROM claimed JOIN user_audit ON user_audit.id = claimed.entry_id "
    "WHERE NOT EXISTS (SELECT 1 FROM audit_chain WHERE audit_chain.entry_id = claimed.entry_id) "
    "ORDER BY claimed.queued_at, user_audit.id"
)
_APPEND = text(
    "WITH links AS (INSERT INTO audit_chain (seq, entry_id, hash, encoding) "
    "SELECT seq, entry_id, hash, :encoding FROM unnest(CAST(:seqs AS bigint[]), "
    "CAST(:entry_ids AS bigint[]), CAST(:hashes AS bytea[])) AS l(seq, entry_id, hash)) "
    "UPDATE audit_chain_head SET seq = :seq, hash = :hash WHERE id = 1"
)


@dataclass(frozen=True)
class ChainHead:
    """The newest link: what a checkpoint records."""

    seq: int
    hash: bytes


def link_hash(key: bytes, previous_hash: bytes, seq: int, entry: bytes) -> bytes:
    """HMAC-SHA-256 of the previous link's hash, the link's number and the entry
    (its digest for encoding 2, its canonical bytes for encoding 1)."""
    return hmac.digest(key, previous_hash + seq.to_bytes(8, "big") + entry, "sha256")


def write_entries(
    connection: Connection,
    rows: Sequence[Mapping[str, Any]],
    new_keys: Sequence[Mapping[str, Any]] | None = None,
) -> None:
    """Insert sealed audit entries (``user_audit`` column values, ids included),
    and ``new_keys`` (``profile_data_keys`` rows) in the same statement.

    One statement, no lock: the entries are queued for linking by the
    database as they are inserted, and linked after COMMIT. A new profile's
    key rides along as a CTE rather than costing a round trip of its own.
    """
    if not new_keys:
        connection.execute(_INSERT_ENTRIES, list(rows))
    elif len(rows) == 1 and len(new_keys) == 1:  # a profile's creation, the usual case
        key = {f"key_{name}": value for name, value in new_keys[0].items()}
        connection.execute(_INSERT_ENTRY_WITH_KEY, {**rows[0], **key})
    else:
        connection.execute(_INSERT_KEYS, list(new_keys))
        connection.execute(_INSERT_ENTRIES, list(rows))


def link_pending(connection: Connection, key: bytes, limit: int = LINK_BATCH) -> int | None:
    """Link up to ``limit`` queued entries; return how many, or ``None`` when
    another sealer holds the head right now. The caller commits."""
    head_row = connection.execute(_LOCK_HEAD).one_or_none()
    if head_row is None:
        return None
    encrypt_queued_clear_entries(connection, key, limit)
    claimed = connection.execute(_CLAIM_PENDING, {"limit": limit}).all()
    if not claimed:
        return 0
    seq, previous = head_row.seq, bytes(head_row.hash)
    seqs: list[int] = []
    entry_ids: list[int] = []
    hashes: list[bytes] = []
    for entry_id, seal, canonical_sha256 in claimed:
        digest = entry_digest(key, bytes(canonical_sha256))
        if seal is not None and bytes(seal) != digest:
            # Linked all the same, as it is now: verify names it as forged.
            log.warning("audit entry %s does not match its seal: forged or altered", entry_id)
        seq += 1
        previous = link_hash(key, previous, seq, digest)
        seqs.append(seq)
        entry_ids.append(entry_id)
        hashes.append(previous)
    connection.execute(
        _APPEND,
        {
            "seqs": seqs,
            "entry_ids": entry_ids,
            "hashes": hashes,
            "seq": seq,
            "hash": previous,
            "encoding": ENCODING,
        },
    )
    return len(claimed)


def read_head(connection: Connection) -> ChainHead:
    """The newest link as the head row records it (no lock)."""
    row = connection.execute(_READ_HEAD).one()
    return ChainHead(row.seq, bytes(row.hash))
