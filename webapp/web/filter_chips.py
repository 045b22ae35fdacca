"""The timeline's active filters as removable chips, above the entries.

Each chip links to the same filter without it, so removing one is a plain
link (Back-safe, works without JavaScript) and no empty parameter is left
in the address.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from webapp.services.audit_views import TimelineQuery
from webapp.web.timeline_presenters import TimelineLinks

#: what each filter is called on a chip (the form's labels)
CHIP_LABELS = {
    "user": "User",
    "actor": "Actor",
    "since": "From",
    "until": "To",
    "operation": "Operation",
    "field": "Changed field",
    "request_id": "Request",
}


@dataclass(frozen=True)
class FilterChip:
    """One active filter: what it is called, its value, the query string without it."""

    name: str
    label: str
    value: str
    without: str


def filter_chips(query: TimelineQuery) -> list[FilterChip]:
    """The filter as typed, one chip per value, each knowing the filter without it."""
    pairs = TimelineLinks(query).form_params
    chips = []
    for index, (name, value) in enumerate(pairs):
        rest = [pair for position, pair in enumerate(pairs) if position != index]
        shown = value
        if name == "user" and query.user is not None:
            shown = f"#{query.user.id} {query.user.name}"
        chips.append(FilterChip(name, CHIP_LABELS.get(name, name), shown, urlencode(rest)))
    return chips
