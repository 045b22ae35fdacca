"""Reading the audit log: filters, keyset pages, a profile's history."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Row, Select, func, select, tuple_
from sqlalchemy.orm import joinedload, lazyload

from webapp.audit.snapshot import SNAPSHOT_FIELDS
from webapp.extensions import db
from webapp.models import OPERATIONS, ApiToken, Staff, UserAudit
from webapp.services.errors import ValidationFailed
from webapp.services.pagination import (
    Page,
    decode_time_id_cursor,
    encode_time_id_cursor,
)
from webapp.services.users import get_user
from webapp.timestamps import parse_time_bound
from webapp.typed_text import parse_flag, parse_whole_number

# An entry as an ORM object or as a row of its columns: both have .timestamp and .id.
_Entry = TypeVar("_Entry", UserAudit, Row[Any])


@dataclass(frozen=True)
class AuditFilter:
    """Which entries to show. ``until`` is exclusive (already moved past the bound)."""

    user_id: int | None = None
    operations: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    fields: tuple[str, ...] = ()
    #: a staff id, or a label (a username, or e.g. ``cli:root``)
    actor_id: int | None = None
    actor_label: str | None = None
    #: only the changes that bypassed the application (True), or no such filter
    unattributed: bool | None = None


def parse_audit_filter(args: Mapping[str, list[str]]) -> AuditFilter:
    """Build a filter from query-string values (each name maps to all its values).

    Accepts ``user_id``, ``operation`` (repeatable or comma-separated),
    ``since``/``until`` (ISO 8601 dates or datetimes; a date ``until`` covers
    that whole day), ``field`` (repeatable: entries that changed any of them)
    and ``actor`` (a staff id or a username / actor label).
    """
    errors: dict[str, list[str]] = {}

    user_id = None
    raw_user = _single(args, "user_id", errors)
    if raw_user:
        user_id = parse_whole_number(raw_user)
        if user_id is None:
            errors.setdefault("user_id", []).append("must be a positive integer")

    operations = _choices(args.get("operation", []), OPERATIONS, "operation", errors)
    fields = _choices(args.get("field", []), SNAPSHOT_FIELDS, "field", errors)

    actor_id, actor_label = None, None
    raw_actor = _single(args, "actor", errors)
    if raw_actor:
        if raw_actor.isascii() and raw_actor.isdigit():
            actor_id = parse_whole_number(raw_actor)
            if actor_id is None:
                errors.setdefault("actor", []).append("is not a valid staff id")
        elif len(raw_actor) <= 100 and raw_actor.isprintable():
            actor_label = raw_actor
        else:
            errors.setdefault("actor", []).append(
                "must be a staff id or a username of at most 100 characters"
            )

    flag = parse_flag(_single(args, "unattributed", errors), default=False)
    if flag is None:
        errors.setdefault("unattributed", []).append("must be true or false")
    # Only true filters; false (or nothing) asks for every entry.
    unattributed = True if flag else None

    since = _bound(args, "since", end_of_day=False, errors=errors)
    until = _bound(args, "until", end_of_day=True, errors=errors)
    if since and until and since >= until:
        errors.setdefault("until", []).append("must be later than since")

    if errors:
        raise ValidationFailed.of_fields(errors)
    return AuditFilter(
        user_id=user_id,
        operations=operations,
        since=since,
        until=until,
        fields=fields,
        actor_id=actor_id,
        actor_label=actor_label,
        unattributed=unattributed,
    )


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
) -> Page[Row[Any]]:
    """The same page as ``list_entries``, as plain rows of the entries' columns
    (and ``token_name``, ``token_created_by_id``, ``token_created_by``).

    For reading every entry (exports): building, instrumenting and tracking an
    ORM object per entry cost about a third of an export's time.
    """
    statement = _page_statement(audit_filter, limit=limit, cursor=cursor)
    columns = statement.with_only_columns(
        *UserAudit.__table__.columns,
        ApiToken.name.label("token_name"),
        ApiToken.created_by_id.label("token_created_by_id"),
        ApiToken.created_by_label.label("token_created_by"),
    ).outerjoin(ApiToken, ApiToken.id == UserAudit.token_id)
    rows = list(db.session.execute(columns))
    return _page(rows, limit)


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


def _single(args: Mapping[str, list[str]], name: str, errors: dict[str, list[str]]) -> str | None:
    values = args.get(name, [])
    if len(values) > 1:
        errors.setdefault(name, []).append("may be given only once")
        return None
    return values[0].strip() if values else None


def _choices(
    raw_values: Iterable[str], allowed: tuple[str, ...], name: str, errors: dict[str, list[str]]
) -> tuple[str, ...]:
    chosen: list[str] = []
    for raw in raw_values:
        for value in (part.strip() for part in raw.split(",")):
            if value not in allowed:
                errors.setdefault(name, []).append(f"must be one of {', '.join(allowed)}")
            elif value not in chosen:
                chosen.append(value)
    return tuple(chosen)


def _bound(
    args: Mapping[str, list[str]], name: str, *, end_of_day: bool, errors: dict[str, list[str]]
) -> datetime | None:
    raw = _single(args, name, errors)
    if not raw:
        return None
    try:
        bound = parse_time_bound(raw, end_of_day=end_of_day)
    except ValueError as error:
        errors.setdefault(name, []).append(str(error))
        return None
    return bound
