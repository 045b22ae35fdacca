"""Timezone-aware UTC time: the one clock and the one text format of the app."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def iso_utc(value: datetime | None) -> str | None:
    """Format ``value`` as ISO 8601 in UTC with a ``Z`` suffix (``None`` stays ``None``)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso_datetime(text: str) -> datetime:
    """Parse an ISO 8601 datetime; a value without offset is taken as UTC.

    Raises ``ValueError`` with a readable message for anything else.
    """
    candidate = text.strip()
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        raise ValueError(
            "must be an ISO 8601 date (2026-01-31) or datetime (2026-01-31T12:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the supported range of dates") from None


def parse_time_bound(text: str, *, end_of_day: bool) -> datetime:
    """Parse a filter bound given as a date or a datetime.

    Without ``end_of_day`` the result is an inclusive lower bound: a bare date
    means the start of that UTC day. With it, the result is an exclusive upper
    bound that still includes what was named: the next day's start for a date
    (``until=2026-01-31`` covers all of the 31st), one microsecond (PostgreSQL's
    resolution) past a datetime.
    """
    candidate = text.strip()
    if _DATE_ONLY.match(candidate):
        try:
            day = date.fromisoformat(candidate)
        except ValueError:
            raise ValueError("is not a valid calendar date") from None
        start = datetime.combine(day, time.min, tzinfo=UTC)
        if not end_of_day:
            return start
        try:
            return start + timedelta(days=1)
        except OverflowError:
            raise ValueError("is outside the supported range of dates") from None
    moment = parse_iso_datetime(candidate)
    if not end_of_day:
        return moment
    try:
        return moment + timedelta(microseconds=1)
    except OverflowError:
        raise ValueError("is outside the supported range of dates") from None
