"""Encrypting the personal values of entries written before encryption existed.

Entries written before personal values were encrypted hold names and emails
in clear, sealed and linked as they are. ``encrypt_trail`` turns them into
what the application writes today, in one transaction, so that the chain
still verifies afterwards:

1. The chain's head is locked (sealers wait) and every queued entry is linked.
2. The chain as it stands is verified link by link, seals included, and the
   head against its last link. A trail that does not verify is refused before
   anything changes: re-sealing and re-linking it would hide the damage.
3. Every profile without a data key gets one; every missing email index
   (``users.email_index``) is filled.
4. Each entry holding a personal value in clear gets it encrypted with its
   profile's data key, bound to the entry as the application binds it; an
   entry that had a seal is sealed again over its new content, and one without
   (the safety net's, or written before seals) keeps none.
5. The chain is re-linked under ``AUDIT_CHAIN_KEY`` from the first changed
   entry on: each link keeps its number, entry and encoding, and hashes the
   entry as it is now, as ``flask audit verify`` recomputes it. Links of
   encoding 1 (entries from before seals) stay of encoding 1: encoding 2 would
   call for a seal these entries never had.
6. One security event, ``audit_trail_encrypted``, records the counts and the
   chain's head before and after.

Only in that transaction are the append-only guards of ``user_audit`` and
``audit_chain`` lifted, by the tables' owner, so no other session ever sees
them down; writers of entries wait until it commits. Values go in through
binary COPY into temporary tables and one set-based UPDATE per table, so the
time grows with the entries, not with round trips. Once it has run, nothing is
left in clear and a second run does nothing. Checkpoints saved before it no
longer match the chain: save a new one (``flask audit checkpoint``).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg.types.json import Jsonb
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from webapp.audit import chain
from webapp.audit.chain import GENESIS_HASH, ChainHead
from webapp.audit.personal_data import (
    PERSONAL_FIELDS,
    KeyProvider,
    cipher_of,
    clear_values_sql,
    email_index,
    encrypt_snapshot,
    is_encrypted,
    key_provider,
    new_data_key,
    new_wrapped_key,
)
from webapp.audit.seal import ENCODING, ENTRY_DIGEST_SQL, SEALED_FIELDS, canonical_entry, seal_of
from webapp.audit.seal import digest_seal as entry_digest
from webapp.extensions import db
from webapp.services.errors import Conflict
from webapp.services.security_events import record_event

#: Rows fetched per round trip while walking the chain.
WALK_BATCH = 10_000
#: Profiles given a key or an email index per statement.
PROFILE_BATCH = 10_000
_INSUFFICIENT_PRIVILEGE = "42501"
#: The append-only guards lifted inside the migration's transaction (and only there).
_GUARDS = (
    ("user_audit", "user_audit_append_only"),
    ("audit_chain", "audit_chain_append_only"),
)


class TrailDoesNotVerify(Conflict):
    """The chain is damaged: migrating it would re-seal and re-link the damage away."""

    code = "trail-does-not-verify"
    title = "Audit trail does not verify"


class NotTablesOwner(Conflict):
    """Run by a role that may not lift the append-only guards (not the tables' owner)."""

    code = "not-tables-owner"
    title = "Not the tables' owner"


class EmailIndexCollision(Conflict):
    """Two active profiles have emails equal but for case: one index cannot hold both."""

    code = "email-index-collision"
    title = "Emails equal but for case"


@dataclass
class TrailEncryption:
    """What ``encrypt_trail`` did (all zeros: nothing was left to do)."""

    old_head: ChainHead
    new_head: ChainHead
    entries_encrypted: int = 0
    entries_resealed: int = 0
    links_rewritten: int = 0
    entries_linked_first: int = 0
    data_keys_made: int = 0
    email_indexes_filled: int = 0
    #: entries walked while verifying and while re-linking
    links_walked: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def chain_rewritten(self) -> bool:
        return self.old_head != self.new_head

    @property
    def did_anything(self) -> bool:
        return bool(
            self.entries_encrypted
            or self.links_rewritten
            or self.data_keys_made
            or self.email_indexes_filled
        )


_CLEAR = clear_values_sql("a")
_LOCK_HEAD = text("SELECT seq, hash FROM audit_chain_head WHERE id = 1 FOR UPDATE")
# Queued entries are left to the sealer, which encrypts the safety net's itself.
_ANY_CLEAR_ENTRY = text(
    f"SELECT EXISTS (SELECT 1 FROM user_audit a WHERE {_CLEAR} AND NOT EXISTS "  # noqa: S608 (constants only)
    "(SELECT 1 FROM audit_chain_pending p WHERE p.entry_id = a.id))"
)
_PROFILES_WITHOUT_KEY = text(
    "SELECT u.id FROM users u WHERE NOT EXISTS "
    "(SELECT 1 FROM profile_data_keys k WHERE k.user_id = u.id) ORDER BY u.id"
)
_PROFILES_WITHOUT_INDEX = text("SELECT id, email FROM users WHERE email_index IS NULL ORDER BY id")
_INSERT_KEYS = text(
    "INSERT INTO profile_data_keys (user_id, master_key_id, wrapped_key) "
    "SELECT user_id, :key_id, wrapped FROM unnest(CAST(:user_ids AS bigint[]), "
    "CAST(:wrapped AS bytea[])) AS k(user_id, wrapped)"
)
_FILL_INDEX = text(
    "UPDATE users u SET email_index = i.email_index FROM unnest(CAST(:ids AS bigint[]), "
    "CAST(:indexes AS bytea[])) AS i(id, email_index) "
    "WHERE u.id = i.id AND u.email_index IS NULL"
)
_UNCHAINED = text(
    "SELECT a.id FROM user_audit a WHERE NOT EXISTS "
    "(SELECT 1 FROM audit_chain c WHERE c.entry_id = a.id) AND NOT EXISTS "
    "(SELECT 1 FROM audit_chain_pending p WHERE p.entry_id = a.id) ORDER BY a.id LIMIT 5"
)
_ENTRY_COLUMNS = ", ".join(f"a.{name}" for name in SEALED_FIELDS)
# The walk reads what verification reads (the digest of the entry's canonical
# bytes for encoding 2, the legacy bytes for encoding 1) and, for the entries
# holding clear values, their columns and their profile's key.
_WALK = (
    "SELECT c.seq, c.hash, c.entry_id, c.encoding, a.id IS NOT NULL AS present, "  # noqa: S608 (constants only)
    f"a.seal, a.unattributed, CASE WHEN c.encoding = {ENCODING} THEN {ENTRY_DIGEST_SQL} "
    f"ELSE {chain.CANONICAL_ENTRY_V1_SQL} END AS entry, {_CLEAR} AS clear, "
    f"k.master_key_id, k.wrapped_key, k.erased_at, {_ENTRY_COLUMNS} "
    "FROM audit_chain c LEFT JOIN user_audit a ON a.id = c.entry_id "
    "LEFT JOIN profile_data_keys k ON k.user_id = a.user_id ORDER BY c.seq"
).replace("user_audit.", "a.")
_RELINK = (
    "SELECT c.seq, c.entry_id, c.encoding, a.seal, "  # noqa: S608 (constants only)
    f"CASE WHEN c.encoding = {ENCODING} THEN {ENTRY_DIGEST_SQL} "
    f"ELSE {chain.CANONICAL_ENTRY_V1_SQL} END AS entry "
    "FROM audit_chain c JOIN user_audit a ON a.id = c.entry_id "
    "WHERE c.seq >= %(first)s ORDER BY c.seq"
).replace("user_audit.", "a.")
_STAGE_ENTRIES = (
    "CREATE TEMPORARY TABLE trail_encrypted_entries (id bigint PRIMARY KEY, "
    "previous_data jsonb, new_data jsonb NOT NULL, seal bytea) ON COMMIT DROP"
)
_STAGE_LINKS = (
    "CREATE TEMPORARY TABLE trail_relinked (seq bigint PRIMARY KEY, hash bytea NOT NULL) "
    "ON COMMIT DROP"
)
_APPLY_ENTRIES = text(
    "UPDATE user_audit a SET previous_data = e.previous_data, new_data = e.new_data, "
    "seal = e.seal FROM trail_encrypted_entries e WHERE a.id = e.id"
)
_APPLY_LINKS = text(
    "UPDATE audit_chain c SET hash = r.hash FROM trail_relinked r "
    "WHERE c.seq = r.seq AND c.hash <> r.hash"
)
_MOVE_HEAD = text("UPDATE audit_chain_head SET seq = :seq, hash = :hash WHERE id = 1")


def encrypt_trail(
    *, progress: Callable[[str, int], None] | None = None, clock: Callable[[], float] | None = None
) -> TrailEncryption:
    """Encrypt every personal value still in clear in the audit trail, keeping
    the chain verifiable (module doc). One transaction: all of it, or nothing.

    Refused, changing nothing, with ``TrailDoesNotVerify`` when the chain does
    not verify as it stands, and with ``EmailIndexCollision`` when two active
    profiles' emails are equal but for case. ``progress`` is told
    ``(stage, count)`` as entries are walked; ``clock`` (``time.perf_counter``)
    times the stages into the result's ``seconds``.
    """
    key: bytes = db.session().audit_chain_key
    provider = key_provider()
    connection = db.session.connection()
    # The statements below run for minutes on millions of entries.
    connection.execute(text("SET LOCAL statement_timeout = 0"))
    timer = _Timer(clock)
    try:
        with timer("link queued entries"):
            head_row = connection.execute(_LOCK_HEAD).one()
            linked_first = 0
            while count := chain.link_pending(connection, key, chain.LINK_BATCH):
                linked_first += count
            head = chain.read_head(connection) if linked_first else _head(head_row)
        result = TrailEncryption(old_head=head, new_head=head, entries_linked_first=linked_first)
        result.seconds = timer.seconds
        with timer("profiles"):
            result.data_keys_made = _give_profiles_keys(connection, provider)
            result.email_indexes_filled = _fill_email_indexes(connection)
        if connection.execute(_ANY_CLEAR_ENTRY).scalar_one():
            _rewrite_entries(connection, key, provider, result, timer, progress)
        if result.did_anything:
            record_event(
                "audit_trail_encrypted",
                details={
                    "entries_encrypted": result.entries_encrypted,
                    "entries_resealed": result.entries_resealed,
                    "links_rewritten": result.links_rewritten,
                    "data_keys_made": result.data_keys_made,
                    "email_indexes_filled": result.email_indexes_filled,
                    "old_head": {"seq": head.seq, "hash": head.hash.hex()},
                    "new_head": {"seq": result.new_head.seq, "hash": result.new_head.hash.hex()},
                },
                commit=False,
            )
        db.session.commit()
    except DBAPIError as error:
        db.session.rollback()
        if getattr(error.orig, "sqlstate", None) == _INSUFFICIENT_PRIVILEGE:
            reason = str(error.orig).strip().splitlines()[0]
            raise NotTablesOwner(
                "encrypt-trail lifts the append-only guards inside its transaction, which only "
                f"the owner of the tables may do: run it as the role the migrations run as "
                f"({reason}); nothing was changed."
            ) from None
        raise
    except BaseException:
        db.session.rollback()
        raise
    return result


def _head(row: Any) -> ChainHead:
    return ChainHead(row.seq, bytes(row.hash))


class _Timer:
    """Seconds per stage, when given a clock."""

    def __init__(self, clock: Callable[[], float] | None) -> None:
        self.clock = clock
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = self.clock() if self.clock else 0.0
        yield
        if self.clock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + self.clock() - started


def _give_profiles_keys(connection: Connection, provider: KeyProvider) -> int:
    """A data key for every profile without one (made around the application,
    or before keys existed); how many."""
    user_ids = list(connection.execute(_PROFILES_WITHOUT_KEY).scalars())
    for start in range(0, len(user_ids), PROFILE_BATCH):
        batch = user_ids[start : start + PROFILE_BATCH]
        wrapped = [new_wrapped_key(provider)[1].wrapped_key for _ in batch]
        connection.execute(
            _INSERT_KEYS,
            {"key_id": provider.current_key_id, "user_ids": batch, "wrapped": wrapped},
        )
    return len(user_ids)


def _fill_email_indexes(connection: Connection) -> int:
    """The blind index of every profile's email where it is missing; how many."""
    rows = connection.execute(_PROFILES_WITHOUT_INDEX).all()
    for start in range(0, len(rows), PROFILE_BATCH):
        batch = rows[start : start + PROFILE_BATCH]
        try:
            with connection.begin_nested():
                connection.execute(
                    _FILL_INDEX,
                    {
                        "ids": [row.id for row in batch],
                        "indexes": [email_index(row.email) for row in batch],
                    },
                )
        except IntegrityError:
            raise EmailIndexCollision(
                "Two profiles that are not deleted have emails equal but for case, which the "
                "email index (case-insensitive) cannot hold; change or delete one of them "
                "(`SELECT lower(email), array_agg(id) FROM users WHERE deleted_at IS NULL "
                "GROUP BY 1 HAVING count(*) > 1`), then run this again."
            ) from None
    return len(rows)


class _Ciphers:
    """Profiles' data keys as their entries come, through the process's bounded
    cache (one cipher per profile of a large trail would hold gigabytes)."""

    def __init__(self, provider: KeyProvider) -> None:
        self.provider = provider
        # Erased profiles' values: encrypted under a key nobody keeps.
        self.discarded = AESGCM(new_data_key())

    def of(
        self, entry_id: int, key_id: str | None, wrapped: bytes | None, erased_at: object
    ) -> AESGCM:
        """The cipher of the key ``profile_data_keys`` holds for the entry's profile."""
        if wrapped is not None:
            return cipher_of(key_id, bytes(wrapped), self.provider)  # type: ignore[return-value]
        if erased_at is None:  # every profile was given a key first, in this transaction
            raise RuntimeError(
                f"entry {entry_id}: its profile has no data key; nothing was changed"
            )
        return self.discarded


def _rewrite_entries(
    connection: Connection,
    key: bytes,
    provider: KeyProvider,
    result: TrailEncryption,
    timer: _Timer,
    progress: Callable[[str, int], None] | None,
) -> None:
    """Verify the chain, encrypt the clear entries, re-link from the first one."""
    unchained = list(connection.execute(_UNCHAINED).scalars())
    if unchained:
        raise TrailDoesNotVerify(
            f"entries {', '.join(map(str, unchained))} are in no link and not queued for one: "
            "inserted behind the application's back. Run `flask audit verify` and "
            "investigate before encrypting the trail."
        )
    ciphers = _Ciphers(provider)
    raw = connection.connection.dbapi_connection
    assert raw is not None
    raw.execute(_STAGE_ENTRIES)
    raw.execute(_STAGE_LINKS)
    with timer("verify, encrypt"):
        first_changed = _verify_and_encrypt(raw, key, ciphers, result, progress)
    if first_changed is None:  # the safety net's, committed since: the sealer's
        return
    for table, trigger in _GUARDS:
        connection.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}"))
    with timer("write entries"):
        connection.execute(_APPLY_ENTRIES)
    with timer("re-link"):
        _relink(raw, key, first_changed, result, progress)
        result.links_rewritten = connection.execute(_APPLY_LINKS).rowcount
        connection.execute(_MOVE_HEAD, {"seq": result.new_head.seq, "hash": result.new_head.hash})
    for table, trigger in _GUARDS:
        connection.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}"))


def _verify_and_encrypt(
    raw: Any,
    key: bytes,
    ciphers: _Ciphers,
    result: TrailEncryption,
    progress: Callable[[str, int], None] | None,
) -> int | None:
    """Walk the chain as verification does, refusing at its first problem, and
    stage the encrypted form of every entry holding clear values; return the
    number of the first link whose entry changes."""
    previous = GENESIS_HASH
    expected_seq = 1
    first_changed: int | None = None
    cursor = raw.cursor(name="trail_encryption_walk", binary=True)
    cursor.execute(_WALK)
    compare, link_hash = hmac.compare_digest, chain.link_hash
    names = SEALED_FIELDS
    columns = 12  # before the entry's own columns in _WALK
    for partition in iter(lambda: cursor.fetchmany(WALK_BATCH), []):
        staged: list[tuple[int, Any, Any, bytes | None]] = []
        for row in partition:
            seq, stored, entry_id, encoding, present, seal, unattributed, entry, clear = row[:9]
            if seq != expected_seq:
                _refuse(f"link {expected_seq} is missing (the chain jumps to link {seq})")
            if not present:
                _refuse(f"entry {entry_id} (link {seq}) is missing from the audit table")
            if encoding == chain.LEGACY_ENCODING:
                linked = bytes(entry)
            else:
                linked = entry_digest(key, bytes(entry))
                if (seal is None and not unattributed) or (
                    seal is not None and not compare(bytes(seal), linked)
                ):
                    _refuse(f"entry {entry_id} (link {seq}) does not match its seal")
            if not compare(link_hash(key, previous, seq, linked), bytes(stored)):
                _refuse(f"entry {entry_id} (link {seq}) does not match its link's hash")
            previous = bytes(stored)
            expected_seq += 1
            if clear:
                entry_row = dict(zip(names, row[columns:], strict=True))
                cipher = ciphers.of(entry_id, *row[9:12])
                staged.append(_encrypted(key, cipher, entry_row, seal is not None))
                if first_changed is None:
                    first_changed = seq
        if staged:
            result.entries_encrypted += len(staged)
            result.entries_resealed += sum(1 for row in staged if row[3] is not None)
            _copy(
                raw,
                "COPY trail_encrypted_entries (id, previous_data, new_data, seal) "
                "FROM STDIN (FORMAT BINARY)",
                ["int8", "jsonb", "jsonb", "bytea"],
                staged,
            )
        result.links_walked += len(partition)
        if progress is not None:
            progress("verify, encrypt", len(partition))
    cursor.close()
    if (expected_seq - 1, previous) != (result.old_head.seq, result.old_head.hash):
        _refuse(
            f"the chain ends at link {expected_seq - 1} but its head row says link "
            f"{result.old_head.seq} (or another hash)"
        )
    return first_changed


def _refuse(problem: str) -> None:
    raise TrailDoesNotVerify(
        f"The audit trail does not verify: {problem}. Encrypting it would re-seal and "
        "re-link the damage out of sight; nothing was changed. Run `flask audit verify` "
        "and investigate first."
    )


def _encrypted(
    key: bytes, cipher: AESGCM, entry: dict[str, Any], sealed: bool
) -> tuple[int, Any, Any, bytes | None]:
    """The staged row of an entry with its clear personal values encrypted with
    ``cipher`` (its profile's key), as the application encrypts them, and
    sealed again if it was sealed."""
    entry_id, user_id = entry["id"], entry["user_id"]
    for side, column in (("previous", "previous_data"), ("new", "new_data")):
        snapshot = entry[column]
        if snapshot is None:
            continue
        clear = {
            name: value
            for name, value in snapshot.items()
            if name in PERSONAL_FIELDS and value is not None and not is_encrypted(value)
        }
        if clear:
            entry[column] = {
                **snapshot,
                **encrypt_snapshot(cipher, entry_id, user_id, side, clear),
            }
    seal = seal_of(key, canonical_entry(entry)) if sealed else None
    previous = entry["previous_data"]
    return (
        entry_id,
        None if previous is None else Jsonb(previous),
        Jsonb(entry["new_data"]),
        seal,
    )


def _copy(raw: Any, statement: str, types: list[str], rows: list[Any]) -> None:
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def _relink(
    raw: Any,
    key: bytes,
    first: int,
    result: TrailEncryption,
    progress: Callable[[str, int], None] | None,
) -> None:
    """Stage the links from link ``first`` on, hashing each entry as it is now."""
    if first == 1:
        previous = GENESIS_HASH
    else:
        previous = bytes(
            raw.execute("SELECT hash FROM audit_chain WHERE seq = %s", (first - 1,)).fetchone()[0]
        )
    seq = first - 1
    cursor = raw.cursor(name="trail_encryption_relink", binary=True)
    cursor.execute(_RELINK, {"first": first})
    compare, link_hash = hmac.compare_digest, chain.link_hash
    for partition in iter(lambda: cursor.fetchmany(WALK_BATCH), []):
        links = []
        for seq, entry_id, encoding, seal, entry in partition:
            if encoding == chain.LEGACY_ENCODING:
                linked = bytes(entry)
            else:
                linked = entry_digest(key, bytes(entry))
                if seal is not None and not compare(bytes(seal), linked):
                    # The seal was made over the entry as written: the two
                    # canonical forms disagree, and verification would too.
                    raise RuntimeError(
                        f"entry {entry_id}: its new seal does not match the entry as stored; "
                        "nothing was changed"
                    )
            previous = link_hash(key, previous, seq, linked)
            links.append((seq, previous))
        _copy(
            raw,
            "COPY trail_relinked (seq, hash) FROM STDIN (FORMAT BINARY)",
            ["int8", "bytea"],
            links,
        )
        result.links_walked += len(partition)
        if progress is not None:
            progress("re-link", len(partition))
    cursor.close()
    result.new_head = ChainHead(seq, previous)


def describe(result: TrailEncryption) -> list[str]:
    """Lines for people: what was done, and what to do next."""
    if not result.did_anything:
        lines = ["Nothing to do: no personal value is left in clear in the audit trail."]
        if result.entries_linked_first:
            lines.append(f"{result.entries_linked_first} queued entries were linked.")
        return lines
    lines = [
        f"{result.entries_encrypted} entries encrypted ({result.entries_resealed} sealed "
        f"again), {result.links_rewritten} links rewritten; {result.data_keys_made} profiles "
        f"given a data key, {result.email_indexes_filled} email indexes filled.",
    ]
    if result.chain_rewritten:
        old, new = result.old_head, result.new_head
        lines += [
            f"Chain head was link {old.seq}, hash {old.hash.hex()}",
            f"Chain head is  link {new.seq}, hash {new.hash.hex()}",
            "Checkpoints saved before this no longer match the chain: save a new one now "
            "with `flask audit checkpoint` and keep it where the old ones are.",
        ]
    return lines
