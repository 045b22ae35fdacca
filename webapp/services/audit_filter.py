"""The audit timeline's filter, declared once.

Every face that filters the audit log reads its parameters from
``FILTER_PARAMETERS``: the JSON API's query string and its OpenAPI
parameters, the dashboard's timeline form and export links, the API's export
and ``flask audit export``'s options. Names, kinds, bounds and help texts are
written here only, and ``parse_audit_filter`` is the one reader of the values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from webapp.audit.snapshot import SNAPSHOT_FIELDS
from webapp.models import OPERATIONS
from webapp.request_id import client_request_id
from webapp.services.errors import ValidationFailed
from webapp.timestamps import parse_time_bound
from webapp.typed_text import parse_flag, parse_whole_number

#: longest username or actor label a filter may name
ACTOR_MAX = 100


class Kind(Enum):
    """What a parameter's value is, and so how it is read and described."""

    ID = "id"  # a positive 64-bit integer
    CHOICES = "choices"  # some of ``choices``: repeatable, or comma-separated
    TIME = "time"  # an ISO 8601 date or datetime
    ACTOR = "actor"  # a staff id, or a username / actor label
    FLAG = "flag"  # true or false, false when absent
    REQUEST_ID = "request_id"  # a request id as the server or a client gave it


@dataclass(frozen=True)
class FilterParameter:
    """One filter parameter, as every face names and describes it."""

    #: the query-string name (API, export links); ``--name-with-dashes`` on the command line
    name: str
    kind: Kind
    #: one sentence for a reader of the API document, the form or ``--help``
    help: str
    choices: tuple[str, ...] = ()
    #: the name of the timeline form's field; ``None`` when the form has none
    form_name: str | None = None
    #: an upper bound: a date covers that whole day
    end_of_day: bool = False

    @property
    def repeatable(self) -> bool:
        return self.kind is Kind.CHOICES

    @property
    def max_length(self) -> int | None:
        return ACTOR_MAX if self.kind is Kind.ACTOR else None


FILTER_PARAMETERS: tuple[FilterParameter, ...] = (
    FilterParameter("user_id", Kind.ID, "Only this profile's entries.", form_name="user"),
    FilterParameter(
        "operation",
        Kind.CHOICES,
        "Only these operations. Repeat the parameter or separate values with commas "
        "(`operation=update,restore`).",
        choices=OPERATIONS,
        form_name="operation",
    ),
    FilterParameter(
        "since",
        Kind.TIME,
        "Entries at or after this ISO 8601 date (start of that UTC day) or datetime "
        "(UTC unless it has an offset).",
        form_name="since",
    ),
    FilterParameter(
        "until",
        Kind.TIME,
        "Entries at or before this ISO 8601 date (the whole UTC day included) or "
        "datetime. Must be later than `since`.",
        form_name="until",
        end_of_day=True,
    ),
    FilterParameter(
        "actor",
        Kind.ACTOR,
        "Only entries made by this staff id, username or actor label (such as "
        "`cli:root`), case-insensitive.",
        form_name="actor",
    ),
    FilterParameter(
        "field",
        Kind.CHOICES,
        "Only entries that changed one of these fields. Repeat the parameter or separate "
        "values with commas.",
        choices=SNAPSHOT_FIELDS,
        form_name="field",
    ),
    FilterParameter(
        "request_id",
        Kind.REQUEST_ID,
        "Only the entries one request wrote: its `X-Request-ID` (the server's, as every "
        "entry and response carries it).",
        form_name="request_id",
    ),
    FilterParameter(
        "unattributed",
        Kind.FLAG,
        "`true`: only the changes that bypassed the application, recorded by the "
        "database's safety net.",
    ),
)

#: the query-string names of the filter
FILTER_NAMES: frozenset[str] = frozenset(p.name for p in FILTER_PARAMETERS)
#: those that may be given more than once
REPEATABLE_NAMES: frozenset[str] = frozenset(p.name for p in FILTER_PARAMETERS if p.repeatable)


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
    #: only the entries written by this request
    request_id: str | None = None


def parse_audit_filter(args: Mapping[str, list[str]]) -> AuditFilter:
    """Build a filter from query-string values (each name maps to all its values).

    Names outside ``FILTER_PARAMETERS`` are ignored here (the API refuses them
    before). A bad value is ``ValidationFailed`` naming each bad parameter.
    """
    errors: dict[str, list[str]] = {}
    values: dict[str, object] = {}
    for parameter in FILTER_PARAMETERS:
        raw = args.get(parameter.name, [])
        if parameter.repeatable:
            values[parameter.name] = _choices(raw, parameter, errors)
        elif len(raw) > 1:
            errors.setdefault(parameter.name, []).append("may be given only once")
        elif raw and raw[0].strip():
            values[parameter.name] = _READERS[parameter.kind](raw[0].strip(), parameter, errors)

    since, until = values.get("since"), values.get("until")
    if isinstance(since, datetime) and isinstance(until, datetime) and since >= until:
        errors.setdefault("until", []).append("must be later than since")
    if errors:
        raise ValidationFailed.of_fields(errors)

    actor = values.get("actor")
    return AuditFilter(
        user_id=values.get("user_id"),  # type: ignore[arg-type]
        operations=values.get("operation", ()),  # type: ignore[arg-type]
        since=since,  # type: ignore[arg-type]
        until=until,  # type: ignore[arg-type]
        fields=values.get("field", ()),  # type: ignore[arg-type]
        actor_id=actor if isinstance(actor, int) else None,
        actor_label=actor if isinstance(actor, str) else None,
        unattributed=values.get("unattributed") or None,  # type: ignore[arg-type]
        request_id=values.get("request_id"),  # type: ignore[arg-type]
    )


def _choices(
    raw_values: Iterable[str], parameter: FilterParameter, errors: dict[str, list[str]]
) -> tuple[str, ...]:
    chosen: list[str] = []
    for raw in raw_values:
        for value in (part.strip() for part in raw.split(",")):
            if value not in parameter.choices:
                errors.setdefault(parameter.name, []).append(
                    f"must be one of {', '.join(parameter.choices)}"
                )
            elif value not in chosen:
                chosen.append(value)
    return tuple(chosen)


def _read_id(raw: str, parameter: FilterParameter, errors: dict[str, list[str]]) -> int | None:
    value = parse_whole_number(raw)
    if value is None:
        errors.setdefault(parameter.name, []).append("must be a positive integer")
    return value


def _read_actor(
    raw: str, parameter: FilterParameter, errors: dict[str, list[str]]
) -> int | str | None:
    if raw.isascii() and raw.isdigit():
        value = parse_whole_number(raw)
        if value is None:
            errors.setdefault(parameter.name, []).append("is not a valid staff id")
        return value
    if len(raw) <= ACTOR_MAX and raw.isprintable():
        return raw
    errors.setdefault(parameter.name, []).append(
        f"must be a staff id or a username of at most {ACTOR_MAX} characters"
    )
    return None


def _read_time(
    raw: str, parameter: FilterParameter, errors: dict[str, list[str]]
) -> datetime | None:
    try:
        return parse_time_bound(raw, end_of_day=parameter.end_of_day)
    except ValueError as error:
        errors.setdefault(parameter.name, []).append(str(error))
        return None


def _read_flag(raw: str, parameter: FilterParameter, errors: dict[str, list[str]]) -> bool:
    flag = parse_flag(raw, default=False)
    if flag is None:
        errors.setdefault(parameter.name, []).append("must be true or false")
    return bool(flag)


def _read_request_id(
    raw: str, parameter: FilterParameter, errors: dict[str, list[str]]
) -> str | None:
    request_id = client_request_id(raw)
    if request_id is None:
        errors.setdefault(parameter.name, []).append(
            "must be 8 to 128 letters, digits or . _ : - (a request id)"
        )
    return request_id


_READERS = {
    Kind.ID: _read_id,
    Kind.ACTOR: _read_actor,
    Kind.TIME: _read_time,
    Kind.FLAG: _read_flag,
    Kind.REQUEST_ID: _read_request_id,
}
