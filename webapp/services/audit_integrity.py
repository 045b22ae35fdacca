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
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, func, select, text

from webapp.audit import chain
from webapp.audit.chain import GENESIS_HASH, ChainHead
from webapp.extensions import db
from webapp.models import AuditChainLink, AuditChainPending, AuditVerification, UserAudit
from webapp.timestamps import iso_utc, parse_iso_datetime, utcnow

#: Links fetched per round trip while walking the chain.
WALK_BATCH = 10_000
#: Drifted profiles named in a report; the count covers them all.
DRIFT_SAMPLE = 10


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
    checkpoint_seq: int | None = None
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None and self.drifted_profiles == 0


def current_checkpoint(connection: Connection) -> Checkpoint:
    """The chain's head now, to be saved somewhere the database's admins cannot write."""
    head = chain.read_head(connection)
    return Checkpoint(head.seq, head.hash, utcnow())


def chain_length(connection: Connection) -> int:
    """How many links the walk will read (for a progress bar)."""
    return connection.execute(select(func.count()).select_from(AuditChainLink)).scalar_one()


def seal_pending(key: bytes) -> int:
    """Seal every entry the safety net queued; return how many. Commits per batch
    so the chain's head is never held for long."""
    sealed = 0
    while True:
        count = chain.seal_pending(db.session.connection(), key)
        db.session.commit()
        sealed += count
        if count == 0:
            return sealed


def verify(
    engine: Engine,
    key: bytes,
    *,
    checkpoint: Checkpoint | None = None,
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
            text("SELECT coalesce(max(seq), 0) FROM audit_chain")
        ).scalar_one()
        parts = max(1, min(workers, last_seq // max(1, min_links_per_worker)))
        walked = _walk_ranges(engine, connection, key, last_seq, parts, progress)
        result.entries_checked = sum(part.checked for part in walked)
        result.problem = _first_problem(walked)
        last_hash = connection.execute(
            text("SELECT hash FROM audit_chain WHERE seq = :seq"), {"seq": last_seq}
        ).scalar()
        result.head = ChainHead(last_seq, bytes(last_hash) if last_hash else GENESIS_HASH)
        result.pending_entries = connection.execute(
            select(func.count()).select_from(AuditChainPending)
        ).scalar_one()
        if result.problem is None:
            result.problem = _check_ends(connection, result.head, checkpoint)
        if result.problem is None:
            result.problem = _check_every_entry_is_chained(connection, result)
        result.drifted_profiles, result.drift_sample = find_drift(connection)
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


_LINKS_WITH_ENTRIES = text(
    "SELECT audit_chain.seq, audit_chain.hash, audit_chain.entry_id, user_audit.id, "  # noqa: S608 (constants only)
    f"{chain.CANONICAL_ENTRY_SQL} AS canonical "
    "FROM audit_chain LEFT JOIN user_audit ON user_audit.id = audit_chain.entry_id "
    "WHERE audit_chain.seq BETWEEN :first AND :last ORDER BY audit_chain.seq"
)


def _walk(
    connection: Connection, key: bytes, part: _Walked, progress: Callable[[int], None]
) -> None:
    """Check links ``part.first``..``part.last``; record the first problem in ``part``."""
    if part.first == 1:
        previous: bytes | None = GENESIS_HASH
    else:
        previous = connection.execute(
            text("SELECT hash FROM audit_chain WHERE seq = :seq"), {"seq": part.first - 1}
        ).scalar()
        # A missing link before this range is reported by the range before it.
    expected_seq = part.first
    previous_entry_id: int | None = None
    stream = connection.execution_options(stream_results=True, yield_per=WALK_BATCH)
    rows = stream.execute(_LINKS_WITH_ENTRIES, {"first": part.first, "last": part.last})
    link_hash, compare_digest = chain.link_hash, hmac.compare_digest  # hot loop
    for partition in rows.partitions(WALK_BATCH):
        for seq, stored, link_entry_id, entry_id, canonical in partition:
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
            if previous is not None and not compare_digest(
                link_hash(key, previous, seq, canonical), stored
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
    stored = connection.execute(
        text("SELECT hash FROM audit_chain WHERE seq = :seq"), {"seq": checkpoint.seq}
    ).scalar()
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
        text(
            "SELECT a.id FROM user_audit a WHERE NOT EXISTS "
            "(SELECT 1 FROM audit_chain c WHERE c.entry_id = a.id) AND NOT EXISTS "
            "(SELECT 1 FROM audit_chain_pending p WHERE p.entry_id = a.id) "
            "ORDER BY a.id LIMIT 1"
        )
    ).scalar()
    if stray is None:  # cannot happen within one snapshot; no accusation without an entry
        return None
    return Problem(
        f"entry {stray} is in no link of the chain: it was inserted behind the application's back",
        stray,
    )


def find_drift(connection: Connection) -> tuple[int, list[int]]:
    """Profiles whose row differs from the new data of their latest audit entry.

    Returns how many, and the first ``DRIFT_SAMPLE`` ids. The latest entry is
    the newest by time: writes to one profile are serialized by its row lock,
    so their entries' clock timestamps follow their order.
    """
    rows = connection.execute(
        text(
            "SELECT u.id, count(*) OVER () AS total FROM users u "
            "LEFT JOIN LATERAL (SELECT a.new_data, a.version FROM user_audit a "
            "  WHERE a.user_id = u.id ORDER BY a.timestamp DESC, a.id DESC LIMIT 1) latest "
            "  ON true "
            "WHERE latest.new_data IS DISTINCT FROM profile_snapshot(u) "
            "   OR latest.version IS DISTINCT FROM u.version "
            "ORDER BY u.id LIMIT :sample"
        ),
        {"sample": DRIFT_SAMPLE},
    ).all()
    if not rows:
        return 0, []
    return rows[0].total, [row.id for row in rows]


def describe(result: Verification) -> str:
    """One paragraph for people: what was checked and what, if anything, is wrong."""
    if result.problem is not None:
        return f"FAILED: {result.problem.reason}."
    if result.drifted_profiles:
        sample = ", ".join(str(i) for i in result.drift_sample)
        return (
            f"FAILED: {result.drifted_profiles} profile(s) differ from their latest audit "
            f"entry (a change escaped the log): {sample}."
        )
    return f"OK: {result.entries_checked} entries verified, chain head at link {result.head.seq}."


def record(result: Verification, verified_by: str) -> AuditVerification:
    """Keep the outcome, for the API and the timeline's status badge."""
    row = AuditVerification(
        started_at=result.started_at,
        finished_at=result.finished_at or utcnow(),
        ok=result.ok,
        entries_checked=result.entries_checked,
        head_seq=result.head.seq,
        head_hash=result.head.hash,
        pending_entries=result.pending_entries,
        drifted_profiles=result.drifted_profiles,
        checkpoint_seq=result.checkpoint_seq,
        first_bad_entry_id=result.problem.entry_id if result.problem else None,
        problem=result.problem.reason
        if result.problem
        else (None if result.ok else describe(result)),
        verified_by=verified_by[:100],
    )
    db.session.add(row)
    db.session.commit()
    return row


@dataclass(frozen=True)
class ChainStatus:
    """What the API and the timeline show about the chain."""

    head: ChainHead
    pending_entries: int
    last_verification: AuditVerification | None


def chain_status() -> ChainStatus:
    """The chain's head now, its sealing backlog and the last verification run."""
    connection = db.session.connection()
    pending = connection.execute(select(func.count()).select_from(AuditChainPending)).scalar_one()
    return ChainStatus(chain.read_head(connection), pending, latest_verification())


#: A successful verification older than this is shown as stale.
FRESH_FOR = timedelta(hours=26)


@dataclass(frozen=True)
class VerificationStatus:
    """The timeline's badge: ``state`` is ``ok``, ``stale``, ``failed`` or ``never``."""

    state: str
    headline: str
    detail: str | None
    run: AuditVerification | None


def verification_status(now: datetime | None = None) -> VerificationStatus:
    """How much the timeline can be trusted, judged by the last verification run.

    Daily runs are the documented schedule; a day plus a margin later, the
    result no longer says much about entries written since.
    """
    run = latest_verification()
    if run is None:
        return VerificationStatus(
            "never", "Audit chain not verified yet", "Run flask audit verify on a schedule.", None
        )
    if not run.ok:
        where = f" (entry {run.first_bad_entry_id})" if run.first_bad_entry_id else ""
        return VerificationStatus(
            "failed", f"Audit chain verification FAILED{where}", run.problem, run
        )
    age = (now or utcnow()) - run.finished_at
    detail = f"{run.entries_checked} entries intact up to link {run.head_seq}"
    if age > FRESH_FOR:
        return VerificationStatus("stale", "Audit chain last verified over a day ago", detail, run)
    return VerificationStatus("ok", "Audit chain verified", detail, run)


def latest_verification() -> AuditVerification | None:
    """The most recent verification run, if any."""
    return db.session.scalars(
        select(AuditVerification).order_by(AuditVerification.finished_at.desc()).limit(1)
    ).first()
