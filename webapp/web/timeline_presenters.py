"""How the timeline's data is drawn: links that keep its filter, the activity chart's bars.

The services answer what a filter means and what it holds; how that becomes
a query string or an SVG rectangle is the page's business, decided here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from urllib.parse import urlencode

from webapp.models import OPERATIONS
from webapp.services.audit_views import FORM_FIELDS, Activity, TimelineQuery
from webapp.timestamps import utcnow

#: one day's column in chart units; its bar is narrower, leaving a gap between days
DAY_WIDTH = 10
BAR_WIDTH = 8
CHART_HEIGHT = 100


# --- links ---------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineLinks:
    """Query strings of the timeline's links, each keeping the filter of ``query``."""

    query: TimelineQuery

    @property
    def params(self) -> list[tuple[str, str]]:
        """The applied filter as query-string pairs, the user resolved to an id."""
        audit_filter, values = self.query.audit_filter, self.query.values
        if audit_filter is None:
            return []
        params: list[tuple[str, str]] = []
        if audit_filter.user_id is not None:
            params.append(("user_id", str(audit_filter.user_id)))
        params += [("operation", operation) for operation in audit_filter.operations]
        params += [(name, values[name][0]) for name in ("since", "until") if values[name]]
        params += [("actor", value) for value in values["actor"]]
        params += [("field", name) for name in audit_filter.fields]
        if audit_filter.request_id is not None:
            params.append(("request_id", audit_filter.request_id))
        return params

    @property
    def form_params(self) -> list[tuple[str, str]]:
        """The filter as typed, as query-string pairs (links that keep the form's text)."""
        return [(name, value) for name in FORM_FIELDS for value in self.query.values[name]]

    @property
    def query_string(self) -> str:
        """The applied filter as a query string (no leading ``?``)."""
        return urlencode(self.params)

    def with_params(self, **extra: str) -> str:
        """The applied filter plus ``extra`` (e.g. a cursor), as a query string."""
        return urlencode([*self.params, *extra.items()])

    def with_user(self, user_id: int) -> str:
        """The filter as typed, about profile ``user_id`` instead."""
        pairs = [(name, value) for name, value in self.form_params if name != "user"]
        return urlencode([("user_id", str(user_id)), *pairs])

    def with_range(self, since: date, until: date) -> str:
        """The filter as typed, over the days ``since`` to ``until``."""
        pairs = [
            (name, value) for name, value in self.form_params if name not in ("since", "until")
        ]
        return urlencode([*pairs, ("since", since.isoformat()), ("until", until.isoformat())])


def quick_ranges(today: date | None = None) -> list[tuple[str, date, date]]:
    """Common date ranges ending today (UTC): label, first day, last day."""
    today = today or utcnow().date()
    return [
        ("Today", today, today),
        ("7 days", today - timedelta(days=6), today),
        ("30 days", today - timedelta(days=29), today),
    ]


# --- the activity chart ----------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """One operation's part of one day's column, in chart coordinates."""

    day: date
    operation: str
    count: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class ActivityChart:
    """The counts of ``activity`` as stacked bars, one column per day."""

    activity: Activity
    bars: list[Bar]
    width: int
    height: int

    @property
    def busiest_day(self) -> date | None:
        """The first day with the most entries; ``None`` when there are none."""
        counts = self.activity.counts
        if not self.activity.busiest:
            return None
        return min(day for day, ops in counts.items() if sum(ops.values()) == self.activity.busiest)


def activity_chart(activity: Activity) -> ActivityChart:
    """Stack each day's operations (in ``OPERATIONS`` order), scaled to the busiest day."""
    bars: list[Bar] = []
    scale = CHART_HEIGHT / activity.busiest if activity.busiest else 0
    for when, ops in sorted(activity.counts.items()):
        x = (when - activity.first_day).days * DAY_WIDTH + (DAY_WIDTH - BAR_WIDTH) / 2
        top = float(CHART_HEIGHT)
        for operation in OPERATIONS:
            count = ops.get(operation, 0)
            if not count:
                continue
            height = count * scale
            top -= height
            bars.append(Bar(when, operation, count, x, round(top, 3), BAR_WIDTH, round(height, 3)))
    return ActivityChart(
        activity=activity, bars=bars, width=activity.days * DAY_WIDTH, height=CHART_HEIGHT
    )
