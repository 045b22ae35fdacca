"""Faults: the database connection dies, the database restarts, the audit insert fails.

In every case either the change and its audit entry both exist or neither
does, the client gets a clear error (503 or 500 with a request id, never a
stack trace), and the same app serves the next requests without a restart.

* A request's connection is killed (``pg_terminate_backend``) while its
  transaction holds the written change, just before COMMIT; or just after
  COMMIT, as the connection goes back to the pool, when the client must still
  be told of the change that was saved.
* A separate embedded PostgreSQL is stopped and started again while client
  threads keep creating and editing profiles; afterwards every profile's
  versions match its audit entries one to one, and every success a client saw
  is in the history. Then it restarts once more while idle, and the pooled
  (now dead) connections are replaced without a single failed request.
* A trigger makes the database refuse one audit entry: the change is refused
  with it.

These tests look only at HTTP responses and at the ``users`` and
``user_audit`` tables, never at how the app writes its entries.
"""

from __future__ import annotations

import contextvars
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import Session, UOWTransaction
from sqlalchemy.pool import NullPool
from werkzeug.test import TestResponse

from tests.support.api import PROBLEM
from tests.support.database import Database
from tests.support.pages import form_token, text_of
from tests.support.profiles import post_profile
from tests.support.staff import StaffFactory, client_like
from webapp import create_app
from webapp.config import database_url
from webapp.dev.local_database import ensure_database, scratch_directory, start_embedded_server
from webapp.extensions import db
from webapp.models import User

if TYPE_CHECKING:
    from collections.abc import Sequence

# Only there to turn a hang into a failure.
TIMEOUT = 30.0  # seconds any one wait may take before the test is declared stuck
# What a stack trace or a leaked driver error would contain.
LEAKS = ("Traceback", 'File "', "sqlalchemy", "psycopg", "OperationalError", "Error:")


def assert_clean_error(
    response: TestResponse, statuses: Sequence[int], client_request_id: str | None = None
) -> None:
    """``response`` is a server error that names its request id and shows no internals.

    The id is the server's own, never ``client_request_id``, the one the client sent.

    Under ``/api`` it is problem+json, elsewhere an HTML page.
    """
    assert response.status_code in statuses, (response.status_code, response.get_data())
    body = response.get_data(as_text=True)
    echoed = response.headers["X-Request-ID"]
    assert len(echoed) == 32
    if client_request_id is not None:
        assert echoed != client_request_id
    if response.request.path.startswith("/api/"):
        assert response.mimetype == PROBLEM
        problem = response.get_json()
        assert problem["status"] == response.status_code
        assert problem["request_id"] == echoed
        assert problem["detail"]
    else:
        assert response.mimetype == "text/html"
        assert "<html" in body
        assert echoed in text_of(response)
    if response.status_code == 503:
        assert response.headers["Retry-After"]
    for leak in LEAKS:
        assert leak not in body, (leak, body)


# -- the connection dies mid-change ------------------------------------------------


class BackendKiller:
    """Kills the connection of the next profile change at one of the engine's events.

    ``"commit"`` fires when every flush listener has run and COMMIT is next:
    the change and whatever was written with it are in the transaction, not
    yet committed. ``"checkin"`` fires when the connection goes back to the
    pool, as it does right after COMMIT, before the answer is made.
    """

    def __init__(self, outside: Engine) -> None:
        self.outside = outside
        self.killed: int | None = None  # the server process that was terminated
        self.state_when_killed: tuple[str, bool] | None = None
        self._armed_in = threading.local()

    def after_flush(self, session: Session, flush_context: UOWTransaction) -> None:
        # After a flush the session still lists what it flushed as new or dirty.
        if self.killed is None and any(isinstance(o, User) for o in (*session.new, *session.dirty)):
            self._armed_in.flag = True

    def at_moment(self, connection: Any, *args: Any) -> None:
        # Engine events pass the engine's Connection, pool events the DBAPI connection.
        if self.killed is not None or not getattr(self._armed_in, "flag", False):
            return
        self._armed_in.flag = False
        if isinstance(connection, Connection):
            connection = connection.connection.dbapi_connection
        pid = connection.info.backend_pid
        with self.outside.connect() as outside:
            state = outside.execute(
                text(
                    "SELECT state, backend_xid IS NOT NULL AS wrote "
                    "FROM pg_stat_activity WHERE pid = :pid"
                ),
                {"pid": pid},
            ).one()
            self.state_when_killed = (state.state, state.wrote)
            # The second argument waits (ms) until the backend is really gone.
            assert outside.execute(
                text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid}
            ).scalar()
        self.killed = pid


@contextmanager
def backend_killed_at(app: Flask, outside: Engine, moment: str) -> Iterator[BackendKiller]:
    """A ``BackendKiller`` on ``app``'s connections, for the duration of the block only."""
    killer = BackendKiller(outside)
    with app.app_context():
        app_engine = db.engine
    event.listen(Session, "after_flush", killer.after_flush)
    event.listen(app_engine, moment, killer.at_moment)
    try:
        yield killer
    finally:
        event.remove(app_engine, moment, killer.at_moment)
        event.remove(Session, "after_flush", killer.after_flush)


def _api_patch(client: FlaskClient, user_id: int, name: str, request_id: str) -> TestResponse:
    return client.patch(
        f"/api/v1/users/{user_id}",
        json={"name": name, "reason": "fault test"},
        headers={"X-Request-ID": request_id},
    )


def _api_post(client: FlaskClient, user_id: int, name: str, request_id: str) -> TestResponse:
    email = name.lower().replace(" ", ".") + "@example.com"
    return client.post(
        "/api/v1/users", json={"name": name, "email": email}, headers={"X-Request-ID": request_id}
    )


def _web_edit(browser: FlaskClient, user_id: int, name: str, request_id: str) -> TestResponse:
    path = f"/users/{user_id}/edit"
    return browser.post(
        path,
        data={
            "csrf_token": form_token(browser, path),
            "name": name,
            "email": "ada@example.com",
            "expected_version": "1",
        },
        headers={"X-Request-ID": request_id},
    )


@pytest.mark.parametrize("send", [_api_patch, _api_post, _web_edit], ids=lambda f: f.__name__)
def test_a_connection_killed_before_commit_saves_nothing_and_the_app_carries_on(
    app: Flask,
    client: FlaskClient,
    signed_in: Callable[[str], FlaskClient],
    engine: Engine,
    database: Database,
    send: Callable[[FlaskClient, int, str, str], TestResponse],
) -> None:
    user_id = post_profile(client, "Ada", "ada@example.com")
    requester = signed_in("support") if send is _web_edit else client_like(app, client)
    before = database.fingerprint()
    request_id = f"fault-{send.__name__}-killed"

    with backend_killed_at(app, engine, "commit") as killer:
        response = send(requester, user_id, "Never Saved", request_id)

    assert killer.killed is not None
    # Mid-change: the transaction had written, and had not committed.
    assert killer.state_when_killed == ("idle in transaction", True)
    assert_clean_error(response, (503,), request_id)
    # Neither the change nor its entry survived.
    assert database.fingerprint() == before

    # The same app and the same client go on as before: one change, one entry.
    again = send(requester, user_id, "Ada Lovelace", f"fault-{send.__name__}-again")
    assert again.status_code in (200, 201, 302), again.get_data()
    entries = database.audit()
    assert len(entries) == len(before[1]) + 1
    assert entries[-1]["new_data"]["name"] == "Ada Lovelace"
    assert entries[-1]["request_id"] == again.headers["X-Request-ID"]
    assert entries[-1]["client_request_id"] == f"fault-{send.__name__}-again"
    changed = database.user(entries[-1]["user_id"])
    assert (changed["name"], changed["version"]) == ("Ada Lovelace", entries[-1]["version"])
    assert "Never Saved" not in str(database.fingerprint())


def test_a_connection_lost_after_commit_keeps_the_answer_and_the_change(
    app: Flask, client: FlaskClient, engine: Engine, database: Database
) -> None:
    user_id = post_profile(client, "Ada", "ada@example.com")

    # The change commits, and the connection dies as it goes back to the
    # pool, before the answer is made.
    with backend_killed_at(app, engine, "checkin") as killer:
        response = client.patch(f"/api/v1/users/{user_id}", json={"name": "Ada Lovelace"})

    assert killer.killed is not None
    # Committed: nothing was open on the connection any more.
    assert killer.state_when_killed == ("idle", False)
    # What was committed is what the client is told.
    assert response.status_code == 200, response.get_data()
    assert (response.get_json()["name"], response.get_json()["version"]) == ("Ada Lovelace", 2)
    assert [(e["operation"], e["version"]) for e in database.audit(user_id)] == [
        ("create", 1),
        ("update", 2),
    ]
    # And the same client goes on as before.
    again = client.patch(f"/api/v1/users/{user_id}", json={"name": "Ada King"})
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["version"] == 3
    assert len(database.audit(user_id)) == 3


# -- the audit insert fails -----------------------------------------------------------

REFUSED_NAME = "make-the-audit-fail"


@contextmanager
def audit_entries_refused_for(engine: Engine, name: str) -> Iterator[None]:
    """Make the database refuse any audit entry of a rename to ``name``.

    The database cannot read the entry's values (they are encrypted), so it
    refuses every rename it sees while the application is renaming to ``name``.
    A trigger of the test's own, beside the table's append-only ones, dropped
    again afterwards so the table stays as the migrations left it.
    """
    with engine.begin() as connection:
        connection.execute(
            text(
                "CREATE FUNCTION test_faults_refuse_audit_entry() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.operation = 'update' AND 'name' = ANY (NEW.changed_fields) "
                "AND EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id AND name = '"
                + name.replace("'", "''")
                + "') THEN "
                "RAISE EXCEPTION 'audit entry refused by the fault test'; "
                "END IF; RETURN NEW; END $$"
            )
        )
        connection.execute(
            text(
                "CREATE TRIGGER test_faults_refuse_audit_entry BEFORE INSERT ON user_audit "
                "FOR EACH ROW EXECUTE FUNCTION test_faults_refuse_audit_entry()"
            )
        )
    try:
        yield
    finally:
        with engine.begin() as connection:
            connection.execute(
                text("DROP TRIGGER IF EXISTS test_faults_refuse_audit_entry ON user_audit")
            )
            connection.execute(text("DROP FUNCTION IF EXISTS test_faults_refuse_audit_entry()"))


def test_a_refused_audit_entry_refuses_the_change(
    app: Flask,
    client: FlaskClient,
    signed_in: Callable[[str], FlaskClient],
    engine: Engine,
    database: Database,
) -> None:
    user_id = post_profile(client, "Ada", "ada@example.com")
    browser = signed_in("support")
    before = database.fingerprint()
    edit = f"/users/{user_id}/edit"

    with audit_entries_refused_for(engine, REFUSED_NAME):
        over_api = client.patch(
            f"/api/v1/users/{user_id}",
            json={"name": REFUSED_NAME},
            headers={"X-Request-ID": "fault-audit-api"},
        )
        assert_clean_error(over_api, (500,), "fault-audit-api")
        assert "refused by the fault test" not in over_api.get_data(as_text=True)

        over_web = browser.post(
            edit,
            data={
                "csrf_token": form_token(browser, edit),
                "name": REFUSED_NAME,
                "email": "ada@example.com",
                "expected_version": "1",
            },
            headers={"X-Request-ID": "fault-audit-web"},
        )
        assert_clean_error(over_web, (500,), "fault-audit-web")
        assert "refused by the fault test" not in over_web.get_data(as_text=True)

        # The profile keeps its name and version, and has no new entry.
        assert database.fingerprint() == before
        row = database.user(user_id)
        assert (row["name"], row["version"]) == ("Ada", 1)

        # Other changes are audited as usual, on the same app and clients.
        renamed = client.patch(f"/api/v1/users/{user_id}", json={"name": "Ada Lovelace"})
        assert renamed.status_code == 200, renamed.get_json()
        saved = browser.post(
            edit,
            data={
                "csrf_token": form_token(browser, edit),
                "name": "Ada King",
                "email": "ada@example.com",
                "expected_version": "2",
            },
        )
        assert saved.status_code == 302, saved.status_code

    entries = database.audit(user_id)
    assert [(e["operation"], e["version"], e["new_data"]["name"]) for e in entries] == [
        ("create", 1, "Ada"),
        ("update", 2, "Ada Lovelace"),
        ("update", 3, "Ada King"),
    ]
    assert database.user(user_id)["version"] == 3


# -- the database restarts under traffic ------------------------------------------------

WORKERS = 4
# How long traffic runs before the restart, and how many successes each
# worker must see once the database is back, before the traffic stops.
WARM_UP_SUCCESSES = 3
SUCCESSES_AFTER_RESTART = 3
TRAFFIC_DEADLINE = 25.0  # seconds the whole traffic phase may take at most
RETRY_PAUSE = 0.01  # seconds a worker waits after a failure, not to spin while it is down


@dataclass(frozen=True)
class Outcome:
    """One request a worker sent, and what it was answered."""

    kind: str  # "create" or "update"
    user_id: int | None
    name: str
    response: TestResponse
    at: float  # time.monotonic() when the answer came


@dataclass
class Traffic:
    """Workers that create and rename their own profiles until told to stop."""

    app: Flask
    template: FlaskClient
    stop: threading.Event = field(default_factory=threading.Event)
    outcomes: list[list[Outcome]] = field(default_factory=list)

    def successes_since(self, moment: float) -> list[int]:
        """Per worker, how many requests succeeded after ``moment``."""
        return [
            sum(1 for o in mine if o.at > moment and o.response.status_code < 300)
            for mine in list(self.outcomes)
        ]

    def summary(self) -> list[object]:
        """Per worker: requests sent, and the last answer (for a failure message)."""
        return [
            (len(mine), mine[-1].response.status_code, mine[-1].response.get_data()[:300])
            if mine
            else None
            for mine in list(self.outcomes)
        ]

    def worker(self, number: int) -> Callable[[], None]:
        mine: list[Outcome] = []
        self.outcomes.append(mine)

        def run() -> None:
            own_client = client_like(self.app, self.template)
            profiles: list[int] = []
            i = 0
            while not self.stop.is_set():
                i += 1
                if not profiles or i % 3 == 0:
                    name = f"worker {number} profile {i}"
                    response = own_client.post(
                        "/api/v1/users",
                        json={"name": name, "email": f"w{number}-{i}@example.com"},
                    )
                    created = response.get_json()["id"] if response.status_code == 201 else None
                    if created is not None:
                        profiles.append(created)
                    outcome = Outcome("create", created, name, response, time.monotonic())
                else:
                    user_id = profiles[i % len(profiles)]
                    name = f"worker {number} rename {i}"
                    response = own_client.patch(f"/api/v1/users/{user_id}", json={"name": name})
                    outcome = Outcome("update", user_id, name, response, time.monotonic())
                mine.append(outcome)
                if response.status_code >= 300:
                    self.stop.wait(RETRY_PAUSE)

        return run


def _wait_for(
    condition: Callable[[], bool], what: str, deadline: float, state: Callable[[], object]
) -> None:
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}: {state()}")
        time.sleep(0.01)


def _restart(server: Any) -> None:
    """Stop the server (fast: open sessions are cut off) and start it on the same data."""
    server.pg_ctl(["-w", "-m", "fast", "stop"])
    server.ensure_postgres_running()


@pytest.fixture
def own_server() -> Iterator[tuple[Any, str]]:
    """An embedded PostgreSQL of this test's own, with a migrated database: (server, url).

    Never the suite's shared server, which other tests are using.
    """
    parent = scratch_directory("profile-audit-faults-")
    server = start_embedded_server(parent / "data", delete_on_stop=True)
    try:
        yield server, ensure_database(server.get_uri(), "profile_audit_faults")
    finally:
        server.cleanup()
        shutil.rmtree(parent, ignore_errors=True)


def test_a_database_restart_under_traffic_loses_no_audit_entry(
    own_server: tuple[Any, str],
) -> None:
    server, url = own_server
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url(url)})
    outside = create_engine(database_url(url), poolclass=NullPool)
    try:
        with app.app_context():
            upgrade()
        template = StaffFactory(app, outside).client("admin", "restart-admin")
        _run_traffic_through_restarts(app, template, server, outside)
    finally:
        with app.app_context():
            db.engine.dispose()
        outside.dispose()


def _run_traffic_through_restarts(
    app: Flask, template: FlaskClient, server: Any, outside: Engine
) -> None:
    deadline = time.monotonic() + TRAFFIC_DEADLINE
    traffic = Traffic(app, template)
    first_pid = server.get_pid()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = [
            pool.submit(contextvars.copy_context().run, traffic.worker(n)) for n in range(WORKERS)
        ]
        try:

            def through_since(moment: float, successes: int) -> Callable[[], bool]:
                # A worker that died ends the wait too: its error is raised below.
                return lambda: (
                    min(traffic.successes_since(moment)) >= successes
                    or any(future.done() for future in futures)
                )

            _wait_for(
                through_since(0.0, WARM_UP_SUCCESSES),
                "every worker got through before the restart",
                deadline,
                traffic.summary,
            )
            _restart(server)
            back = time.monotonic()
            _wait_for(
                through_since(back, SUCCESSES_AFTER_RESTART),
                "every worker got through again after the restart",
                deadline,
                traffic.summary,
            )
        finally:
            traffic.stop.set()
        for future in futures:
            future.result(TIMEOUT)
    assert server.get_pid() != first_pid  # it really was restarted

    outcomes = [o for mine in traffic.outcomes for o in mine]
    failures = [o for o in outcomes if o.response.status_code >= 300]
    # The restart hit requests in flight and requests while it was down...
    assert failures
    for outcome in outcomes:
        if outcome.response.status_code not in (200, 201):
            # ...and each of those got a clean error, never a stack trace.
            assert_clean_error(outcome.response, (500, 503))
    _assert_consistent(outside, [o for o in outcomes if o.response.status_code < 300])

    # Once more while idle: every pooled connection is now dead, and
    # pre-ping replaces each one before a request can fail on it.
    _restart(server)
    burst = _simultaneous_creates(app, template, WORKERS)
    assert [o.response.status_code for o in burst] == [201] * WORKERS
    _assert_consistent(outside, [o for o in outcomes + burst if o.response.status_code < 300])
    # And the hash chain over all of it is whole: no link lost or forked.
    verified = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert "OK:" in verified.output


def _simultaneous_creates(app: Flask, template: FlaskClient, count: int) -> list[Outcome]:
    """``count`` clients each create one profile at the same moment."""
    start = threading.Barrier(count, timeout=TIMEOUT)

    def create(number: int) -> Outcome:
        own_client = client_like(app, template)
        name = f"burst {number}"
        start.wait()
        response = own_client.post(
            "/api/v1/users", json={"name": name, "email": f"burst-{number}@example.com"}
        )
        user_id = response.get_json().get("id") if response.status_code == 201 else None
        return Outcome("create", user_id, name, response, time.monotonic())

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(contextvars.copy_context().run, create, n) for n in range(count)]
        return [future.result(TIMEOUT) for future in futures]


def _assert_consistent(outside: Engine, successes: list[Outcome]) -> None:
    """Each profile's version counts its audit entries, and each success has its entry."""
    with outside.connect() as connection:
        profiles = {
            row.id: row for row in connection.execute(text("SELECT id, name, version FROM users"))
        }
    entries: dict[int, list[Any]] = {}
    for row in Database(outside).audit():  # personal values decrypted
        entries.setdefault(row["user_id"], []).append(SimpleNamespace(**row))
    assert set(entries) == set(profiles)
    for user_id, profile in profiles.items():
        history = entries[user_id]
        assert [e.version for e in history] == list(range(1, len(history) + 1)), user_id
        assert profile.version == len(history)
        assert [e.operation for e in history] == ["create"] + ["update"] * (len(history) - 1)
        assert history[-1].new_data["name"] == profile.name
    for success in successes:
        version = success.response.get_json()["version"]
        entry = entries[success.user_id][version - 1]
        assert (entry.operation, entry.new_data["name"]) == (success.kind, success.name)
