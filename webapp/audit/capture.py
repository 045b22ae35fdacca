"""Session listeners that record every change of an audited profile.

``before_flush`` sees the objects about to be written and takes their old and
new snapshots; new rows have no primary key yet, so the entries are written in
``after_flush`` (ids and new versions known) with one INSERT in the flush's
own transaction, each entry carrying its seal: the change, its entry and the
seal commit together or not at all. The entries are linked into the hash chain
after COMMIT (``after_commit`` wakes the sealer). ORM statements that would
bypass the unit of work are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app
from sqlalchemy import Connection, event
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from webapp.audit import chain
from webapp.audit.context import Origin, current_actor, current_change, current_origin
from webapp.audit.entry_ids import entry_ids
from webapp.audit.errors import (
    AuditBypassError,
    ErasedProfileChange,
    HardDeleteRefused,
    UnattributedChangeError,
)
from webapp.audit.personal_data import cipher_of, email_index, encrypt_snapshot, new_wrapped_key
from webapp.audit.seal import canonical_entry, seal_of
from webapp.audit.session import AuditedSession, is_audited
from webapp.audit.snapshot import Snapshot, changed_fields, committed_snapshot, current_snapshot
from webapp.models import User
from webapp.timestamps import utcnow

_PENDING = "audit.pending_entries"
# Set once a transaction wrote entries: its COMMIT wakes the sealer.
_WROTE_ENTRIES = "audit.wrote_entries"
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
    #: the profile's data key, which encrypts the entry's personal values
    cipher: AESGCM
    #: the wrapped key to insert with the entry, for a profile that has none yet
    new_key: dict[str, Any] | None = None


def operation_for(user: User, previous: Snapshot, new: Snapshot) -> str:
    """Name the change between two snapshots of an existing profile."""
    if user.erased_at is not None:
        return "erase"
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
            obj.email_index = email_index(obj.email)
            cipher, new_key = _new_key()
            pending.append(
                PendingEntry(obj, "create", None, new, changed_fields(None, new), cipher, new_key)
            )
    for obj in session.dirty:
        if not isinstance(obj, User) or not session.is_modified(obj):
            continue
        previous = committed_snapshot(obj)
        new = current_snapshot(obj)
        fields = changed_fields(previous, new)
        if fields:  # a save that changes nothing leaves no trace
            if previous["email"] != new["email"]:
                obj.email_index = email_index(obj.email)
            operation = operation_for(obj, previous, new)
            pending.append(PendingEntry(obj, operation, previous, new, fields, *_cipher(obj)))
    actor = current_actor()
    if pending and actor is None:
        raise UnattributedChangeError(
            "Refusing to change profiles with no actor: bind one with "
            "webapp.audit.context.acting_as(...) (requests and CLI commands do)."
        )
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
    connection = session.connection()
    ids = entry_ids.take(connection, len(pending))
    rows = [
        {
            "id": entry_id,
            "timestamp": utcnow(),
            "user_id": entry.user.id,
            "operation": entry.operation,
            "previous_data": (
                None
                if entry.previous_data is None
                else encrypt_snapshot(
                    entry.cipher, entry_id, entry.user.id, "previous", entry.previous_data
                )
            ),
            "new_data": encrypt_snapshot(
                entry.cipher, entry_id, entry.user.id, "new", entry.new_data
            ),
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
        for entry_id, entry in zip(ids, pending, strict=True)
    ]
    new_keys = [{"user_id": entry.user.id, **entry.new_key} for entry in pending if entry.new_key]
    record_entries(connection, session.audit_chain_key, rows, new_keys)
    for entry in pending:
        # A profile that was read without a key: read the new one when next needed.
        if entry.new_key and entry.operation != "create":
            session.expire(entry.user, ["data_key"])
    session.info[_WROTE_ENTRIES] = True


def _new_key() -> tuple[AESGCM, dict[str, Any]]:
    """A new profile's data key, and its row, inserted with the profile's entry."""
    cipher, row = new_wrapped_key()
    return cipher, {"master_key_id": row.master_key_id, "wrapped_key": row.wrapped_key}


def _cipher(user: User) -> tuple[AESGCM, dict[str, Any] | None]:
    """The data key of ``user`` (and its row when it is new): a profile without
    one (made before keys existed, or around the application) gets one here."""
    data_key = user.data_key
    if data_key is None:
        return _new_key()
    cipher = cipher_of(data_key.master_key_id, data_key.wrapped_key)
    if cipher is None:
        raise ErasedProfileChange(
            f"Profile {user.id} was erased: its key is destroyed and it cannot be changed."
        )
    return cipher, None


def record_entries(
    connection: Connection,
    key: bytes,
    rows: list[dict[str, Any]],
    new_keys: list[dict[str, Any]] | None = None,
) -> None:
    """Seal the flush's entries and insert them (the database queues them for
    linking), with the data keys of profiles that had none."""
    for row in rows:
        row["unattributed"] = False
        row["seal"] = seal_of(key, canonical_entry(row))
    chain.write_entries(connection, rows, new_keys)


@event.listens_for(AuditedSession, "after_commit")
def wake_sealer(session: Session) -> None:
    """Entries were committed: have them linked soon, outside this transaction."""
    if session.info.pop(_WROTE_ENTRIES, False):
        sealer = current_app.extensions.get("audit_sealer")
        if sealer is not None:
            sealer.notify()


@event.listens_for(AuditedSession, "after_rollback")
def forget_pending(session: Session) -> None:
    """Drop entries of a flush that failed, so they never leak into the next one."""
    session.info.pop(_PENDING, None)
    session.info.pop(_WROTE_ENTRIES, None)


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
