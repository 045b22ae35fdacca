"""What the audit timeline shows: its filter as typed, activity, versions.

The timeline's query string is read here, not in the view, so the page, its
htmx fragments and the exports agree on what a filter means. Only data comes
out: the links and the chart's geometry are drawn by the web layer's
``timeline_presenters``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from webapp.audit.snapshot import SNAPSHOT_FIELDS
from webapp.extensions import db
from webapp.models import OPERATIONS, User, UserAudit
from webapp.services import audit_log
from webapp.services.audit_filter import FILTER_PARAMETERS, AuditFilter, parse_audit_filter
from webapp.services.errors import ValidationFailed
from webapp.services.users import get_user, list_users
from webapp.timestamps import UTC, parse_time_bound, utcnow
from webapp.typed_text import parse_whole_number

#: query-string names the timeline form uses, in the order links repeat them
FORM_FIELDS: tuple[str, ...] = tuple(p.form_name for p in FILTER_PARAMETERS if p.form_name)
#: more profiles than this matching a search are not all listed
USER_CHOICES_MAX = 20
#: the activity chart covers at most this many days (the latest of the filter)
CHART_DAYS = 90

# --- the timeline's filter ----------------------------------------------------


@dataclass(frozen=True)
class TimelineQuery:
    """The timeline's filter: as typed (for the form), as applied, and its problems."""

    #: what the form shows, name -> values
    values: dict[str, list[str]]
    #: the filter to apply; ``None`` when it is invalid or names no single profile
    audit_filter: AuditFilter | None
    #: form field name -> messages
    errors: dict[str, list[str]] = field(default_factory=dict)
    #: the text searched for in names and emails, if the user was given as text
    user_search: str | None = None
    #: the profiles that text matched (several: the reader picks one)
    user_matches: Sequence[User] = ()
    #: more profiles matched than are listed
    user_matches_truncated: bool = False
    #: the profile the filter is about, when it names one that exists
    user: User | None = None


def read_timeline_query(args: Mapping[str, list[str]]) -> TimelineQuery:
    """Read the timeline's query string (each name mapped to all its values).

    The user may be given as ``user_id`` (links) or ``user`` (the form): an id,
    or text searched for in names and emails, which must match one profile.
    Everything else is checked by ``parse_audit_filter``, whose
    messages are kept per field for the form.
    """
    values: dict[str, list[str]] = {
        name: [value.strip() for value in args.get(name, []) if value.strip()]
        for name in FORM_FIELDS
    }
    ids = [value.strip() for value in args.get("user_id", []) if value.strip()]
    if ids:
        values["user"] = ids
    errors: dict[str, list[str]] = {}

    user_id_values: list[str] = []
    user_search: str | None = None
    matches: Sequence[User] = ()
    truncated = False
    users = values["user"]
    if len(users) > 1:
        errors["user"] = ["may be given only once"]
    elif users:
        raw = users[0]
        if raw.isascii() and raw.isdigit():
            user_id_values = [raw]
        else:
            user_search = raw
            try:
                page = list_users(query=raw, include_deleted=True, limit=USER_CHOICES_MAX)
            except ValidationFailed as error:
                errors["user"] = [
                    message for messages in error.errors.values() for message in messages
                ]
            else:
                matches, truncated = page.items, page.next_cursor is not None
                if len(matches) == 1:
                    user_id_values = [str(matches[0].id)]

    audit_filter: AuditFilter | None = None
    try:
        audit_filter = parse_audit_filter(
            {
                **{p.name: values[p.form_name] for p in FILTER_PARAMETERS if p.form_name},
                "user_id": user_id_values,  # the form's text, resolved to one profile
            }
        )
    except ValidationFailed as error:
        for name, messages in error.errors.items():
            errors.setdefault("user" if name == "user_id" else name, []).extend(messages)
    if errors or (user_search is not None and len(matches) != 1):
        audit_filter = None

    user = None
    if audit_filter is not None and audit_filter.user_id is not None:
        user = db.session.get(User, audit_filter.user_id)
    return TimelineQuery(
        values=values,
        audit_filter=audit_filter,
        errors=errors,
        user_search=user_search,
        user_matches=matches,
        user_matches_truncated=truncated,
        user=user,
    )


# --- activity chart -------------------------------------------------------------


@dataclass(frozen=True)
class Activity:
    """Entries per day and operation over (the latest days of) a filter."""

    first_day: date
    last_day: date
    #: day -> operation -> count (days without entries are left out)
    counts: dict[date, dict[str, int]]
    totals: dict[str, int]
    busiest: int
    #: the filter covers more days than the chart shows
    clipped: bool

    @property
    def total(self) -> int:
        return sum(self.totals.values())

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1


def activity(audit_filter: AuditFilter, *, days: int = CHART_DAYS) -> Activity:
    """Count the filter's entries per UTC day and operation, with one GROUP BY.

    The chart ends at the filter's ``until`` (or today) and goes back at most
    ``days`` days, so a filter over years still draws a small picture.
    """
    today = utcnow().date()
    last_day = today
    if audit_filter.until is not None:
        last_day = min(
            today, (audit_filter.until - timedelta(microseconds=1)).astimezone(UTC).date()
        )
    try:
        first_day = last_day - timedelta(days=days - 1)
    except OverflowError:
        first_day = date.min
    clipped = True
    if audit_filter.since is not None:
        since_day = audit_filter.since.astimezone(UTC).date()
        if since_day >= first_day:
            first_day, clipped = min(since_day, last_day), False
    window_start = datetime.combine(first_day, datetime.min.time(), tzinfo=UTC)
    window_end = datetime.combine(last_day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)

    day = func.date_trunc("day", func.timezone("UTC", UserAudit.timestamp)).label("day")
    statement = (
        audit_log.filtered_statement(audit_filter)
        .with_only_columns(day, UserAudit.operation, func.count())
        .where(UserAudit.timestamp >= window_start, UserAudit.timestamp < window_end)
        .group_by(day, UserAudit.operation)
    )
    counts: dict[date, dict[str, int]] = {}
    totals = dict.fromkeys(OPERATIONS, 0)
    for moment, operation, count in db.session.execute(statement):
        counts.setdefault(moment.date(), {})[operation] = count
        totals[operation] = totals.get(operation, 0) + count
    busiest = max((sum(ops.values()) for ops in counts.values()), default=0)

    return Activity(
        first_day=first_day,
        last_day=last_day,
        counts=counts,
        totals=totals,
        busiest=busiest,
        clipped=clipped,
    )


# --- one profile's versions -------------------------------------------------------


@dataclass(frozen=True)
class VersionChoice:
    """A version of a profile, for choosing it in a form."""

    version: int
    operation: str
    timestamp: datetime


def _positive_int(raw: str | None, name: str, errors: dict[str, list[str]]) -> int | None:
    if raw is None or raw.strip() == "":
        return None
    number = parse_whole_number(raw)
    if number is None:
        errors.setdefault(name, []).append("must be a positive integer")
    return number


@dataclass(frozen=True)
class Comparison:
    """Two versions of one profile side by side."""

    user: User | None
    versions: list[VersionChoice]
    from_entry: UserAudit | None = None
    to_entry: UserAudit | None = None
    errors: dict[str, list[str]] = field(default_factory=dict)
    #: the raw values, for the form
    values: dict[str, str] = field(default_factory=dict)


def compare_versions(
    raw_user_id: str | None, raw_from: str | None, raw_to: str | None
) -> Comparison:
    """Compare two versions of a profile (the two latest when none are named).

    Problems with the input are returned in ``errors``; an unknown profile
    raises ``NotFound``.
    """
    errors: dict[str, list[str]] = {}
    values = {"user_id": raw_user_id or "", "from": raw_from or "", "to": raw_to or ""}
    user_id = _positive_int(raw_user_id, "user_id", errors)
    first = _positive_int(raw_from, "from", errors)
    second = _positive_int(raw_to, "to", errors)
    if user_id is None:
        if "user_id" not in errors and (first is not None or second is not None):
            errors["user_id"] = ["is required"]
        return Comparison(user=None, versions=[], errors=errors, values=values)
    user = get_user(user_id)
    entries = {
        entry.version: entry
        for entry in db.session.scalars(
            select(UserAudit).where(UserAudit.user_id == user_id).order_by(UserAudit.version)
        )
    }
    choices = [VersionChoice(e.version, e.operation, e.timestamp) for e in entries.values()]
    if errors:
        return Comparison(user=user, versions=choices, errors=errors, values=values)
    known = sorted(entries)
    if first is None and second is None and known:
        second = known[-1]
        first = known[-2] if len(known) > 1 else known[-1]
    elif first is None or second is None:
        missing = "from" if first is None else "to"
        errors[missing] = ["is required to compare two versions"]
    for name, version in (("from", first), ("to", second)):
        if version is not None and version not in entries:
            span = f"{known[0]} to {known[-1]}" if known else "none"
            errors.setdefault(name, []).append(
                f"is not a version of profile {user_id} (versions: {span})"
            )
    if errors or first is None or second is None:
        return Comparison(user=user, versions=choices, errors=errors, values=values)
    before, after = entries[first], entries[second]
    values.update({"from": str(first), "to": str(second)})
    return Comparison(
        user=user,
        versions=choices,
        from_entry=before,
        to_entry=after,
        values=values,
    )


@dataclass(frozen=True)
class AsOf:
    """A profile as it was at a moment: the latest entry at or before it."""

    user: User | None
    moment: datetime | None = None
    entry: UserAudit | None = None
    #: the profile's first entry, when the moment is before it
    created: UserAudit | None = None
    errors: dict[str, list[str]] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)

    @property
    def did_not_exist(self) -> bool:
        return self.moment is not None and self.entry is None

    @property
    def snapshot(self) -> list[tuple[str, Any]]:
        """The profile's fields at that moment, in snapshot order."""
        if self.entry is None:
            return []
        data = self.entry.new_data
        keys = [key for key in SNAPSHOT_FIELDS if key in data]
        keys += sorted(set(data) - set(SNAPSHOT_FIELDS))
        return [(key, data[key]) for key in keys]


def profile_as_of(raw_user_id: str | None, raw_at: str | None) -> AsOf:
    """The profile ``raw_user_id`` as it was at ``raw_at`` (a date means its end; none, now).

    Problems with the input are returned in ``errors``; an unknown profile
    raises ``NotFound``.
    """
    errors: dict[str, list[str]] = {}
    values = {"user_id": raw_user_id or "", "at": raw_at or ""}
    user_id = _positive_int(raw_user_id, "user_id", errors)
    bound = None
    if raw_at and raw_at.strip():
        try:
            # Exclusive bound just past the moment: "at or before" it, and a
            # bare date covers that whole day.
            bound = parse_time_bound(raw_at, end_of_day=True)
        except ValueError as error:
            errors["at"] = [str(error)]
    if user_id is None:
        if "user_id" not in errors and bound is not None:
            errors["user_id"] = ["is required"]
        return AsOf(user=None, errors=errors, values=values)
    user = get_user(user_id)
    if errors:
        return AsOf(user=user, errors=errors, values=values)
    if bound is None:
        # No moment named: the profile as it is now.
        bound = utcnow() + timedelta(microseconds=1)
    history = select(UserAudit).where(UserAudit.user_id == user_id)
    entry = db.session.scalar(
        history.where(UserAudit.timestamp < bound)
        .order_by(UserAudit.timestamp.desc(), UserAudit.id.desc())
        .limit(1)
    )
    moment = bound - timedelta(microseconds=1)
    if entry is None:
        created = db.session.scalar(history.order_by(UserAudit.timestamp, UserAudit.id).limit(1))
        return AsOf(user=user, moment=moment, created=created, values=values)
    return AsOf(user=user, moment=moment, entry=entry, values=values)
