"""Proving the audit trail is whole: chain verification, drift, checkpoints.

``verify`` walks the hash chain from the first link, recomputing every keyed
hash, and stops at the first entry that does not check out, saying why. It
also compares the chain's end with its head row and with a saved checkpoint
(catching removal of the newest entries), finds entries that are in no link
(inserted behind the application's back), and finds profiles whose current
row differs from their latest audit entry (a change that escaped the log).
"""

from __future__ import annotations

import hmac
import json
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import ColumnElement, Connection, Engine, Float, cast, extract, func, select, text

from webapp.audit import chain
from webapp.audit.chain import GENESIS_HASH, ChainHead
from webapp.audit.personal_data import KeyProvider, key_provider
from webapp.audit.seal import ENTRY_DIGEST_SQL, digest_seal
from webapp.audit.sealer import link_all
from webapp.extensions import db
from webapp.models import (
    PERSONAL_FIELDS,
    AuditChainLink,
    AuditChainPending,
    AuditVerification,
    UserAudit,
)
from webapp.services.entry_decryption import (
    UNREADABLE_JSON,
    associated_data_prefix,
    plain_json,
    side_field,
)
from webapp.services.privacy import ERASED_NAME, erased_email
from webapp.timestamps import iso_utc, parse_iso_datetime, utcnow

#: Links fetched per round trip while walking the chain.
WALK_BATCH = 10_000
#: Drifted profiles named in a report; the count covers them all.
DRIFT_SAMPLE = 10
#: Forged entries named in a report; the count covers them all.
FORGED_SAMPLE = 20
#: Verification results looked at for the newest one the application sealed.
RESULTS_SCANNED = 50


@dataclass(frozen=True)
class Checkpoint:
    """A saved chain head. Kept outside the database, it proves later that no
    entry up to ``seq`` was removed or rewritten, even together with the head."""

    seq: int
    hash: bytes
    taken_at: datetime

    def to_json(self) -> str:
        return json.dumps(
            {"seq": self.seq, "hash": self.hash.hex(), "taken_at": iso_utc(self.taken_at)}
        )

    @classmethod
    def from_json(cls, document: str) -> Checkpoint:
        """Parse a checkpoint; ``ValueError`` says what is wrong with it."""
        try:
            data = json.loads(document)
            seq, digest, taken_at = data["seq"], data["hash"], data["taken_at"]
        except (ValueError, TypeError, KeyError) as error:
            raise ValueError(
                'not a checkpoint: expected {"seq": ..., "hash": ..., "taken_at": ...}'
            ) from error
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValueError("checkpoint seq must be a non-negative integer")
        try:
            raw = bytes.fromhex(digest)
        except (TypeError, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ValueError("checkpoint hash must be 64 hexadecimal characters")
        return cls(seq, raw, parse_iso_datetime(str(taken_at)))


@dataclass(frozen=True)
class Problem:
    """The first thing found wrong, and where."""

    reason: str
    entry_id: int | None = None
    seq: int | None = None


@dataclass
class Verification:
    """The outcome of one verification run."""

    started_at: datetime
    finished_at: datetime | None = None
    entries_checked: int = 0
    head: ChainHead = field(default_factory=lambda: ChainHead(0, GENESIS_HASH))
    pending_entries: int = 0
    drifted_profiles: int = 0
    drift_sample: list[int] = field(default_factory=list)
    #: Entries that claim to be a staff member's change without a valid seal.
    forged_entries: int = 0
    forged_sample: list[int] = field(default_factory=list)
    #: The oldest entry still waiting for its link, and how long it has waited.
    oldest_unlinked_seconds: float | None = None
    checkpoint_seq: int | None = None
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None and self.drifted_profiles == 0 and self.forged_entries == 0


def current_checkpoint(connection: Connection) -> Checkpoint:
    """The chain's head now, to be saved somewhere the database's admins cannot write."""
    head = chain.read_head(connection)
    return Checkpoint(head.seq, head.hash, utcnow())


def chain_length(connection: Connection) -> int:
    """How many links the walk will read (for a progress bar)."""
    return connection.execute(select(func.count()).select_from(AuditChainLink)).scalar_one()


def link_pending(key: bytes) -> int:
    """Link every queued entry into the chain; return how many. One short
    transaction per batch, so the chain's head is never held for long."""
    return link_all(db.engine, key)


def verify(
    engine: Engine,
    key: bytes,
    *,
    checkpoint: Checkpoint | None = None,
    max_link_delay: timedelta | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
    min_links_per_worker: int = 50_000,
) -> Verification:
    """Walk the whole chain and check everything ``verify`` promises (module doc).

    Everything is read in one snapshot (REPEATABLE READ, read only), so saves
    made meanwhile are simply not seen, never mistaken for damage. With
    ``workers`` > 1, ranges of links are walked at once on connections sharing
    that snapshot: a link is checked against the stored hash of the link
    before it, so ranges need nothing from each other; ranges are at least
    ``min_links_per_worker`` long, below which another connection costs more
    than it saves. ``progress`` is called with the number of links checked
    since its last call.
    """
    result = Verification(started_at=utcnow())
    if checkpoint is not None:
        result.checkpoint_seq = checkpoint.seq
    with _snapshot_connection(engine) as connection:
        last_seq = connection.execute(
            select(func.coalesce(func.max(AuditChainLink.seq), 0))
        ).scalar_one()
        parts = max(1, min(workers, last_seq // max(1, min_links_per_worker)))
        walked = _walk_ranges(engine, connection, key, last_seq, parts, progress)
        result.entries_checked = sum(part.checked for part in walked)
        result.problem = _first_problem(walked)
        unlinked_forged = _check_unlinked_seals(connection, key)
        result.forged_entries = sum(part.forged_count for part in walked) + len(unlinked_forged)
        forged = [entry for part in walked for entry in part.forged] + unlinked_forged
        result.forged_sample = sorted(forged)[:FORGED_SAMPLE]
        last_hash = _link_hash(connection, last_seq)
        result.head = ChainHead(last_seq, bytes(last_hash) if last_hash else GENESIS_HASH)
        result.pending_entries = connection.execute(
            select(func.count()).select_from(AuditChainPending)
        ).scalar_one()
        if result.problem is None:
            result.problem = _check_ends(connection, result.head, checkpoint)
        if result.problem is None:
            result.problem = _check_every_entry_is_chained(connection, result)
        result.oldest_unlinked_seconds = oldest_unlinked_seconds(connection)
        if result.problem is None and max_link_delay is not None:
            result.problem = _check_link_delay(connection, max_link_delay)
        result.drifted_profiles, result.drift_sample = find_drift(connection)
        if result.problem is None:
            result.problem = _check_results_sealed(connection, key)
    result.finished_at = utcnow()
    return result


_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f-]+")


@contextmanager
def _snapshot_connection(engine: Engine, snapshot: str | None = None) -> Iterator[Connection]:
    options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    with engine.connect().execution_options(**options) as connection:
        if snapshot is not None:  # must be the transaction's first statement
            # A utility statement takes no parameters; the id is PostgreSQL's own.
            if not _SNAPSHOT_ID.fullmatch(snapshot):
                raise ValueError(f"not a snapshot id: {snapshot!r}")
            connection.execute(text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
        yield connection
        connection.rollback()


@dataclass
class _Walked:
    """What walking links ``first``..``last`` found."""

    first: int
    last: int
    checked: int = 0
    problem: Problem | None = None
    #: Forged entries found (the first ``FORGED_SAMPLE``) and how many in all.
    forged: list[int] = field(default_factory=list)
    forged_count: int = 0


def _walk_ranges(
    engine: Engine,
    connection: Connection,
    key: bytes,
    last_seq: int,
    parts: int,
    progress: Callable[[int], None] | None,
) -> list[_Walked]:
    bounds = [last_seq * n // parts for n in range(parts + 1)]
    ranges = [_Walked(bounds[n] + 1, bounds[n + 1]) for n in range(parts)]
    lock = threading.Lock()

    def report(count: int) -> None:
        if progress is not None:
            with lock:  # progress bars are not thread-safe
                progress(count)

    if parts == 1:
        _walk(connection, key, ranges[0], report)
        return ranges
    snapshot = connection.execute(text("SELECT pg_export_snapshot()")).scalar_one()

    def walk(part: _Walked) -> _Walked:
        with _snapshot_connection(engine, snapshot) as own:
            _walk(own, key, part, report)
        return part

    with ThreadPoolExecutor(max_workers=parts) as pool:
        return list(pool.map(walk, ranges))


# Encoding 2 links need the SHA-256 of the entry's canonical bytes (computed
# next to the data, 32 bytes sent); encoding 1 links the canonical bytes.
# Read through the driver's own server-side cursor in binary: hashes and
# seals arrive as bytes, and rows as plain tuples, which halves the walk's
# time against rows built by SQLAlchemy from text results.
_LINKS_WITH_ENTRIES = (
    "SELECT audit_chain.seq, audit_chain.hash, audit_chain.entry_id, user_audit.id, "  # noqa: S608 (constants only)
    "audit_chain.encoding, user_audit.seal, user_audit.unattributed, "
    f"CASE WHEN audit_chain.encoding = 2 THEN {ENTRY_DIGEST_SQL} "
    f"ELSE {chain.CANONICAL_ENTRY_V1_SQL} END AS entry "
    "FROM audit_chain LEFT JOIN user_audit ON user_audit.id = audit_chain.entry_id "
    "WHERE audit_chain.seq BETWEEN %(first)s AND %(last)s ORDER BY audit_chain.seq"
)
_UNLINKED_ENTRIES = text(
    "SELECT user_audit.id, user_audit.seal, user_audit.unattributed, "  # noqa: S608 (constants only)
    f"{ENTRY_DIGEST_SQL} AS digest FROM user_audit WHERE NOT EXISTS "
    "(SELECT 1 FROM audit_chain WHERE audit_chain.entry_id = user_audit.id) "
    "AND user_audit.id IN (SELECT entry_id FROM audit_chain_pending) ORDER BY user_audit.id"
)


def _is_forged(seal: bytes | None, unattributed: bool, expected: bytes) -> bool:
    """Whether an entry's seal differs from the one its content calls for, or is
    missing while the entry claims to be a staff member's change."""
    if seal is None:
        return not unattributed
    return not hmac.compare_digest(seal, expected)


def _check_unlinked_seals(connection: Connection, key: bytes) -> list[int]:
    """Forged entries among those not linked yet (the walk checks the linked ones)."""
    return [
        entry_id
        for entry_id, seal, unattributed, digest in connection.execute(_UNLINKED_ENTRIES)
        if _is_forged(seal, unattributed, digest_seal(key, digest))
    ]


def _walk(
    connection: Connection, key: bytes, part: _Walked, progress: Callable[[int], None]
) -> None:
    """Check links ``part.first``..``part.last``; record the first problem in ``part``."""
    if part.first == 1:
        previous: bytes | None = GENESIS_HASH
    else:
        previous = _link_hash(connection, part.first - 1)
        # A missing link before this range is reported by the range before it.
    expected_seq = part.first
    previous_entry_id: int | None = None
    cursor = connection.connection.dbapi_connection.cursor(  # type: ignore[union-attr]
        name=f"verify_walk_{part.first}", binary=True
    )
    cursor.execute(_LINKS_WITH_ENTRIES, {"first": part.first, "last": part.last})
    link_hash, compare_digest, seal_of = chain.link_hash, hmac.compare_digest, digest_seal
    for partition in iter(lambda: cursor.fetchmany(WALK_BATCH), []):
        for seq, stored, link_entry_id, entry_id, encoding, seal, unattributed, entry in partition:
            if seq != expected_seq:
                part.problem = Problem(
                    f"link {expected_seq} is missing: the chain jumps from link "
                    f"{expected_seq - 1} (entry {previous_entry_id}) to link {seq} "
                    f"(entry {link_entry_id}): an entry and its link were deleted",
                    link_entry_id,
                    seq,
                )
                return
            if entry_id is None:
                part.problem = Problem(
                    f"entry {link_entry_id} (link {seq}) is missing from the audit table",
                    link_entry_id,
                    seq,
                )
                return
            if encoding == chain.LEGACY_ENCODING:
                # Linked in its own transaction before seals existed.
                linked = entry
            else:
                linked = seal_of(key, entry)
                if _is_forged(seal, unattributed, linked):
                    part.forged_count += 1
                    if len(part.forged) < FORGED_SAMPLE:
                        part.forged.append(entry_id)
            if previous is not None and not compare_digest(
                link_hash(key, previous, seq, linked), stored
            ):
                part.problem = Problem(
                    f"entry {entry_id} (link {seq}) does not match its hash: the entry was "
                    "changed or moved, or the chain was re-hashed without the key",
                    entry_id,
                    seq,
                )
                return
            previous, previous_entry_id = stored, entry_id
            expected_seq += 1
        part.checked += len(partition)
        progress(len(partition))
    if expected_seq <= part.last:
        part.problem = Problem(
            f"link {expected_seq} is missing: the chain ends at link {expected_seq - 1} "
            f"(entry {previous_entry_id}) but runs to link {part.last}",
            previous_entry_id,
            expected_seq,
        )


def _first_problem(walked: list[_Walked]) -> Problem | None:
    problems = [part.problem for part in walked if part.problem is not None]
    return min(problems, key=lambda problem: problem.seq or 0) if problems else None


def _check_ends(
    connection: Connection, last: ChainHead, checkpoint: Checkpoint | None
) -> Problem | None:
    """The chain's end against its head row and against a saved checkpoint."""
    head = chain.read_head(connection)
    if head != last:
        missing = (
            f"the newest {head.seq - last.seq} entries were removed"
            if head.seq > last.seq
            else "the head was rewritten"
        )
        return Problem(
            f"the chain ends at link {last.seq} but its head row records link {head.seq}: "
            + missing,
            None,
            last.seq,
        )
    if checkpoint is None or checkpoint.seq == 0:
        return None
    if last.seq < checkpoint.seq:
        return Problem(
            f"the chain ends at link {last.seq}, before the checkpoint's link "
            f"{checkpoint.seq}: the newest {checkpoint.seq - last.seq} entries were removed",
            None,
            last.seq,
        )
    stored = _link_hash(connection, checkpoint.seq)
    if stored is None or bytes(stored) != checkpoint.hash:
        return Problem(
            f"link {checkpoint.seq} differs from the checkpoint taken "
            f"{iso_utc(checkpoint.taken_at)}: the chain was rewritten since",
            None,
            checkpoint.seq,
        )
    return None


def _check_every_entry_is_chained(connection: Connection, result: Verification) -> Problem | None:
    entries = connection.execute(select(func.count()).select_from(UserAudit)).scalar_one()
    if entries == result.head.seq + result.pending_entries:
        return None
    stray = connection.execute(
        select(UserAudit.id)
        .where(
            ~select(AuditChainLink.seq).where(AuditChainLink.entry_id == UserAudit.id).exists(),
            ~select(AuditChainPending.entry_id)
            .where(AuditChainPending.entry_id == UserAudit.id)
            .exists(),
        )
        .order_by(UserAudit.id)
        .limit(1)
    ).scalar()
    if stray is None:  # cannot happen within one snapshot; no accusation without an entry
        return None
    return Problem(
        f"entry {stray} is in no link of the chain: it was inserted behind the application's back",
        stray,
    )


def _check_results_sealed(connection: Connection, key: bytes) -> Problem | None:
    """Verification results the application did not seal: someone faked a result."""
    rows = connection.execute(select(AuditVerification).order_by(AuditVerification.id))
    forged = [row.id for row in rows if not _is_sealed(key, row)]
    if not forged:
        return None
    named = ", ".join(str(result_id) for result_id in forged[:FORGED_SAMPLE])
    return Problem(
        f"verification result(s) {named} were not written by the application (no valid "
        "seal): someone with database access faked what the status badge shows"
    )


def _link_hash(connection: Connection, seq: int) -> bytes | None:
    """The hash of link ``seq``, or ``None`` when there is no such link."""
    return connection.execute(select(AuditChainLink.hash).where(AuditChainLink.seq == seq)).scalar()


def _waited(queued_at: ColumnElement[datetime]) -> ColumnElement[float]:
    """Seconds from ``queued_at`` until now (the wall clock, not the transaction's start)."""
    return cast(extract("epoch", func.clock_timestamp() - queued_at), Float)


def oldest_unlinked_seconds(connection: Connection) -> float | None:
    """How long the oldest entry not linked yet has waited (None: none waits)."""
    return connection.execute(select(_waited(func.min(AuditChainPending.queued_at)))).scalar()


def _check_link_delay(connection: Connection, max_delay: timedelta) -> Problem | None:
    """An entry left unlinked for longer than the sealer may take: is one running?"""
    late = connection.execute(
        select(AuditChainPending.entry_id, _waited(AuditChainPending.queued_at).label("waited"))
        .where(AuditChainPending.queued_at < func.clock_timestamp() - max_delay)
        .order_by(AuditChainPending.queued_at)
        .limit(1)
    ).one_or_none()
    if late is None:
        return None
    return Problem(
        f"entry {late.entry_id} has waited {late.waited:.0f} s for its link, longer than "
        f"AUDIT_MAX_LINK_DELAY_SECONDS ({max_delay.total_seconds():.0f} s): no sealer is "
        "linking entries (run `flask audit seal`, and keep the app's sealer running)",
        late.entry_id,
    )


#: Profiles read per round trip by the drift check.
DRIFT_BATCH = 10_000

_PERSONAL_SQL = "ARRAY[" + ", ".join(f"'{name}'" for name in PERSONAL_FIELDS) + "]"
# Each profile with its latest entry (the newest by time: writes to one profile
# are serialized by its row lock, so their entries' clock timestamps follow
# their order) and its data key. The database compares what it can: version
# and the fields that are not personal always; personal values stored in clear
# (entries written before encryption). A personal value stored encrypted
# needs the key, so such profiles are sent on with their ciphertexts; so are
# erased ones, whose row must hold the placeholders. Profiles that match by
# then are not sent at all.
_DRIFT_ROWS = text(
    "SELECT id, name, email, erased, drifted, "  # noqa: S608 (constants only)
    + ", ".join(f"{name}_encrypted, {name}_ciphertext" for name in PERSONAL_FIELDS)
    + ", key_id, wrapped_key, entry_id FROM ("
    "SELECT u.id, u.name, u.email, latest.id AS entry_id, k.master_key_id AS key_id, "
    "k.wrapped_key, (u.erased_at IS NOT NULL OR k.erased_at IS NOT NULL) AS erased, "
    + "".join(
        f"jsonb_typeof(latest.new_data -> '{name}') = 'object' AS {name}_encrypted, "
        f"latest.new_data -> '{name}' ->> 'ciphertext' AS {name}_ciphertext, "
        for name in PERSONAL_FIELDS
    )
    + "(latest.version IS DISTINCT FROM u.version "
    f" OR (latest.new_data - {_PERSONAL_SQL}) IS DISTINCT FROM "
    f"    (profile_snapshot(u) - {_PERSONAL_SQL}) "
    " OR (u.erased_at IS NULL AND k.erased_at IS NULL AND ("
    + " OR ".join(
        f"(jsonb_typeof(latest.new_data -> '{name}') <> 'object' AND "
        f"latest.new_data -> '{name}' IS DISTINCT FROM to_jsonb(u.{name}))"
        for name in PERSONAL_FIELDS
    )
    + "))) AS drifted "
    "FROM users u "
    "LEFT JOIN LATERAL (SELECT a.id, a.new_data, a.version FROM user_audit a "
    "  WHERE a.user_id = u.id ORDER BY a.timestamp DESC, a.id DESC LIMIT 1) latest ON true "
    "LEFT JOIN profile_data_keys k ON k.user_id = u.id"
    ") AS profiles WHERE drifted OR erased OR "
    + " OR ".join(f"{name}_encrypted" for name in PERSONAL_FIELDS)
    + " ORDER BY id"
)


def find_drift(connection: Connection) -> tuple[int, list[int]]:
    """Profiles whose row differs from the new data of their latest audit entry.

    Returns how many, and the first ``DRIFT_SAMPLE`` ids. Encrypted personal
    values are decrypted here, in batches, each profile's key unwrapped once;
    an erased profile (its key destroyed) is compared on the fields that are
    not personal, and its row must hold the erasure's placeholders. A value
    that does not decrypt counts as a difference: nothing shows the row matches.
    """
    provider = key_provider()
    drifted: list[int] = []
    total = 0
    rows = connection.execution_options(yield_per=DRIFT_BATCH).execute(_DRIFT_ROWS)
    for row in rows.mappings():
        if _profile_drifted(row, provider):
            total += 1
            if len(drifted) < DRIFT_SAMPLE:
                drifted.append(row["id"])
    return total, drifted


def _profile_drifted(row: Any, provider: KeyProvider) -> bool:
    """Whether one profile sent on by ``_DRIFT_ROWS`` differs from its latest entry."""
    if row["drifted"]:
        return True
    user_id = row["id"]
    if row["erased"]:
        return row["name"] != ERASED_NAME or row["email"] != erased_email(user_id)
    encrypted = [name for name in PERSONAL_FIELDS if row[f"{name}_encrypted"]]
    if row["wrapped_key"] is None or row["key_id"] is None:
        return True  # encrypted values and no key to read them
    cipher = AESGCM(provider.unwrap(row["key_id"], bytes(row["wrapped_key"])))
    prefix = associated_data_prefix(row["entry_id"], user_id)
    for name in encrypted:
        stored = row[f"{name}_ciphertext"]
        if stored is None:
            return True
        shown = plain_json(cipher, stored.encode(), prefix + side_field("new", name))
        if shown == UNREADABLE_JSON or json.loads(shown) != row[name]:
            return True
    return False


def describe(result: Verification) -> str:
    """One paragraph for people: what was checked and what, if anything, is wrong."""
    if result.problem is not None:
        return f"FAILED: {result.problem.reason}."
    if result.forged_entries:
        named = ", ".join(f"entry {entry_id}" for entry_id in result.forged_sample)
        more = result.forged_entries - len(result.forged_sample)
        return (
            f"FAILED: {named}{f' and {more} more' if more else ''}: forged or altered "
            "(claims to be a staff member's change, but its seal is missing or wrong)."
        )
    if result.drifted_profiles:
        sample = ", ".join(str(i) for i in result.drift_sample)
        return (
            f"FAILED: {result.drifted_profiles} profile(s) differ from their latest audit "
            f"entry (a change escaped the log): {sample}."
        )
    return f"OK: {result.entries_checked} entries verified, chain head at link {result.head.seq}."


def record(result: Verification, verified_by: str) -> AuditVerification:
    """Keep the outcome, sealed, for the API and the timeline's status badge."""
    if result.problem is not None:
        first_bad: int | None = result.problem.entry_id
    else:
        first_bad = result.forged_sample[0] if result.forged_sample else None
    row = AuditVerification(
        # The seal covers the row's id, so the id is taken first.
        id=db.session.execute(
            text("SELECT nextval(pg_get_serial_sequence('audit_verifications', 'id'))")
        ).scalar_one(),
        started_at=result.started_at,
        finished_at=result.finished_at or utcnow(),
        ok=result.ok,
        entries_checked=result.entries_checked,
        head_seq=result.head.seq,
        head_hash=result.head.hash,
        pending_entries=result.pending_entries,
        drifted_profiles=result.drifted_profiles,
        checkpoint_seq=result.checkpoint_seq,
        first_bad_entry_id=first_bad,
        problem=None if result.ok else describe(result).removeprefix("FAILED: "),
        verified_by=verified_by[:100],
    )
    row.seal = verification_seal(db.session().audit_chain_key, row)
    db.session.add(row)
    db.session.commit()
    return row


def verification_seal(key: bytes, row: Any) -> bytes:
    """HMAC of everything a verification result shows; only the application can make it."""
    values = [
        row.id,
        iso_utc(row.started_at),
        iso_utc(row.finished_at),
        row.ok,
        row.entries_checked,
        row.head_seq,
        bytes(row.head_hash).hex(),
        row.pending_entries,
        row.drifted_profiles,
        row.checkpoint_seq,
        row.first_bad_entry_id,
        row.problem,
        row.verified_by,
    ]
    canonical = json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode()
    return hmac.digest(key, b"verification\0" + canonical, "sha256")


def _is_sealed(key: bytes, row: Any) -> bool:
    return row.seal is not None and hmac.compare_digest(
        bytes(row.seal), verification_seal(key, row)
    )


@dataclass(frozen=True)
class ChainStatus:
    """What the API and the timeline show about the chain."""

    head: ChainHead
    pending_entries: int
    #: How long the oldest entry not linked yet has waited (None: none waits).
    oldest_unlinked_seconds: float | None
    last_verification: AuditVerification | None
    #: Newer results in the table that the application did not seal (ignored).
    unsealed_results: int


def chain_status() -> ChainStatus:
    """The chain's head now, its linking backlog and the last verification run."""
    connection = db.session.connection()
    backlog = connection.execute(
        select(
            func.count().label("entries"),
            _waited(func.min(AuditChainPending.queued_at)).label("oldest"),
        ).select_from(AuditChainPending)
    ).one()
    run, unsealed = latest_verification()
    return ChainStatus(chain.read_head(connection), backlog.entries, backlog.oldest, run, unsealed)


#: A successful verification older than this is shown as stale.
FRESH_FOR = timedelta(hours=26)


@dataclass(frozen=True)
class VerificationStatus:
    """The timeline's badge: ``state`` is ``ok``, ``stale``, ``failed`` or ``never``."""

    state: str
    headline: str
    detail: str | None
    run: AuditVerification | None
    #: How long the oldest entry not linked into the chain yet has waited.
    oldest_unlinked_seconds: float | None = None


def verification_status(now: datetime | None = None) -> VerificationStatus:
    """``judge_verification`` with the chain's linking backlog now."""
    status = judge_verification(now)
    waited = oldest_unlinked_seconds(db.session.connection())
    return replace(status, oldest_unlinked_seconds=waited)


def judge_verification(now: datetime | None = None) -> VerificationStatus:
    """How much the timeline can be trusted, judged by the last verification run.

    Daily runs are the documented schedule; a day plus a margin later, the
    result no longer says much about entries written since. Results the
    application did not seal are ignored, and said to be there.
    """
    # Worded for auditors reading the timeline: what the result means for the
    # entries below, and whom to turn to. (Operators read the CLI's output.)
    run, unsealed = latest_verification()
    if unsealed:
        return VerificationStatus(
            "failed",
            "Someone tried to change the tamper check's results",
            f"{unsealed} check result(s) newer than the last genuine one were not written "
            "by the application and are ignored. Treat this history with care, and tell "
            "your security contact and your administrators.",
            run,
        )
    if run is None:
        return VerificationStatus(
            "never",
            "Not checked for tampering yet",
            "Every entry is sealed as it is written, but no check has compared the whole "
            "history against its chain yet. Ask your administrators to schedule the daily check.",
            None,
        )
    if not run.ok:
        where = f" at entry {run.first_bad_entry_id}" if run.first_bad_entry_id else ""
        return VerificationStatus(
            "failed",
            f"Tamper check FAILED{where}",
            "The history does not match what the application recorded "
            f"({run.problem}). Do not rely on these entries as evidence until this is "
            "explained: tell your security contact and your administrators at once.",
            run,
        )
    age = (now or utcnow()) - run.finished_at
    if age > FRESH_FOR:
        return VerificationStatus(
            "stale",
            "Last checked for tampering over a day ago",
            f"the {run.entries_checked} entries then were intact; entries written since "
            "are not checked yet. The daily check may have stopped: ask your administrators.",
            run,
        )
    return VerificationStatus(
        "ok",
        "Checked for tampering",
        f"all {run.entries_checked} entries up to then are intact: none was changed, "
        "removed or inserted. Newer entries are checked in the next daily run.",
        run,
    )


def latest_verification() -> tuple[AuditVerification | None, int]:
    """The most recent verification run the application sealed, if any, and how
    many newer rows carry no valid seal (written by hand; ignored)."""
    rows = db.session.scalars(
        select(AuditVerification)
        .order_by(AuditVerification.finished_at.desc(), AuditVerification.id.desc())
        .limit(RESULTS_SCANNED)
    )
    key = db.session().audit_chain_key
    unsealed = 0
    for row in rows:
        if _is_sealed(key, row):
            return row, unsealed
        unsealed += 1
    return None, unsealed
