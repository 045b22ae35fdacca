"""Security events cannot be flooded: repeats anyone can cause are counted, not
stored one by one; the page filters by kind, account, address and dates, reads
in plain words and exports CSV; and every event reaches the log."""

from __future__ import annotations

import csv
import io
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.support.database import rewrite_history
from tests.support.pages import post_sign_in, text_of
from webapp.services import security_events
from webapp.services.api_tokens import revoke_token
from webapp.services.security_events import EVENT_LABELS, EVENTS

BAD = {"Authorization": "Bearer pa_not-a-real-token"}
TAG = re.compile(r"<[^>]+>")


def listed(response) -> str:
    """The rows of the security events page, as text."""
    page = response.get_data(as_text=True)
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return " ".join(TAG.sub(" ", body).split())


def refused_token(app: Flask, address: str = "192.0.2.9", headers: dict | None = None) -> int:
    response = app.test_client().get(
        "/api/v1/users", headers=headers or BAD, environ_base={"REMOTE_ADDR": address}
    )
    return response.status_code


def fail_sign_in(app: Flask, username: str, address: str = "198.51.100.4") -> None:
    browser = app.test_client()
    browser.environ_base["REMOTE_ADDR"] = address
    response = post_sign_in(browser, username, "wrong pw")
    assert response.status_code in {401, 429}


# --- flooding ---------------------------------------------------------------------


def test_a_flood_of_bad_tokens_is_one_event_with_a_count(app, signed_in, database):
    """8 threads sending bad tokens: one row, counted; real events stay on top."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: refused_token(app), range(80)))
    assert statuses == [401] * 80

    rows = database.rows("SELECT * FROM security_events WHERE event = 'token_rejected'")
    assert len(rows) == 1
    [repeats] = database.rows("SELECT * FROM security_event_repeats")
    assert repeats["id"] == rows[0]["repeat_id"]
    assert repeats["count"] == 80
    assert repeats["first_seen"] <= repeats["last_seen"]

    auditor = signed_in("auditor", "audrey")  # a real event, after the flood
    page = auditor.get("/security-events?limit=2")
    shown = listed(page)
    assert shown.index("Signed in") < shown.index("API token refused")
    assert "\N{MULTIPLICATION SIGN}80" in shown


def test_the_api_reports_the_count_and_last_seen(app, client):
    for _ in range(3):
        refused_token(app)
    [event] = client.get("/api/v1/security-events?event=token_rejected").get_json()["items"]
    assert event["count"] == 3
    assert event["last_seen"] >= event["timestamp"]


def test_repeats_are_counted_per_address_account_and_reason(app, staff_factory, database):
    owner = staff_factory.account("support", "sam")
    revoked = staff_factory.token(owner, "old")
    with app.app_context():
        revoke_token(database.rows("SELECT id FROM api_tokens")[0]["id"])
    for address in ("192.0.2.1", "192.0.2.1", "192.0.2.2"):
        refused_token(app, address)
    refused_token(app, "192.0.2.1", {"Authorization": f"Bearer {revoked}"})
    rows = database.rows(
        "SELECT e.remote_addr, e.staff_id, e.details ->> 'why' AS why, r.count "
        "FROM security_events e JOIN security_event_repeats r ON r.id = e.repeat_id "
        "ORDER BY e.id"
    )
    assert [(r["remote_addr"], r["staff_id"], r["why"], r["count"]) for r in rows] == [
        ("192.0.2.1", None, "unknown", 2),
        ("192.0.2.2", None, "unknown", 1),
        ("192.0.2.1", owner.id, "revoked", 1),
    ]


def test_a_new_window_starts_a_new_event(app, engine, database):
    refused_token(app)
    # As if the window had passed.
    rewrite_history(
        engine, "UPDATE security_event_repeats SET window_start = window_start - interval '1 day'"
    )
    refused_token(app)
    counts = database.rows(
        "SELECT r.count FROM security_events e JOIN security_event_repeats r "
        "ON r.id = e.repeat_id ORDER BY e.id"
    )
    assert [row["count"] for row in counts] == [1, 1]


def test_failed_sign_ins_are_each_kept_for_the_throttle(app, database):
    for name in ("ghost1", "ghost2"):
        fail_sign_in(app, name)
    assert database.scalar("SELECT count(*) FROM security_events WHERE event = 'login_failed'") == 2
    assert database.scalar("SELECT count(*) FROM security_event_repeats") == 0


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE security_event_repeats SET count = count - 1",
        "UPDATE security_event_repeats SET last_seen = last_seen - interval '1 hour'",
        "UPDATE security_event_repeats SET remote_addr = '203.0.113.1'",
        "DELETE FROM security_event_repeats",
        "TRUNCATE security_event_repeats CASCADE",
    ],
)
def test_counts_only_go_up(app, engine, database, statement):
    refused_token(app)
    refused_token(app)
    before = database.rows("SELECT * FROM security_event_repeats")
    with pytest.raises(DBAPIError, match=r"only counts up|append-only"), engine.begin() as c:
        c.execute(text(statement))
    assert database.rows("SELECT * FROM security_event_repeats") == before


# --- the page: filters, names, pages ------------------------------------------------


@pytest.fixture
def mixed(app, staff_factory, signed_in):
    """Events of several kinds, accounts and addresses."""
    staff_factory.account("support", "grace")
    fail_sign_in(app, "grace", "198.51.100.4")
    fail_sign_in(app, "GRACE", "198.51.100.5")
    fail_sign_in(app, "ghost", "198.51.100.4")
    refused_token(app, "192.0.2.9")
    return signed_in("auditor", "audrey")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("event=login_failed", ["ghost", "GRACE", "grace"]),
        ("account=grace", ["GRACE", "grace"]),
        ("address=198.51.100.4", ["ghost", "grace"]),
        ("event=login_failed&address=198.51.100.4&account=Grace", ["grace"]),
        ("event=token_rejected", ["—"]),
        ("since=2000-01-01&until=2000-12-31", []),
    ],
)
def test_the_page_filters_by_kind_account_address_and_dates(mixed, query, expected):
    response = mixed.get(f"/security-events?{query}")
    assert response.status_code == 200
    cells = re.findall(r'<td data-label="Account">(.*?)</td>', response.get_data(as_text=True))
    assert [TAG.sub("", cell) for cell in cells] == expected


def test_the_api_filters_the_same_way(mixed, client):
    items = client.get("/api/v1/security-events?event=login_failed&account=grace").get_json()
    assert sorted(e["username"] for e in items["items"]) == ["GRACE", "grace"]
    bad = client.get("/api/v1/security-events?address=nowhere&since=yesterday")
    assert bad.status_code == 400
    assert set(bad.get_json()["errors"]) == {"address", "since"}


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("event=login_suceeded", "event", "must be one of"),
        ("address=nowhere", "address", "must be an IP address"),
        ("since=yesterday", "since", "ISO 8601"),
        ("since=2026-02-01&until=2026-01-01", "until", "later than since"),
        ("account=" + "x" * 65, "account", "at most 64"),
    ],
)
def test_a_bad_filter_is_explained_next_to_its_field(mixed, query, field, message):
    response = mixed.get(f"/security-events?{query}")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f'id="f-{field}-errors"' in page
    assert message in text_of(response)
    assert "<tbody>" not in page


def test_events_have_readable_names(mixed):
    shown = listed(mixed.get("/security-events"))
    assert "Sign-in failed" in shown
    assert "API token refused" in shown
    assert "login_failed" not in shown
    assert "token_rejected" not in shown


def test_every_event_has_a_readable_name():
    assert set(EVENTS) == set(EVENT_LABELS)
    for name in EVENTS:
        assert security_events.event_label(name) != name
        assert "_" not in security_events.event_label(name)


def test_older_pages_keep_the_filter(mixed):
    first = mixed.get("/security-events?event=login_failed&limit=2")
    older = re.search(r'href="([^"]+)" rel="next">Older events', first.get_data(as_text=True))
    url = older.group(1).replace("&amp;", "&")
    assert "event=login_failed" in url
    assert "limit=2" in url
    assert "offset" not in url
    rest = mixed.get(url)
    assert rest.status_code == 200
    assert "Sign-in failed" in listed(rest)
    assert "Signed in" not in listed(rest)


# --- export ---------------------------------------------------------------------------


def test_the_csv_export_has_the_filtered_events_and_is_itself_an_event(mixed, database):
    response = mixed.get("/security-events/export.csv?event=login_failed&account=grace")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    assert response.headers["Cache-Control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert list(rows[0]) == list(security_events.CSV_COLUMNS)
    assert sorted(r["account"] for r in rows) == ["GRACE", "grace"]
    assert {r["description"] for r in rows} == {"Sign-in failed"}
    assert {r["count"] for r in rows} == {"1"}

    [export] = database.rows(
        "SELECT * FROM security_events WHERE event = 'security_events_exported'"
    )
    assert export["actor_label"] == "audrey"
    assert export["details"] == {"format": "csv", "events": ["login_failed"], "account": "grace"}


def test_the_csv_export_cannot_run_formulas(app, signed_in):
    fail_sign_in(app, "=cmd|' /C calc'!A0")
    fail_sign_in(app, "ok;=cmd|' /C calc'!A0")
    rows = list(
        csv.reader(
            io.StringIO(
                signed_in("auditor").get("/security-events/export.csv").get_data(as_text=True)
            )
        )
    )
    accounts = [row[security_events.CSV_COLUMNS.index("account")] for row in rows[1:]]
    assert "'=cmd|' /C calc'!A0" in accounts
    assert "ok;'=cmd|' /C calc'!A0" in accounts


def test_a_bad_export_filter_is_a_400_page_and_exports_nothing(mixed, database):
    response = mixed.get("/security-events/export.csv?since=yesterday")
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert (
        database.scalar(
            "SELECT count(*) FROM security_events WHERE event = 'security_events_exported'"
        )
        == 0
    )


def test_timeline_exports_are_security_events_too(signed_in, client, database):
    client.post("/api/v1/users", json={"name": "Ada", "email": "ada@example.com"})
    auditor = signed_in("auditor", "audrey")
    assert auditor.get("/audit/export.csv?operation=create").status_code == 200
    assert auditor.get("/audit/export.ndjson").status_code == 200
    exports = database.rows(
        "SELECT actor_label, details FROM security_events "
        "WHERE event = 'audit_exported' ORDER BY id"
    )
    assert [(e["actor_label"], e["details"]["format"]) for e in exports] == [
        ("audrey", "csv"),
        ("audrey", "ndjson"),
    ]
    assert exports[0]["details"]["filter"] == "operation=create"
