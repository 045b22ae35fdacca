"""``GET /api/v1/audit``: filters, keyset pagination and refusals of bad filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support.api import PROBLEM
from tests.support.database import rewrite_history
from tests.support.profiles import post_profile, update_profile


@pytest.fixture
def history(client):
    """Two profiles with a few changes each; returns their ids."""
    ada_id = post_profile(client, "Ada", "ada@example.com")
    grace_id = post_profile(client, "Grace", "grace@example.com")
    update_profile(client, ada_id, name="Ada Lovelace")
    update_profile(client, grace_id, email="hopper@example.com")
    client.delete(f"/api/v1/users/{grace_id}")
    client.post(f"/api/v1/users/{grace_id}/restore")
    return ada_id, grace_id


def entries(client, query=""):
    response = client.get("/api/v1/audit" + query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["items"]


def ids_of_every_page(client, query):
    """The entry ids of ``query``'s pages, following ``next_cursor`` to the last."""
    seen, cursor = [], None
    while True:
        page = client.get("/api/v1/audit" + query + (f"&cursor={cursor}" if cursor else ""))
        seen += [e["id"] for e in page.get_json()["items"]]
        cursor = page.get_json()["next_cursor"]
        if not cursor:
            return seen


def test_newest_first_with_all_fields(client, history):
    items = entries(client)
    assert len(items) == 6
    assert [e["id"] for e in items] == sorted((e["id"] for e in items), reverse=True)
    assert set(items[0]) == {
        "id",
        "user_id",
        "operation",
        "timestamp",
        "version",
        "changed_fields",
        "previous_data",
        "new_data",
        "reason",
        "actor",
        "remote_addr",
        "request_id",
        "client_request_id",
        "unattributed",
    }
    stamps = [e["timestamp"] for e in items]
    assert stamps == sorted(stamps, reverse=True)


def test_filter_by_user(client, history):
    ada_id, _ = history
    items = entries(client, f"?user_id={ada_id}")
    assert {e["user_id"] for e in items} == {ada_id}
    assert [e["operation"] for e in items] == ["update", "create"]


def test_filter_by_operations_repeated_or_comma_separated(client, history):
    repeated = entries(client, "?operation=delete&operation=restore")
    assert [e["operation"] for e in repeated] == ["restore", "delete"]
    assert entries(client, "?operation=delete,restore") == repeated


def test_filter_by_changed_field(client, history):
    _, grace_id = history
    items = entries(client, "?field=email")
    # Both creates set the email, plus Grace's email change.
    assert sorted(e["operation"] for e in items) == ["create", "create", "update"]
    assert entries(client, "?field=email&operation=update") == [
        e for e in items if e["operation"] == "update"
    ]
    assert all(e["user_id"] == grace_id for e in entries(client, "?field=deleted_at"))


def test_filter_by_date_range(client, history, engine):
    rewrite_history(
        engine,
        "UPDATE user_audit SET timestamp = timestamp - interval '10 days' "
        "WHERE operation = 'create'",
    )
    now = datetime.now(UTC)
    recent_start = (now - timedelta(days=1)).date().isoformat()
    old_end = (now - timedelta(days=9)).date().isoformat()

    assert {e["operation"] for e in entries(client, f"?since={recent_start}")} == {
        "update",
        "delete",
        "restore",
    }
    assert [e["operation"] for e in entries(client, f"?until={old_end}")] == ["create", "create"]
    # A datetime bound is inclusive to the microsecond.
    newest = entries(client)[0]["timestamp"]
    assert entries(client, f"?since={newest}")[0]["timestamp"] == newest
    assert entries(client, f"?until={newest}")[0]["timestamp"] == newest


def test_pages_follow_the_cursor_without_gaps_or_repeats(client, history):
    every = [e["id"] for e in entries(client)]
    assert ids_of_every_page(client, "?limit=4") == every


def test_a_cursor_keeps_working_when_newer_entries_arrive(client, history):
    first = client.get("/api/v1/audit?limit=2").get_json()
    client.post("/api/v1/users", json={"name": "New", "email": "new@example.com"})
    rest = client.get(f"/api/v1/audit?limit=50&cursor={first['next_cursor']}").get_json()
    ids = [e["id"] for e in first["items"] + rest["items"]]
    assert len(ids) == 6 == len(set(ids))


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?since=yesterday", "since"),
        ("?until=2026-02-30", "until"),
        ("?since=2026-01-02&until=2026-01-01", "until"),
        ("?since=0001-01-01T00:00:00%2B14:00", "since"),
        ("?until=9999-12-31", "until"),
        ("?operation=rename", "operation"),
        ("?field=password", "field"),
        ("?user_id=abc", "user_id"),
        ("?user_id=-1", "user_id"),
        ("?user_id=99999999999999999999", "user_id"),
        ("?user_id=1&user_id=2", "user_id"),
        ("?limit=0", "limit"),
        ("?limit=201", "limit"),
        ("?limit=ten", "limit"),
        ("?cursor=not-a-cursor", "cursor"),
        ("?cursor=WzEsMiwzXQ", "cursor"),
        ("?cursor=WyJ4IiwgMV0", "cursor"),
        ("?colour=blue", "colour"),
    ],
)
def test_bad_filters_are_400_problems_naming_the_parameter(client, history, query, field):
    response = client.get("/api/v1/audit" + query)
    assert response.status_code == 400
    assert response.mimetype == PROBLEM
    assert field in response.get_json()["errors"]


def test_pages_with_an_until_bound_match_the_unpaged_result(client, history):
    every = entries(client)
    bound = every[2]["timestamp"]
    expected = [e["id"] for e in every if e["timestamp"] <= bound]
    assert ids_of_every_page(client, f"?limit=1&until={bound}") == expected
    # A cursor from above the bound still honours it.
    top = client.get("/api/v1/audit?limit=1").get_json()["next_cursor"]
    after_top = entries(client, f"?until={every[3]['timestamp']}&cursor={top}")
    assert [e["id"] for e in after_top] == [e["id"] for e in every[3:]]


def test_filter_by_request_id(client, history):
    ada_id, _ = history
    sent = client.patch(
        f"/api/v1/users/{ada_id}",
        json={"email": "lovelace@example.com"},
        headers={"X-Request-ID": "import-2026-12-02-ada"},
    )
    server_id = sent.headers["X-Request-ID"]
    items = entries(client, f"?request_id={server_id}")
    assert [(e["user_id"], e["operation"], e["request_id"]) for e in items] == [
        (ada_id, "update", server_id)
    ]
    # The id the client sent is kept beside the server's, not filtered on.
    assert items[0]["client_request_id"] == "import-2026-12-02-ada"
    assert entries(client, "?request_id=import-2026-12-02-ada") == []


@pytest.mark.parametrize("value", ["short", "has space here", "<script>alert(1)</script>"])
def test_a_malformed_request_id_is_refused(client, history, value):
    response = client.get("/api/v1/audit", query_string={"request_id": value})
    assert response.status_code == 400
    assert response.mimetype == PROBLEM
    assert "request_id" in response.get_json()["errors"]
