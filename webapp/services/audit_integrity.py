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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select, text

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
    connection: Connection,
    key: bytes,
    *,
    checkpoint: Checkpoint | None = None,
    progress: Callable[[int], None] | None = None,
) -> Verification:
    """Walk the whole chain and check everything ``verify`` promises (module doc).

    ``progress`` is called with the number of links checked since its last call.
    """
    result = Verification(started_at=utcnow())
    if checkpoint is not None:
        result.checkpoint_seq = checkpoint.seq
    result.problem = _walk(connection, key, checkpoint, result, progress)
    if result.problem is None:
        result.problem = _check_every_entry_is_chained(connection, result)
    result.pending_entries = connection.execute(
        select(func.count()).select_from(AuditChainPending)
    ).scalar_one()
    result.drifted_profiles, result.drift_sample = find_drift(connection)
    result.finished_at = utcnow()
    return result


def _walk(
    connection: Connection,
    key: bytes,
    checkpoint: Checkpoint | None,
    result: Verification,
    progress: Callable[[int], None] | None,
) -> Problem | None:
    statement = text(
        "SELECT audit_chain.seq, audit_chain.hash, audit_chain.entry_id, user_audit.id, "  # noqa: S608 (constants only)
        f"{chain.CANONICAL_ENTRY_SQL} AS canonical "
        "FROM audit_chain LEFT JOIN user_audit ON user_audit.id = audit_chain.entry_id "
        "ORDER BY audit_chain.seq"
    )
    stream = connection.execution_options(stream_results=True, yield_per=WALK_BATCH)
    expected_seq, previous = 1, GENESIS_HASH
    previous_entry_id: int | None = None
    checkpoint_hash: bytes | None = None
    link_hash, compare_digest = chain.link_hash, hmac.compare_digest  # hot loop
    for partition in stream.execute(statement).partitions(WALK_BATCH):
        for seq, stored, link_entry_id, entry_id, canonical in partition:
            if seq != expected_seq:
                return Problem(
                    f"link {expected_seq} is missing: the chain jumps from link "
                    f"{expected_seq - 1} (entry {previous_entry_id}) to link {seq} "
                    f"(entry {link_entry_id}): an entry and its link were deleted",
                    link_entry_id,
                    seq,
                )
            if entry_id is None:
                return Problem(
                    f"entry {link_entry_id} (link {seq}) is missing from the audit table",
                    link_entry_id,
                    seq,
                )
            if not compare_digest(link_hash(key, previous, seq, canonical), stored):
                return Problem(
                    f"entry {entry_id} (link {seq}) does not match its hash: the entry was "
                    "changed or moved, or the chain was re-hashed without the key",
                    entry_id,
                    seq,
                )
            if checkpoint is not None and seq == checkpoint.seq:
                checkpoint_hash = stored
            previous, previous_entry_id = stored, entry_id
            expected_seq += 1
        result.entries_checked += len(partition)
        if progress is not None:
            progress(len(partition))

    last = ChainHead(expected_seq - 1, previous)
    result.head = last
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
    if checkpoint is not None and checkpoint.seq > 0:
        if last.seq < checkpoint.seq:
            return Problem(
                f"the chain ends at link {last.seq}, before the checkpoint's link "
                f"{checkpoint.seq}: the newest {checkpoint.seq - last.seq} entries were removed",
                None,
                last.seq,
            )
        if checkpoint_hash != checkpoint.hash:
            return Problem(
                f"link {checkpoint.seq} differs from the checkpoint taken "
                f"{iso_utc(checkpoint.taken_at)}: the chain was rewritten since",
                None,
                checkpoint.seq,
            )
    return None


def _check_every_entry_is_chained(connection: Connection, result: Verification) -> Problem | None:
    entries = connection.execute(select(func.count()).select_from(UserAudit)).scalar_one()
    pending = connection.execute(select(func.count()).select_from(AuditChainPending)).scalar_one()
    if entries == result.head.seq + pending:
        return None
    stray = connection.execute(
        text(
            "SELECT a.id FROM user_audit a WHERE NOT EXISTS "
            "(SELECT 1 FROM audit_chain c WHERE c.entry_id = a.id) AND NOT EXISTS "
            "(SELECT 1 FROM audit_chain_pending p WHERE p.entry_id = a.id) "
            "ORDER BY a.id LIMIT 1"
        )
    ).scalar()
    if stray is None:  # counts moved under us: entries written during the walk
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
