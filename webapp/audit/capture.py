"""Session listeners that record every change of an audited profile.

``before_flush`` sees the objects about to be written and takes their old and
new snapshots; new rows have no primary key yet, so the entries are written in
``after_flush`` (ids and new versions known) with one executemany INSERT in the
flush's own transaction, then appended to the hash chain: the change, its
audit entry and its link commit together or not at all. ORM statements that
would bypass the unit of work are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, event, text
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from webapp.audit import chain
from webapp.audit.context import Origin, current_actor, current_change, current_origin
from webapp.audit.errors import AuditBypassError, HardDeleteRefused, UnattributedChangeError
from webapp.audit.session import AuditedSession, is_audited
from webapp.audit.snapshot import Snapshot, changed_fields, committed_snapshot, current_snapshot
from webapp.models import User

_PENDING = "audit.pending_entries"
# Transaction-local settings the safety-net trigger reads: "capturing" while
# this flush writes (chain.append lowers it again), and who is acting, which it
# records for any write of the transaction that bypasses the flush.
_CAPTURING_ON = text(
    "SELECT set_config('profile_audit.capturing', 'on', true), "
    "set_config('profile_audit.actor', :actor, true)"
)
# Code that acts without saying from where (a shell, a script) counts as CLI.
_UNKNOWN_ORIGIN = Origin(channel="cli")


@dataclass
class PendingEntry:
    """An audit entry whose profile id and version are known only after the flush."""

    user: User
    operation: str
    previous_data: Snapshot | None
    new_data: Snapshot
    changed_fields: list[str]


def operation_for(previous: Snapshot, new: Snapshot) -> str:
    """Name the change between two snapshots of an existing profile."""
    if previous["deleted_at"] is None and new["deleted_at"] is not None:
        return "delete"
    if previous["deleted_at"] is not None and new["deleted_at"] is None:
        return "restore"
    return "update"


@event.listens_for(AuditedSession, "before_flush")
def collect_changes(session: Session, flush_context: UOWTransaction, instances: Any) -> None:
    """Snapshot every created or changed profile before the flush writes it."""
    for obj in session.deleted:
        if is_audited(obj):
            raise HardDeleteRefused(
                f"{type(obj).__name__} {obj!r} cannot be deleted: profiles are "
                "soft-deleted (deleted_at) so that their history stays whole."
            )

    pending: list[PendingEntry] = []
    for obj in session.new:
        if isinstance(obj, User):
            new = current_snapshot(obj)
            pending.append(PendingEntry(obj, "create", None, new, changed_fields(None, new)))
    for obj in session.dirty:
        if not isinstance(obj, User) or not session.is_modified(obj):
            continue
        previous = committed_snapshot(obj)
        new = current_snapshot(obj)
        fields = changed_fields(previous, new)
        if fields:  # a save that changes nothing leaves no trace
            pending.append(PendingEntry(obj, operation_for(previous, new), previous, new, fields))
    actor = current_actor()
    if pending and actor is None:
        raise UnattributedChangeError(
            "Refusing to change profiles with no actor: bind one with "
            "webapp.audit.context.acting_as(...) (requests and CLI commands do)."
        )
    if pending and actor is not None:
        # The safety-net trigger leaves this flush's writes to us.
        session.connection().execute(_CAPTURING_ON, {"actor": actor.label})
    session.info[_PENDING] = pending


@event.listens_for(AuditedSession, "after_flush")
def write_entries(session: Session, flush_context: UOWTransaction) -> None:
    """Insert the entries collected for this flush, now that ids and versions exist."""
    pending: list[PendingEntry] = session.info.pop(_PENDING, [])
    if not pending:
        return
    actor = current_actor()
    assert actor is not None  # collect_changes refused the flush otherwise
    origin = current_origin() or _UNKNOWN_ORIGIN
    reason = current_change().reason
    rows = [
        {
            "user_id": entry.user.id,
            "operation": entry.operation,
            "previous_data": entry.previous_data,
            "new_data": entry.new_data,
            "changed_fields": entry.changed_fields,
            "version": entry.user.version,
            "reason": reason,
            "actor_id": actor.staff_id,
            "actor_label": actor.label,
            "channel": origin.channel,
            "channel_detail": actor.channel_detail,
            "remote_addr": origin.remote_addr,
            "request_id": origin.request_id,
            "token_id": actor.token_id,
            "client_request_id": origin.client_request_id,
        }
        for entry in pending
    ]
    record_entries(session.connection(), session.audit_chain_key, rows)


def record_entries(connection: Connection, key: bytes, rows: list[dict[str, Any]]) -> None:
    """Insert the flush's entries and link them into the hash chain.

    A seam of its own so that the chain's benchmark can measure the write
    without the chain.
    """
    chain.write_entries(connection, key, rows)


@event.listens_for(AuditedSession, "after_rollback")
def forget_pending(session: Session) -> None:
    """Drop entries of a flush that failed, so they never leak into the next one."""
    session.info.pop(_PENDING, None)


@event.listens_for(AuditedSession, "do_orm_execute")
def refuse_bulk_writes(orm_execute_state: ORMExecuteState) -> None:
    """Refuse ORM-enabled INSERT/UPDATE/DELETE statements on audited models.

    They run without the unit of work, so no snapshot could be taken; refusing
    them is safer than guessing what they changed.
    """
    state = orm_execute_state
    if not (state.is_insert or state.is_update or state.is_delete):
        return
    for mapper in state.all_mappers:
        if is_audited(mapper):
            kind = "INSERT" if state.is_insert else "UPDATE" if state.is_update else "DELETE"
            raise AuditBypassError(
                f"Bulk {kind} on {mapper.class_.__name__} would bypass the audit log; "
                "change profiles through the service functions instead."
            )
