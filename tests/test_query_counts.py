"""Listing pages send a fixed number of SQL statements, however many rows
they show: the timeline, the profile list and a profile's history, as HTML
(whole pages, htmx fragments, next pages) and as JSON.

A statement run per row (a lazy load in a template, a name looked up per
entry) makes the count grow with the page size, which these tests compare.
The data is varied on purpose (several accounts, web, API, command line and
unattributed database writes, deleted and restored profiles), so anything
loaded per actor, per profile or per kind of entry would show too.

A save, for its part, sends nothing after its COMMIT: the answer is made
from what was written.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, text

from tests.support.pages import HTMX, page_token
from tests.support.profiles import post_profile
from webapp.audit.context import Actor, Origin, acting_as
from webapp.extensions import db
from webapp.services import users as user_service
from webapp.services.security_events import record_event
from webapp.web import profiles as profile_views

SMALL, LARGE = 2, 50
ENTRY = re.compile(r'<li class="entry" id="entry-\d+"')
HISTORY_ENTRY = re.compile(r'<li class="history-entry" id="entry-\d+"')
PROFILE_ROW = re.compile(r'<tr id="user-\d+"')
TIMELINE_NEXT = re.compile(r'<a class="button button-secondary" href="(/audit\?[^"]+)"')
HISTORY_NEXT = re.compile(r'href="(/users/\d+\?before=[^"]+)" rel="next"')


@dataclass(frozen=True)
class Measured:
    """One request's SQL statements and its answer."""

    statements: list[str]
    body: str

    @property
    def count(self) -> int:
        return len(self.statements)


@contextmanager
def recorded_statements(app: Flask) -> Iterator[list[str]]:
    """Every statement the app's engine sends inside the block, in order."""
    statements: list[str] = []

    def record(connection, cursor, statement, parameters, context, executemany):
        statements.append(" ".join(statement.split()))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def measure(app: Flask, client: FlaskClient, url: str, headers: dict | None = None) -> Measured:
    """The statements of a GET of ``url``, asked once before unmeasured: a
    token's last use is written at most once a minute, by whichever request
    comes first, which is bookkeeping, not the page."""
    assert client.get(url, headers=headers).status_code == 200
    with recorded_statements(app) as statements:
        response = client.get(url, headers=headers)
    assert response.status_code == 200, response.status_code
    return Measured(list(statements), response.get_data(as_text=True))


def measure_limits(app: Flask, client: FlaskClient, url: str, counted: str) -> dict[int, Measured]:
    """``url`` with ``limit`` SMALL and LARGE; each answer shows ``counted`` that many times."""
    measured = {}
    for size in (SMALL, LARGE):
        separator = "&" if "?" in url else "?"
        measured[size] = measure(app, client, f"{url}{separator}limit={size}")
        assert measured[size].body.count(counted) == size
    return measured


def measure_page_sizes(
    app: Flask,
    monkeypatch: pytest.MonkeyPatch,
    setting: str,
    client: FlaskClient,
    url: str,
    rows: re.Pattern[str],
    headers: dict | None = None,
) -> dict[int, Measured]:
    """``url`` with the page size ``profile_views.<setting>`` SMALL and LARGE;
    each answer shows that many ``rows``."""
    measured = {}
    for size in (SMALL, LARGE):
        monkeypatch.setattr(profile_views, setting, size)
        measured[size] = measure(app, client, url, headers)
        assert len(rows.findall(measured[size].body)) == size
    return measured


def assert_constant(measured: dict[int, Measured], most: int) -> None:
    """The same count for every page size, and no more than ``most``
    (what the page needs today; a new query per request must be a choice)."""
    counts = {size: m.count for size, m in measured.items()}
    largest = measured[max(measured)]
    listing = "\n".join(largest.statements)
    assert len(set(counts.values())) == 1, f"counts by page size {counts}:\n{listing}"
    assert largest.count <= most, f"{largest.count} statements, expected at most {most}:\n{listing}"


# --- data -------------------------------------------------------------------------


@dataclass(frozen=True)
class Log:
    """The readers of the log, and the profile with the longest history."""

    auditor: FlaskClient
    support: FlaskClient
    admin_api: FlaskClient
    busy_id: int


@pytest.fixture
def log(app, client, staff_factory, signed_in, engine, database) -> Log:
    """Over 50 profiles and 150 entries, by several accounts through every channel.

    Some profiles are deleted (and some of those restored); some changes are
    written behind the application's back (unattributed); one profile has a
    history longer than any page.
    """
    admin_api = client
    support_api = staff_factory.client("support", "api-support")
    web_support = signed_in("support", "web-support")
    cli_admin = staff_factory.account("admin", "cli-admin")

    def web_edit(user_id: int, name: str) -> None:
        current = database.user(user_id)
        response = web_support.post(
            f"/users/{user_id}/edit",
            data={"name": name, "email": current["email"], "expected_version": current["version"]},
            headers={**HTMX, "X-CSRFToken": page_token(web_support)},
        )
        assert response.status_code == 200, response.status_code

    def cli_edit(user_id: int, name: str) -> None:
        with app.app_context(), acting_as(Actor(cli_admin.id, "cli-admin"), Origin("cli")):
            user_service.update_user(user_id, {"name": name})

    def raw_edit(user_id: int, name: str) -> None:
        with engine.begin() as connection:  # as psql would: the trigger records it
            connection.execute(
                text("UPDATE users SET name = :name WHERE id = :id"), {"name": name, "id": user_id}
            )

    def api_edit(api: FlaskClient):
        def edit(user_id: int, name: str) -> None:
            assert api.patch(f"/api/v1/users/{user_id}", json={"name": name}).status_code == 200

        return edit

    ids = [
        post_profile(admin_api if number % 2 else support_api, f"P{number}", f"p{number}@x.example")
        for number in range(60)
    ]
    busy_id = ids[-1]
    editors = [api_edit(admin_api), api_edit(support_api), web_edit, cli_edit, raw_edit]
    for number in range(55):
        editors[number % len(editors)](busy_id, f"Busy {number}")
    assert admin_api.delete(f"/api/v1/users/{busy_id}").status_code == 204
    assert support_api.post(f"/api/v1/users/{busy_id}/restore").status_code == 200

    for user_id in ids[:10]:
        web_edit(user_id, f"Web {user_id}")
    for user_id in ids[10:20]:
        assert admin_api.delete(f"/api/v1/users/{user_id}").status_code == 204
    for user_id in ids[10:15]:
        assert support_api.post(f"/api/v1/users/{user_id}/restore").status_code == 200
    for user_id in ids[20:25]:
        raw_edit(user_id, f"Raw {user_id}")
    for user_id in ids[25:30]:
        cli_edit(user_id, f"Cli {user_id}")

    assert database.scalar("SELECT count(*) FROM user_audit") > 150
    # The newest page mixes profiles, accounts and channels, as the oldest does.
    newest = database.rows(
        "SELECT user_id, actor_label, channel FROM user_audit"
        " ORDER BY timestamp DESC, id DESC LIMIT :n",
        n=LARGE,
    )
    assert len({row["user_id"] for row in newest}) > 20
    assert len({row["actor_label"] for row in newest}) >= 4
    assert {row["channel"] for row in newest} == {"web", "api", "cli", "database"}
    return Log(signed_in("auditor", "audrey"), web_support, admin_api, busy_id)


# --- the timeline -------------------------------------------------------------------


def timeline(app, log, size, headers=None):
    measured = measure(app, log.auditor, f"/audit?limit={size}", headers)
    assert len(ENTRY.findall(measured.body)) == size
    return measured


def test_timeline_page_queries_do_not_grow_with_its_size(app, log):
    measured = {size: timeline(app, log, size) for size in (SMALL, LARGE)}
    # The signed-in account, the entries, and for the badge the last
    # verification run and the linking backlog.
    assert_constant(measured, most=4)


def test_timeline_fragment_queries_do_not_grow_with_its_size(app, log):
    measured = {size: timeline(app, log, size, HTMX) for size in (SMALL, LARGE)}
    # The account and the entries: a fragment has no verification badge.
    assert_constant(measured, most=2)


@pytest.mark.parametrize(
    ("headers", "most"), [(HTMX, 2), (None, 4)], ids=["fragment", "whole-page"]
)
def test_timeline_next_page_queries_do_not_grow_with_its_size(app, log, headers, most):
    measured = {}
    for size in (SMALL, LARGE):
        first = timeline(app, log, size, headers)
        next_url = html.unescape(TIMELINE_NEXT.search(first.body).group(1))
        measured[size] = measure(app, log.auditor, next_url, headers)
        assert len(ENTRY.findall(measured[size].body)) == size
    # As the first page: the cursor is decoded, not looked up.
    assert_constant(measured, most=most)


def test_timeline_json_queries_do_not_grow_with_its_size(app, log):
    measured = measure_limits(app, log.admin_api, "/api/v1/audit", '"operation"')
    # The token with its account (one join), the entries.
    assert_constant(measured, most=2)


def test_api_export_queries_do_not_grow_with_its_length(app, log):
    measured = {}
    for query in (f"user_id={log.busy_id - 1}", ""):
        url = "/api/v1/audit/export?format=ndjson&" + query
        result = measure(app, log.admin_api, url)
        measured[result.body.count("\n")] = result
    assert min(measured) < 5 < 150 < max(measured)
    # The token with its account, the security event, the entries (one batch).
    assert_constant(measured, most=3)


# --- the security events -------------------------------------------------------------------


@pytest.fixture
def events(app, signed_in):
    """Sixty events of several kinds, some of them repeated and counted."""
    kinds = ["token_rejected", "csrf_failed", "login_failed", "staff_created", "forbidden"]
    with app.app_context():
        for number in range(60):
            origin = Origin("web", remote_addr=f"192.0.2.{number % 7}")
            with acting_as(Actor(None, f"cli:ops{number % 3}"), origin):
                for _ in range(1 + number % 2):
                    record_event(kinds[number % len(kinds)], username=f"user{number}")
    return signed_in("auditor", "audrey")


def test_security_events_page_queries_do_not_grow_with_its_size(app, events):
    measured = measure_limits(app, events, "/security-events", '<tr id="event-')
    # The signed-in account, the events with their counts (one join).
    assert_constant(measured, most=2)


def test_security_events_json_queries_do_not_grow_with_its_size(app, events, client):
    measured = measure_limits(app, client, "/api/v1/security-events", '"last_seen"')
    # The token with its account, the events with their counts.
    assert_constant(measured, most=2)


# --- the profile list ------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "?deleted=1"], ids=["active", "with-deleted"])
def test_profile_list_page_queries_do_not_grow_with_its_size(app, log, monkeypatch, query):
    # Support staff, so every row has its edit, delete or restore buttons.
    measured = measure_page_sizes(
        app, monkeypatch, "PAGE_SIZE", log.support, f"/users{query}", PROFILE_ROW
    )
    # The signed-in account, the profiles.
    assert_constant(measured, most=2)


def test_profile_list_json_queries_do_not_grow_with_its_size(app, log):
    measured = measure_limits(app, log.admin_api, "/api/v1/users?include_deleted=true", '"email"')
    # The token with its account, the profiles.
    assert_constant(measured, most=2)


# --- a profile's history ------------------------------------------------------------------


def test_history_json_queries_do_not_grow_with_its_size(app, log):
    measured = measure_limits(
        app, log.admin_api, f"/api/v1/users/{log.busy_id}/history", '"operation"'
    )
    # The token with its account, the profile (a 404 if there is none), its entries.
    assert_constant(measured, most=3)


def test_profile_page_history_queries_do_not_grow_with_its_size(app, log, monkeypatch):
    measured = measure_page_sizes(
        app, monkeypatch, "HISTORY_PAGE_SIZE", log.auditor, f"/users/{log.busy_id}", HISTORY_ENTRY
    )
    # The signed-in account, the profile, its entries (read once for both the
    # history and who changed each field last).
    assert_constant(measured, most=3)


def test_older_history_fragment_queries_do_not_grow_with_its_size(app, log, monkeypatch):
    # The link from a small first page leaves room for a full older page.
    monkeypatch.setattr(profile_views, "HISTORY_PAGE_SIZE", SMALL)
    first = measure(app, log.auditor, f"/users/{log.busy_id}")
    older_url = html.unescape(HISTORY_NEXT.search(first.body).group(1))
    measured = measure_page_sizes(
        app, monkeypatch, "HISTORY_PAGE_SIZE", log.auditor, older_url, HISTORY_ENTRY, HTMX
    )
    # The signed-in account, the profile, the older entries.
    assert_constant(measured, most=3)


# --- saves ----------------------------------------------------------------------

COMMIT = "COMMIT"


@contextmanager
def recorded_statements_and_commits(app: Flask) -> Iterator[list[str]]:
    """Like ``recorded_statements``, with ``COMMIT`` where each transaction commits."""
    with app.app_context():
        engine = db.engine

    def committing(connection):
        statements.append(COMMIT)

    with recorded_statements(app) as statements:
        event.listen(engine, "commit", committing)
        try:
            yield statements
        finally:
            event.remove(engine, "commit", committing)


def after_commit(statements: list[str]) -> list[str]:
    assert statements.count(COMMIT) == 1, statements
    return statements[statements.index(COMMIT) + 1 :]


def test_a_profile_saved_through_the_api_is_answered_without_reading_it_back(app, client):
    """The answer to a save is what was flushed; reading it back after COMMIT
    would cost a BEGIN, a SELECT and a ROLLBACK for the same values."""
    # The token's first use is written once; that commit is not the save's.
    assert client.get("/api/v1/users").status_code == 200
    with recorded_statements_and_commits(app) as statements:
        created = client.post("/api/v1/users", json={"name": "Ada", "email": "ada@example.com"})
    assert created.status_code == 201, created.get_json()
    assert after_commit(statements) == []
    user_id = created.get_json()["id"]

    with recorded_statements_and_commits(app) as statements:
        updated = client.patch(
            f"/api/v1/users/{user_id}", json={"name": "Ada Lovelace"}, headers={"If-Match": '"1"'}
        )
    assert updated.status_code == 200, updated.get_json()
    assert after_commit(statements) == []
    # What was answered is what committed, including what the database filled in.
    answer = updated.get_json()
    assert (answer["name"], answer["version"], updated.headers["ETag"]) == (
        "Ada Lovelace",
        2,
        '"2"',
    )
    fetched = client.get(f"/api/v1/users/{user_id}").get_json()
    assert fetched == answer


def test_a_profile_saved_in_the_dashboard_is_not_read_back_after_commit(app, client, signed_in):
    user_id = post_profile(client, "Ada", "ada@example.com")
    browser = signed_in("support")
    path = f"/users/{user_id}/edit"
    token = page_token(browser, path)
    with recorded_statements_and_commits(app) as statements:
        response = browser.post(
            path,
            data={
                "csrf_token": token,
                "name": "Ada Lovelace",
                "email": "ada@example.com",
                "expected_version": "1",
            },
        )
    assert response.status_code == 302, response.status_code
    assert after_commit(statements) == []
