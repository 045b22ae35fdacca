"""The audit trail and the security events are append-only in the database
itself: whatever client connects, rows can be inserted and read, never changed,
deleted or truncated away."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.support.profiles import post_profile, update_profile

STATEMENTS = {
    "user_audit": [
        "UPDATE user_audit SET reason = 'rewritten'",
        "UPDATE user_audit SET new_data = '{}'::jsonb WHERE id = 1",
        "DELETE FROM user_audit",
        "TRUNCATE user_audit CASCADE",
    ],
    "security_events": [
        "UPDATE security_events SET username = 'someone else'",
        "DELETE FROM security_events",
        "TRUNCATE security_events",
    ],
}


@pytest.fixture
def some_history(client):
    update_profile(client, post_profile(client, "Ada", "ada@example.com"), name="Ada King")
    client.get("/api/v1/users", headers={"Authorization": "Bearer pa_wrong"})


@pytest.mark.parametrize(
    ("table", "statement"),
    [(table, statement) for table, statements in STATEMENTS.items() for statement in statements],
)
def test_changing_or_removing_records_is_refused(engine, database, some_history, table, statement):
    before = database.rows(f"SELECT * FROM {table} ORDER BY id")
    assert before

    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text(statement))

    assert database.rows(f"SELECT * FROM {table} ORDER BY id") == before


def test_new_records_are_still_written(client, database, some_history):
    entries = len(database.audit())
    client.post("/api/v1/users", json={"name": "Grace", "email": "grace@example.com"})
    assert len(database.audit()) == entries + 1
