"""A simulation of the previous design's audited save: every writer queues on one row lock.

Until entries carried seals, an audited save sent, besides the profile's own
statements:

1. ``SELECT set_config('profile_audit.capturing', 'on', true),
   set_config('profile_audit.actor', ...)`` before the flush, so that the
   row trigger on ``users`` (the safety net) stood aside;
2. the entry INSERT, whose CTE locked the single chain-head row
   ``FOR UPDATE`` (and turned the flag off again), returning the entry's
   canonical bytes and the head;
3. one statement inserting the links and moving the head.

The head stayed locked until COMMIT, so all audited writes serialized on it.
This module replays those statements, built as the application built them, on
scratch tables of its own (``head_lock_*`` copies of the audit tables and
``users_head_lock``, with the old row trigger), so that the real chain is never
touched. The snapshots are taken by the application's own functions. It is a
simulation of the statements, not the old code: the benchmarks label it so.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from flask import current_app
from flask_sqlalchemy.session import Session as FlaskSession
from sqlalchemy import (
    Connection,
    MetaData,
    event,
    func,
    insert,
    inspect,
    literal_column,
    select,
    table,
    text,
)
from sqlalchemy.orm import Session, UOWTransaction

from webapp.audit.capture import operation_for
from webapp.audit.chain import CANONICAL_ENTRY_V1_AS_LINKED_SQL, link_hash
from webapp.audit.context import current_actor, current_change, current_origin
from webapp.audit.snapshot import changed_fields, committed_snapshot, current_snapshot
from webapp.models import UserAudit

#: The profiles' table of the simulation.
PROFILES = "users_head_lock"
ENTRIES = "head_lock_audit"
LINKS = "head_lock_chain"
HEAD = "head_lock_chain_head"
PENDING = "head_lock_chain_pending"


def _revision_0006_safety_net() -> str:
    """Revision 0006's safety-net function, read from that migration itself."""
    path = Path(__file__).resolve().parent.parent / "migrations" / "versions"
    spec = importlib.util.spec_from_file_location(
        "revision_0006", path / "0006_audit_hash_chain.py"
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.SAFETY_NET_WITH_ATTRIBUTION


#: The previous safety net (revision 0006's), pointed at the scratch tables.
_SAFETY_NET = (
    _revision_0006_safety_net()
    .replace(
        "CREATE OR REPLACE FUNCTION users_audit_safety_net()",
        f"CREATE FUNCTION {PROFILES}_safety_net()",
    )
    .replace("INSERT INTO user_audit", f"INSERT INTO {ENTRIES}")
    .replace("INSERT INTO audit_chain_pending", f"INSERT INTO {PENDING}")
)

#: The scratch tables: copies of today's (LIKE ... INCLUDING ALL), minus what the
#: previous design did not have (the seal's index for the safety net at COMMIT).
SETUP_SQL: list[str] = [
    f"CREATE TABLE {PROFILES} (LIKE users INCLUDING ALL)",
    f"CREATE TABLE {ENTRIES} (LIKE user_audit INCLUDING ALL)",
    f"ALTER TABLE {ENTRIES} ADD FOREIGN KEY (user_id) REFERENCES {PROFILES} (id) "
    "ON DELETE RESTRICT, ADD FOREIGN KEY (actor_id) REFERENCES staff (id) ON DELETE RESTRICT",
    f"CREATE TABLE {LINKS} (LIKE audit_chain INCLUDING ALL)",
    f"ALTER TABLE {LINKS} ADD FOREIGN KEY (entry_id) REFERENCES {ENTRIES} (id) ON DELETE RESTRICT",
    f"CREATE TABLE {HEAD} (LIKE audit_chain_head INCLUDING ALL)",
    f"INSERT INTO {HEAD} (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'))",
    f"CREATE TABLE {PENDING} (LIKE audit_chain_pending INCLUDING ALL)",
    f"ALTER TABLE {PENDING} ADD FOREIGN KEY (entry_id) REFERENCES {ENTRIES} (id) "
    "ON DELETE RESTRICT",
    # profile_snapshot() takes a users row; the copy's rows are of another type.
    f"""CREATE FUNCTION profile_snapshot(profile {PROFILES}) RETURNS jsonb
    LANGUAGE sql STABLE AS $$
        SELECT jsonb_build_object(
            'name', profile.name,
            'email', profile.email,
            'deleted_at', to_char(profile.deleted_at AT TIME ZONE 'UTC',
                                  'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        )
    $$""",
    _SAFETY_NET,
    f"CREATE TRIGGER {PROFILES}_safety_net AFTER INSERT OR UPDATE ON {PROFILES} "
    f"FOR EACH ROW EXECUTE FUNCTION {PROFILES}_safety_net()",
]


def setup(connection: Connection) -> None:
    """Create the scratch tables, functions and trigger of the simulation."""
    for statement in SETUP_SQL:
        connection.execute(text(statement))
    # Today's safety net looks its entries up by (user_id, version) at COMMIT;
    # the previous design had no such index.
    for (name,) in connection.execute(
        text("SELECT indexname FROM pg_indexes WHERE tablename = :t AND indexdef LIKE :d"),
        {"t": ENTRIES, "d": "%(user_id, version)"},
    ):
        connection.execute(text(f'DROP INDEX "{name}"'))


class HeadLockSession(FlaskSession):
    """Sessions whose flushes write entries the previous way (listeners below)."""


_CAPTURING_ON = text(
    "SELECT set_config('profile_audit.capturing', 'on', true), "
    "set_config('profile_audit.actor', :actor, true)"
)
_PENDING_KEY = "head_lock.pending_entries"


def _insert_entries() -> Any:
    """The previous design's INSERT: the head locked in a CTE, read back with the rows."""
    entries = UserAudit.__table__.to_metadata(MetaData(), name=ENTRIES)
    head = (
        select(
            literal_column("seq").label("seq"),
            literal_column("hash").label("hash"),
            literal_column(f"EXISTS (SELECT 1 FROM {PENDING})").label("has_pending"),
            func.set_config("profile_audit.capturing", "off", True).label("capturing"),
        )
        .select_from(table(HEAD))
        .where(literal_column("id") == 1)
        .with_for_update()
        .cte("chain_head")
    )
    # The previous design's canonical bytes (today's links of encoding 1), of this table.
    canonical = CANONICAL_ENTRY_V1_AS_LINKED_SQL.replace("user_audit.", f"{ENTRIES}.")
    return (
        insert(entries)
        .add_cte(head)
        .returning(
            entries.c.id,
            literal_column(canonical).label("canonical"),
            select(head.c.seq).scalar_subquery().label("head_seq"),
            select(head.c.hash).scalar_subquery().label("head_hash"),
            select(head.c.has_pending).scalar_subquery().label("has_pending"),
        )
    )


_INSERT_ENTRIES = _insert_entries()
_APPEND = text(
    f"WITH links AS (INSERT INTO {LINKS} (seq, entry_id, hash, encoding) "
    "SELECT seq, entry_id, hash, 1 FROM unnest(CAST(:seqs AS bigint[]), "
    "CAST(:entry_ids AS bigint[]), CAST(:hashes AS bytea[])) AS l(seq, entry_id, hash)) "
    f"UPDATE {HEAD} SET seq = :seq, hash = :hash WHERE id = 1"
)


def collect_changes(session: Session, flush_context: UOWTransaction, instances: Any) -> None:
    """Snapshot created and changed profiles, then raise the "capturing" flag."""
    pending: list[tuple[Any, str, Any, Any]] = []
    for obj in session.new:
        new = current_snapshot(obj)
        pending.append((obj, "create", None, new))
    for obj in session.dirty:
        if not session.is_modified(obj):
            continue
        previous, new = committed_snapshot(obj), current_snapshot(obj)
        if changed_fields(previous, new):
            pending.append((obj, operation_for(obj, previous, new), previous, new))
    if pending:
        actor = current_actor()
        connection = _connection_of(session, pending[0][0])
        connection.execute(_CAPTURING_ON, {"actor": actor.label if actor else None})
    session.info[_PENDING_KEY] = pending


def write_entries(session: Session, flush_context: UOWTransaction) -> None:
    """The entry INSERT with the head lock, then the links and the new head."""
    pending = session.info.pop(_PENDING_KEY, [])
    if not pending:
        return
    actor = current_actor()
    origin = current_origin()
    reason = current_change().reason
    rows = [
        {
            "user_id": obj.id,
            "operation": operation,
            "previous_data": previous,
            "new_data": new,
            "changed_fields": changed_fields(previous, new),
            "version": obj.version,
            "reason": reason,
            "actor_id": actor.staff_id if actor else None,
            "actor_label": actor.label if actor else None,
            "channel": origin.channel if origin else "cli",
            "channel_detail": actor.channel_detail if actor else None,
            "remote_addr": origin.remote_addr if origin else None,
            "request_id": origin.request_id if origin else None,
        }
        for obj, operation, previous, new in pending
    ]
    connection = _connection_of(session, pending[0][0])
    written = connection.execute(_INSERT_ENTRIES, rows).all()
    first = written[0]
    seq, previous_hash = first.head_seq, bytes(first.head_hash)
    seqs: list[int] = []
    entry_ids: list[int] = []
    hashes: list[bytes] = []
    for row in sorted(written, key=lambda row: row.id):
        seq += 1
        previous_hash = link_hash(session_key(session), previous_hash, seq, bytes(row.canonical))
        seqs.append(seq)
        entry_ids.append(row.id)
        hashes.append(previous_hash)
    connection.execute(
        _APPEND,
        {"seqs": seqs, "entry_ids": entry_ids, "hashes": hashes, "seq": seq, "hash": previous_hash},
    )


def _connection_of(session: Session, obj: Any) -> Connection:
    """The connection the flush writes ``obj``'s table on (its bind key's engine)."""
    return session.connection(bind_arguments={"mapper": inspect(obj).mapper})


def session_key(session: Session) -> bytes:
    """The chain key, as the application's sessions have it."""
    return current_app.config["AUDIT_CHAIN_KEY"].encode()


def forget_pending(session: Session) -> None:
    """Drop the snapshots of a flush that failed."""
    session.info.pop(_PENDING_KEY, None)


def install_listeners() -> None:
    """Attach the previous design's flush listeners to ``HeadLockSession`` (once)."""
    if event.contains(HeadLockSession, "before_flush", collect_changes):
        return
    event.listen(HeadLockSession, "before_flush", collect_changes)
    event.listen(HeadLockSession, "after_flush", write_entries)
    event.listen(HeadLockSession, "after_rollback", forget_pending)
