"""The timeline's filters are written so that PostgreSQL can use their indexes.

Sizes here are tiny, so the planner would often pick a sequential scan on its
own; with sequential scans priced out (``enable_seqscan = off``) the plan shows
whether an index *can* serve the statement the service really sends. A filter
whose SQL the planner cannot match to its index ends in a scan of the whole log
at ten million entries (bench/README.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, text

from tests.support.profiles import numbered_profiles
from webapp.extensions import db
from webapp.services.audit_filter import parse_audit_filter
from webapp.services.audit_log import list_entries


@contextmanager
def last_timeline_statement() -> Iterator[dict[str, Any]]:
    """The last SELECT on user_audit the app's engine sent, with its parameters."""
    seen: dict[str, Any] = {}

    def remember(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().startswith("SELECT user_audit.id"):
            seen["statement"], seen["parameters"] = statement, parameters

    event.listen(db.engine, "before_cursor_execute", remember)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", remember)


def plan_of(statement: str, parameters: Any) -> str:
    """The JSON plan of the statement, with sequential scans priced out."""
    connection = db.session.connection().connection.dbapi_connection
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
        plan = cursor.fetchone()[0]
    return json.dumps(plan)


def test_the_unattributed_filter_uses_its_partial_index(app_context, engine):
    with engine.begin() as connection:  # writes that bypass the app: the safety net records them
        connection.execute(
            text(
                "INSERT INTO users (name, email, version) "
                "SELECT 'Raw ' || n, 'raw' || n || '@example.com', 1 "
                "FROM generate_series(1, 30) AS n"
            )
        )
    audit_filter = parse_audit_filter({"unattributed": ["true"]})

    with last_timeline_statement() as sent:
        page = list_entries(audit_filter, limit=10)
    plan = plan_of(sent["statement"], sent["parameters"])

    assert len(page.items) == 10
    assert all(entry.unattributed for entry in page.items)
    assert "ix_user_audit_unattributed_timestamp_id" in plan


def test_the_request_id_filter_uses_its_partial_index(app_context, client):
    ids = numbered_profiles(client, 3)
    wanted = client.patch(f"/api/v1/users/{ids[1]}", json={"name": "Renamed"})
    request_id = wanted.headers["X-Request-ID"]
    audit_filter = parse_audit_filter({"request_id": [request_id]})

    with last_timeline_statement() as sent:
        page = list_entries(audit_filter, limit=10)
    plan = plan_of(sent["statement"], sent["parameters"])

    assert [(entry.user_id, entry.operation) for entry in page.items] == [(ids[1], "update")]
    assert "ix_user_audit_request_id_timestamp_id" in plan
