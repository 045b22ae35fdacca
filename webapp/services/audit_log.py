"""Reading the audit log: filtered keyset pages, a profile's history.

The filter itself (``AuditFilter``, ``parse_audit_filter``) is declared in
``webapp.services.audit_filter``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import SimpleNamespace
from typing import Any, TypeVar

from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.orm import joinedload, lazyload

from webapp.audit.personal_data import KeyProvider, key_provider, reveal_row
from webapp.extensions import db
from webapp.models import ApiToken, ProfileDataKey, Staff, UserAudit
from webapp.services.audit_filter import AuditFilter
from webapp.services.pagination import (
    Page,
    decode_time_id_cursor,
    encode_time_id_cursor,
)
from webapp.services.users import get_user

# An entry as an ORM object or as a row of its columns: both have .timestamp and .id.
_Entry = TypeVar("_Entry", UserAudit, SimpleNamespace)


def list_entries(
    audit_filter: AuditFilter, *, limit: int, cursor: str | None = None
) -> Page[UserAudit]:
    """Entries matching ``audit_filter``, newest first, one keyset page.

    Each with the API token it came through (name, creator), in the same query.
    """
    statement = _page_statement(audit_filter, limit=limit, cursor=cursor).options(
        joinedload(UserAudit.token).options(lazyload(ApiToken.staff))
    )
    rows = list(db.session.scalars(statement))
    return _page(rows, limit)


def list_entry_rows(
    audit_filter: AuditFilter, *, limit: int, cursor: str | None = None
) -> Page[SimpleNamespace]:
    """The same page as ``list_entries``, as plain records of the entries' columns
    (and ``token_name``, ``token_created_by_id``, ``token_created_by``), personal
    values decrypted.

    Building, instrumenting and tracking an ORM object per entry cost about a
    third of the time of reading many entries.
    """
    statement = _page_statement(audit_filter, limit=limit, cursor=cursor)
    columns = (
        statement.with_only_columns(
            *UserAudit.__table__.columns,
            ApiToken.name.label("token_name"),
            ApiToken.created_by_id.label("token_created_by_id"),
            ApiToken.created_by_label.label("token_created_by"),
            ProfileDataKey.master_key_id.label("key_id"),
            ProfileDataKey.wrapped_key,
            ProfileDataKey.erased_at.label("key_erased_at"),
        )
        .outerjoin(ApiToken, ApiToken.id == UserAudit.token_id)
        .outerjoin(ProfileDataKey, ProfileDataKey.user_id == UserAudit.user_id)
    )
    provider = key_provider()
    rows = [_revealed(row._mapping, provider) for row in db.session.execute(columns)]
    return _page(rows, limit)


def _revealed(row: Mapping[str, Any], provider: KeyProvider) -> SimpleNamespace:
    """An entry's columns, as attributes, with its snapshots as readers see them."""
    entry = SimpleNamespace(**row)
    entry.previous_data, entry.new_data = reveal_row(row, provider)
    return entry


def _page(rows: list[_Entry], limit: int) -> Page[_Entry]:
    """The first ``limit`` of ``limit + 1`` rows, and a cursor when there were more."""
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_time_id_cursor(last.timestamp, last.id)
    return Page(items=rows[:limit], next_cursor=next_cursor)


def _page_statement(
    audit_filter: AuditFilter, *, limit: int, cursor: str | None
) -> Select[tuple[UserAudit]]:
    """One keyset page of entries, newest first, with one more to tell if another follows."""
    after = decode_time_id_cursor(cursor) if cursor else None
    if after is not None and audit_filter.until is not None and after[0] < audit_filter.until:
        # The cursor is then the tighter upper bound. With both, the backward
        # index scan starts at ``until`` and walks down to the cursor, a cost
        # that grows with page depth (measured in bench/README.md).
        audit_filter = replace(audit_filter, until=None)
    statement = filtered_statement(audit_filter)
    if after is not None:
        statement = statement.where(tuple_(UserAudit.timestamp, UserAudit.id) < tuple_(*after))
    return statement.order_by(UserAudit.timestamp.desc(), UserAudit.id.desc()).limit(limit + 1)


def user_history(user_id: int, *, limit: int, cursor: str | None = None) -> Page[UserAudit]:
    """One profile's entries, newest first; ``NotFound`` for an unknown profile."""
    get_user(user_id)
    return list_entries(AuditFilter(user_id=user_id), limit=limit, cursor=cursor)


def filtered_statement(audit_filter: AuditFilter) -> Select[tuple[UserAudit]]:
    """The entries ``audit_filter`` selects, unordered and unpaged: the one
    definition of the filter that the timeline, its chart and exports share."""
    return _filtered(resolve_actor(audit_filter))


def _filtered(audit_filter: AuditFilter) -> Select[tuple[UserAudit]]:
    statement = select(UserAudit)
    if audit_filter.user_id is not None:
        statement = statement.where(UserAudit.user_id == audit_filter.user_id)
    if audit_filter.operations:
        statement = statement.where(UserAudit.operation.in_(audit_filter.operations))
    if audit_filter.since is not None:
        statement = statement.where(UserAudit.timestamp >= audit_filter.since)
    if audit_filter.until is not None:
        statement = statement.where(UserAudit.timestamp < audit_filter.until)
    if audit_filter.unattributed:
        # The bare column, as the partial index's predicate says it: PostgreSQL
        # cannot prove "unattributed IS true" implies it and would scan the table.
        statement = statement.where(UserAudit.unattributed)
    if audit_filter.actor_id is not None:
        statement = statement.where(UserAudit.actor_id == audit_filter.actor_id)
    elif audit_filter.actor_label is not None:
        statement = statement.where(
            func.lower(UserAudit.actor_label) == audit_filter.actor_label.lower()
        )
    if audit_filter.fields:
        statement = statement.where(UserAudit.changed_fields.overlap(list(audit_filter.fields)))
    if audit_filter.request_id is not None:
        statement = statement.where(UserAudit.request_id == audit_filter.request_id)
    return statement


def resolve_actor(audit_filter: AuditFilter) -> AuditFilter:
    """The filter with an account's username replaced by the account's id, which is indexed.

    Reading many pages of one filter (an export), resolve it once first: each
    page's statement would otherwise look the username up again.
    """
    if audit_filter.actor_label is None:
        return audit_filter
    staff_id = db.session.scalar(
        select(Staff.id).where(func.lower(Staff.username) == audit_filter.actor_label.lower())
    )
    if staff_id is None:
        return audit_filter
    return replace(audit_filter, actor_id=staff_id, actor_label=None)
