"""Test fixtures: one real PostgreSQL database per test session, migrated with
the real migrations, emptied before every test.

Without ``TEST_DATABASE_URL`` a throwaway embedded PostgreSQL is started (and
deleted afterwards). Either way the suite works in its own database, created
for the session and dropped at the end.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from flask_migrate import upgrade
from sqlalchemy import Connection, Engine, create_engine, text

from webapp import create_app
from webapp.audit.chain import GENESIS_HASH
from webapp.audit.context import Actor, Origin, acting_as
from webapp.audit.entry_ids import entry_ids
from webapp.audit.sealer import link_all
from webapp.config import KEY_SETTINGS, database_url, random_key
from webapp.dev.local_database import (
    drop_database,
    ensure_database,
    scratch_directory,
    start_embedded_server,
)
from webapp.dev.server_user import EmbeddedServerRefused
from webapp.extensions import db
from webapp.models import Staff
from webapp.services import api_tokens
from webapp.services.staff import hash_password

# Every app the suite creates, here or in a subprocess, links entries only when
# a test says so (link_chain), never from a thread behind the tests' backs.
os.environ["AUDIT_SEALER"] = "off"
#: The suite's keys, new at random for every run. Put in the environment too,
#: so every app the tests start (in-process, ``flask`` and gunicorn
#: subprocesses) shares them, as a deployment's processes do; tests of what
#: happens without keys take them out.
SUITE_KEYS = {name: random_key() for name in KEY_SETTINGS}
os.environ.update(SUITE_KEYS)


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A libpq URL of a PostgreSQL server the suite may create databases on."""
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield external
        return
    # A directory of its own, not pytest's shared base temp, which a
    # concurrent run may clean up under a running server.
    try:
        parent = scratch_directory("profile-audit-test-")
    except EmbeddedServerRefused as refusal:
        # One line, rather than the same traceback under every test.
        pytest.exit(str(refusal), returncode=pytest.ExitCode.USAGE_ERROR)
    server = start_embedded_server(parent / "data", delete_on_stop=True)
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def database_name() -> str:
    return f"profile_audit_test_{os.getpid()}"


@pytest.fixture(scope="session")
def test_database_url(server_url: str, database_name: str) -> Iterator[str]:
    drop_database(server_url, database_name)
    url = ensure_database(server_url, database_name)
    yield url
    drop_database(server_url, database_name)


@pytest.fixture(scope="session")
def app(test_database_url: str) -> Flask:
    application = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_url(test_database_url),
            "WTF_CSRF_ENABLED": True,
            **SUITE_KEYS,
        }
    )
    with application.app_context():
        upgrade()
    return application


@pytest.fixture(scope="session")
def engine(test_database_url: str, app: Flask) -> Iterator[Engine]:
    """An engine of its own, for looking at the database from outside the app."""
    eng = create_engine(database_url(test_database_url), pool_size=2)
    yield eng
    eng.dispose()


TABLES = (
    "audit_chain, audit_chain_pending, audit_verifications, "
    "user_audit, users, api_tokens, security_events, security_event_repeats, staff_sessions, "
    "staff, sign_in_attempts"
)
# Hashing is slow on purpose; the suite hashes this password once.
PASSWORD = "correct horse battery staple"
_PASSWORD_HASH = hash_password(PASSWORD)


APPEND_ONLY_TABLES = (
    "user_audit",
    "security_events",
    "audit_chain",
    "audit_chain_head",
    "audit_verifications",
    "security_event_repeats",
)


@contextmanager
def append_only_lifted(connection: Connection) -> Iterator[Connection]:
    """Let a test rewrite audit history (empty it, backdate entries), which the
    database refuses to anyone else. Inside one transaction, so no other
    session ever sees the guard down."""
    for table in APPEND_ONLY_TABLES:
        connection.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
    yield connection
    for table in APPEND_ONLY_TABLES:
        connection.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))


@pytest.fixture(autouse=True)
def _empty_tables(engine: Engine) -> None:
    with engine.begin() as connection, append_only_lifted(connection):
        connection.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
        connection.execute(
            text("UPDATE audit_chain_head SET seq = 0, hash = :genesis"),
            {"genesis": GENESIS_HASH},
        )
    # The ids reserved before the sequence restarted would be handed out again.
    entry_ids.forget()


@pytest.fixture
def link_chain(app: Flask, engine: Engine) -> Callable[[], int]:
    """Link every committed entry into the chain, as the sealer would after COMMIT."""

    def link() -> int:
        return link_all(engine, app.config["AUDIT_CHAIN_KEY"].encode())

    return link


class StaffFactory:
    """Makes staff accounts (password ``PASSWORD``) and API tokens for them."""

    password = PASSWORD

    def __init__(self, app: Flask, engine: Engine) -> None:
        self.app = app
        self.engine = engine

    def account(self, role: str, username: str | None = None) -> Staff:
        username = username or f"{role}-{uuid.uuid4().hex[:6]}"
        with self.engine.begin() as connection:
            staff_id = connection.execute(
                text(
                    "INSERT INTO staff (username, password_hash, role) "
                    "VALUES (:u, :h, :r) RETURNING id"
                ),
                {"u": username, "h": _PASSWORD_HASH, "r": role},
            ).scalar_one()
        with self.app.app_context():
            staff = db.session.get(Staff, staff_id)
            db.session.expunge(staff)
        return staff

    def token(
        self,
        staff: Staff,
        name: str = "tests",
        *,
        created_by: Staff | None = None,
        **kwargs: object,
    ) -> str:
        """A token acting as ``staff``, created by ``created_by`` (else from the command line)."""
        creator = (
            Actor(created_by.id, created_by.username)
            if created_by is not None
            else Actor(None, "cli:tests", channel_detail="tests")
        )
        with self.app.app_context(), acting_as(creator, Origin("cli")):
            _, secret = api_tokens.create_token(db.session.get(Staff, staff.id), name, **kwargs)
        return secret

    def client(self, role: str | None, username: str | None = None) -> FlaskClient:
        """A test client that sends a token of a new ``role`` account (none for None)."""
        test_client = self.app.test_client()
        if role is not None:
            staff = self.account(role, username)
            secret = self.token(staff)
            test_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
            test_client.staff = staff  # type: ignore[attr-defined]
        return test_client


@pytest.fixture
def staff_factory(app: Flask, engine: Engine) -> StaffFactory:
    return StaffFactory(app, engine)


@pytest.fixture
def client(staff_factory: StaffFactory) -> FlaskClient:
    """An API client acting as an admin (every permission) through a token."""
    return staff_factory.client("admin", "test-admin")


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    """Runs ``flask`` commands in-process against the test database."""
    return app.test_cli_runner()


@pytest.fixture
def anonymous_client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def app_context(app: Flask, staff_factory: StaffFactory) -> Iterator[Staff]:
    """For calling services directly, acting as an admin from the command line."""
    admin = staff_factory.account("admin", "service-admin")
    with app.app_context(), acting_as(Actor(admin.id, admin.username), Origin("cli")):
        yield admin
        db.session.rollback()


class Database:
    """Reads the database through its own connection, as an auditor would."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def rows(self, query: str, **params: object) -> list[dict[str, object]]:
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(text(query), params)]

    def scalar(self, query: str, **params: object) -> object:
        with self.engine.connect() as connection:
            return connection.execute(text(query), params).scalar()

    def audit(self, user_id: int | None = None) -> list[dict[str, object]]:
        """Audit entries in the order they were written."""
        where = "WHERE user_id = :user_id" if user_id is not None else ""
        return self.rows(f"SELECT * FROM user_audit {where} ORDER BY id", user_id=user_id)

    def user(self, user_id: int) -> dict[str, object] | None:
        found = self.rows("SELECT * FROM users WHERE id = :id", id=user_id)
        return found[0] if found else None

    def fingerprint(self) -> list[object]:
        """Profiles and their audit, to show that a refused request changed nothing."""
        return [
            self.rows("SELECT * FROM users ORDER BY id"),
            self.rows("SELECT * FROM user_audit ORDER BY id"),
        ]


@pytest.fixture
def database(engine: Engine) -> Database:
    return Database(engine)


@pytest.fixture
def signed_in(app: Flask, staff_factory: StaffFactory):
    """Make a dashboard client signed in as a new account of ``role`` (None: anonymous)."""
    from tests.web_pages import sign_in

    def make(role: str | None, username: str | None = None) -> FlaskClient:
        browser = app.test_client()
        if role is not None:
            browser.staff = staff_factory.account(role, username)  # type: ignore[attr-defined]
            sign_in(browser, browser.staff.username, PASSWORD)  # type: ignore[attr-defined]
        return browser

    return make


def post_profile(client: FlaskClient, name: str, email: str) -> int:
    """Create a profile through the API; return its id."""
    response = client.post("/api/v1/users", json={"name": name, "email": email})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def client_like(app: Flask, template: FlaskClient) -> FlaskClient:
    """A client of its own (one per thread) that authenticates like ``template``."""
    fresh = app.test_client()
    fresh.environ_base.update(template.environ_base)
    return fresh
