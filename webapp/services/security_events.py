"""Security events: sign-ins, account and token changes, refusals, exports.

Each event is a row in ``security_events`` (append-only) and a log line.
Neither ever holds a password or a token.

Some events anyone can cause as often as they like: a script sending bad
tokens from one address wrote hundreds of rows a second, pushing every real
event off the page. Those (``REPEATED_EVENTS``) are stored once per kind,
address and account in each ``REPEAT_WINDOW``: the first occurrence is a row
like any other, and the repeats only count up in its ``security_event_repeats``
row (how many, first and last seen). Every occurrence is still logged.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, Select, bindparam, func, insert, select, text, tuple_
from sqlalchemy.dialects.postgresql import JSONB

from webapp.audit.context import current_actor, current_origin
from webapp.extensions import db
from webapp.models import SecurityEvent, SecurityEventRepeat
from webapp.services.errors import ValidationFailed
from webapp.services.pagination import Page, decode_time_id_cursor, encode_time_id_cursor
from webapp.services.spreadsheet_cells import csv_stream, json_cell, neutralise
from webapp.timestamps import iso_utc, parse_time_bound

log = logging.getLogger("profile_audit.security")

# Every event the app records, with how people read it; record_event refuses
# any other name.
EVENT_LABELS: dict[str, str] = {
    "login_succeeded": "Signed in",
    "login_failed": "Sign-in failed",
    "login_throttled": "Sign-in refused: too many failures",
    "logout": "Signed out",
    "session_expired": "Session expired",
    "staff_created": "Account created",
    "role_changed": "Role changed",
    "password_changed": "Password changed",
    "staff_deactivated": "Account deactivated",
    "staff_reactivated": "Account reactivated",
    "token_created": "API token created",
    "token_revoked": "API token revoked",
    "token_rejected": "API token refused",
    "csrf_failed": "Form refused: CSRF check failed",
    "forbidden": "Refused: role lacks the permission",
    "audit_exported": "Audit log exported",
    "security_events_exported": "Security events exported",
    "personal_data_exported": "A profile's personal data exported",
    "master_key_rotated": "Master key rotated",
    "audit_trail_encrypted": "Audit trail's personal data encrypted",
}
EVENTS: tuple[str, ...] = tuple(EVENT_LABELS)

#: Events anyone can repeat at will (no account, or a refused one, is
#: needed): stored once per kind, address, account and window, then counted.
#: Each names the details that also tell its repeats apart: only details with
#: a handful of possible values, never a path or a name a client chose.
REPEATED_EVENTS: dict[str, tuple[str, ...]] = {
    "token_rejected": ("why", "token_id"),
    "csrf_failed": (),
    "forbidden": ("permission",),
    "login_throttled": (),
}
#: The window repeats are counted in. Failed sign-ins are not among them: the
#: throttle counts them one by one, and limits them itself.
REPEAT_WINDOW = timedelta(minutes=10)

ACCOUNT_MAX = 64

# The first occurrence in a window inserts the counter (count 1) and the
# event; a repeat only counts up. One statement, so concurrent repeats
# serialise on the counter's unique key instead of racing to insert twice.
_RECORD_REPEATED = text(
    """
    WITH repeat AS (
        INSERT INTO security_event_repeats AS r
            (event, remote_addr, staff_id, variant, window_start, first_seen, last_seen, count)
        VALUES (
            CAST(:event AS varchar), CAST(:remote_addr AS varchar), CAST(:staff_id AS bigint),
            CAST(:variant AS varchar),
            date_bin(make_interval(secs => :window_seconds), clock_timestamp(),
                     TIMESTAMPTZ '2000-01-01 00:00:00+00'),
            clock_timestamp(), clock_timestamp(), 1
        )
        ON CONFLICT (event, remote_addr, staff_id, variant, window_start)
        DO UPDATE SET count = r.count + 1, last_seen = greatest(r.last_seen, EXCLUDED.last_seen)
        RETURNING r.id, r.count
    ), first_occurrence AS (
        INSERT INTO security_events
            (event, staff_id, username, actor_label, remote_addr, request_id,
             client_request_id, details, repeat_id)
        SELECT CAST(:event AS varchar), CAST(:staff_id AS bigint), CAST(:username AS varchar),
               CAST(:actor_label AS varchar), CAST(:remote_addr AS varchar),
               CAST(:request_id AS varchar), CAST(:client_request_id AS varchar),
               CAST(:details AS jsonb), repeat.id
        FROM repeat WHERE repeat.count = 1
    )
    SELECT count FROM repeat
    """
).bindparams(bindparam("details", type_=JSONB))


def event_label(event: str) -> str:
    """How people read an event's name (``token_rejected``: "API token refused")."""
    return EVENT_LABELS.get(event) or event.replace("_", " ").capitalize()


def record_event(
    event: str,
    *,
    staff_id: int | None = None,
    username: str | None = None,
    details: Mapping[str, object] | None = None,
    commit: bool = True,
) -> None:
    """Store and log one event, with the current origin and actor.

    It is written with its own statement and, by default, committed at once:
    a refused sign-in must leave its trace even though nothing else is saved.
    A repeat of a ``REPEATED_EVENTS`` kind from the same address, about the
    same account and with the same telling details, within the window, only
    counts up.
    """
    if event not in EVENT_LABELS:
        # A misspelt name would silently hide the event from anyone filtering.
        raise ValueError(f"unknown security event {event!r}")
    origin = current_origin()
    actor = current_actor()
    row = {
        "event": event,
        "staff_id": staff_id,
        "username": username[:64] if username else None,
        "actor_label": actor.label if actor else None,
        "remote_addr": origin.remote_addr if origin else None,
        "request_id": origin.request_id if origin else None,
        "client_request_id": origin.client_request_id if origin else None,
        "details": dict(details or {}),
    }
    occurrence = 1
    if event in REPEATED_EVENTS and row["remote_addr"]:
        variant = {
            key: row["details"][key] for key in REPEATED_EVENTS[event] if key in row["details"]
        }
        occurrence = db.session.execute(
            _RECORD_REPEATED,
            {
                **row,
                "variant": json.dumps(variant, sort_keys=True)[:200] if variant else "",
                "window_seconds": REPEAT_WINDOW.total_seconds(),
            },
        ).scalar_one()
    else:
        db.session.execute(insert(SecurityEvent).values(**row))
    if commit:
        db.session.commit()
    logged = {k: v for k, v in row.items() if k != "details"}
    if occurrence > 1:
        logged["repeat"] = occurrence
    log.info("security event %s", event, extra={"security_event": logged})


# --- reading ------------------------------------------------------------------


@dataclass(frozen=True)
class EventFilter:
    """Which events to list. ``until`` is exclusive (already moved past the bound)."""

    events: tuple[str, ...] = ()
    #: the account the event is about, by username (any case)
    account: str | None = None
    remote_addr: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def as_params(self, raw: Mapping[str, list[str]]) -> list[tuple[str, str]]:
        """The filter as query-string pairs, with dates as they were typed."""
        pairs = [("event", name) for name in self.events]
        if self.account:
            pairs.append(("account", self.account))
        if self.remote_addr:
            pairs.append(("address", self.remote_addr))
        for name in ("since", "until"):
            values = [value.strip() for value in raw.get(name, []) if value.strip()]
            if values:
                pairs.append((name, values[0]))
        return pairs


#: Query-string names of the filter (on the page, its export and the API).
FILTER_FIELDS: tuple[str, ...] = ("event", "account", "address", "since", "until")


def parse_event_filter(args: Mapping[str, list[str]]) -> EventFilter:
    """Build a filter from query-string values (each name maps to all its values).

    ``event`` (repeatable or comma-separated kinds), ``account`` (a username),
    ``address`` (an IP address), ``since``/``until`` (ISO 8601 dates or
    datetimes; a date ``until`` covers that whole day). Blank values mean no
    filter. Problems raise ``ValidationFailed`` with messages per field.
    """
    errors: dict[str, list[str]] = {}

    def single(name: str) -> str | None:
        values = [value.strip() for value in args.get(name, []) if value.strip()]
        if len(values) > 1:
            errors.setdefault(name, []).append("may be given only once")
            return None
        return values[0] if values else None

    events: list[str] = []
    for raw in args.get("event", []):
        for name in (part.strip() for part in raw.split(",")):
            if not name:
                continue
            if name not in EVENT_LABELS:
                errors.setdefault("event", []).append(f"must be one of {', '.join(EVENTS)}")
            elif name not in events:
                events.append(name)

    account = single("account")
    if account is not None and (len(account) > ACCOUNT_MAX or not account.isprintable()):
        errors.setdefault("account", []).append(
            f"must be a username of at most {ACCOUNT_MAX} characters"
        )
        account = None

    remote_addr = single("address")
    if remote_addr is not None:
        try:
            remote_addr = str(ipaddress.ip_address(remote_addr))
        except ValueError:
            errors.setdefault("address", []).append("must be an IP address, like 192.0.2.7")
            remote_addr = None

    bounds: dict[str, datetime | None] = {}
    for name, end_of_day in (("since", False), ("until", True)):
        raw_bound = single(name)
        bounds[name] = None
        if raw_bound is not None:
            try:
                bounds[name] = parse_time_bound(raw_bound, end_of_day=end_of_day)
            except ValueError as error:
                errors.setdefault(name, []).append(str(error))
    since, until = bounds["since"], bounds["until"]
    if since and until and since >= until:
        errors.setdefault("until", []).append("must be later than since")

    if errors:
        raise ValidationFailed.of_fields(errors)
    return EventFilter(
        events=tuple(events), account=account, remote_addr=remote_addr, since=since, until=until
    )


def _filtered_rows(event_filter: EventFilter) -> Select[Any]:
    """The filter's events as rows of their columns plus ``count`` and ``last_seen``."""
    repeats = SecurityEventRepeat.__table__
    statement = (
        select(
            *SecurityEvent.__table__.columns,
            func.coalesce(repeats.c.count, 1).label("count"),
            func.coalesce(repeats.c.last_seen, SecurityEvent.timestamp).label("last_seen"),
        )
        .select_from(SecurityEvent)
        .outerjoin(repeats, repeats.c.id == SecurityEvent.repeat_id)
    )
    if event_filter.events:
        statement = statement.where(SecurityEvent.event.in_(event_filter.events))
    if event_filter.account is not None:
        statement = statement.where(
            func.lower(SecurityEvent.username) == event_filter.account.lower()
        )
    if event_filter.remote_addr is not None:
        statement = statement.where(SecurityEvent.remote_addr == event_filter.remote_addr)
    if event_filter.since is not None:
        statement = statement.where(SecurityEvent.timestamp >= event_filter.since)
    if event_filter.until is not None:
        statement = statement.where(SecurityEvent.timestamp < event_filter.until)
    return statement


def list_events(
    event_filter: EventFilter | None = None, *, limit: int, cursor: str | None = None
) -> Page[Row[Any]]:
    """Events matching the filter, newest first, one keyset page.

    Rows of the events' columns, with ``count`` (how many times it happened:
    1, or its counted repeats) and ``last_seen``.
    """
    statement = _filtered_rows(event_filter or EventFilter())
    if cursor:
        moment, last_id = decode_time_id_cursor(cursor)
        statement = statement.where(
            tuple_(SecurityEvent.timestamp, SecurityEvent.id) < tuple_(moment, last_id)
        )
    statement = statement.order_by(SecurityEvent.timestamp.desc(), SecurityEvent.id.desc())
    rows = list(db.session.execute(statement.limit(limit + 1)))
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_time_id_cursor(rows[limit - 1].timestamp, rows[limit - 1].id)
    return Page(items=rows[:limit], next_cursor=next_cursor)


# --- export ---------------------------------------------------------------------

EXPORT_BATCH = 1000

CSV_COLUMNS: tuple[str, ...] = (
    "id",
    "timestamp",
    "event",
    "description",
    "count",
    "last_seen",
    "staff_id",
    "account",
    "actor",
    "remote_addr",
    "request_id",
    "client_request_id",
    "details",
)


def iter_events(event_filter: EventFilter, *, batch_size: int = EXPORT_BATCH) -> Iterator[Row[Any]]:
    """Every event of the filter, newest first, one keyset batch at a time."""
    cursor: str | None = None
    while True:
        page = list_events(event_filter, limit=batch_size, cursor=cursor)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def csv_row(event: Row[Any]) -> list[str | int | None]:
    """One event as CSV cells, safe to open in a spreadsheet."""
    text_cells = [
        iso_utc(event.timestamp) or "",
        event.event,
        event_label(event.event),
        iso_utc(event.last_seen) or "",
        event.username or "",
        event.actor_label or "",
        event.remote_addr or "",
        event.request_id or "",
        event.client_request_id or "",
        json_cell(event.details or {}),
    ]
    timestamp, name, label, seen, account, actor, address, request_id, client_id, details = (
        neutralise(cell) for cell in text_cells
    )
    return [
        event.id,
        timestamp,
        name,
        label,
        event.count,
        seen,
        event.staff_id,
        account,
        actor,
        address,
        request_id,
        client_id,
        details,
    ]


def csv_lines(event_filter: EventFilter, *, batch_size: int = EXPORT_BATCH) -> Iterator[str]:
    """The header, then one CSV line per event (RFC 4180 line ends)."""
    return csv_stream(
        CSV_COLUMNS, (csv_row(event) for event in iter_events(event_filter, batch_size=batch_size))
    )


def describe_filter(event_filter: EventFilter) -> dict[str, object]:
    """The filter as a security event's details (who exported what)."""
    described: dict[str, object] = {}
    if event_filter.events:
        described["events"] = list(event_filter.events)
    if event_filter.account:
        described["account"] = event_filter.account
    if event_filter.remote_addr:
        described["address"] = event_filter.remote_addr
    if event_filter.since:
        described["since"] = iso_utc(event_filter.since)
    if event_filter.until:
        described["until"] = iso_utc(event_filter.until)
    return described
