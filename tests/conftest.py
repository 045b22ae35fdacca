"""Test fixtures: one real PostgreSQL database per test session, migrated with
the real migrations, emptied before every test.

Without ``TEST_DATABASE_URL`` a throwaway embedded PostgreSQL is started (and
deleted afterwards). Either way the suite works in its own database, created
for the session and dropped at the end.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from flask_migrate import upgrade
from sqlalchemy import Engine, create_engine

from tests.support.cli import OS_USER
from tests.support.database import Database, empty_database
from tests.support.pages import sign_in
from tests.support.staff import StaffFactory
from webapp import create_app
from webapp.audit.context import Actor, Origin, acting_as
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
from webapp.services import users

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


@pytest.fixture(autouse=True)
def _empty_tables(engine: Engine) -> None:
    empty_database(engine)


@pytest.fixture
def link_chain(app: Flask, engine: Engine) -> Callable[[], int]:
    """Link every committed entry into the chain, as the sealer would after COMMIT."""

    def link() -> int:
        # In the app's context, as the sealer: it encrypts the safety net's entries.
        with app.app_context():
            return link_all(engine, app.config["AUDIT_CHAIN_KEY"].encode())

    return link


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


@pytest.fixture
def database(engine: Engine) -> Database:
    return Database(engine)


@pytest.fixture
def signed_in(app: Flask, staff_factory: StaffFactory):
    """Make a dashboard client signed in as a new account of ``role`` (None: anonymous)."""

    def make(role: str | None, username: str | None = None) -> FlaskClient:
        browser = app.test_client()
        if role is not None:
            browser.staff = staff_factory.account(role, username)  # type: ignore[attr-defined]
            sign_in(browser, browser.staff.username)  # type: ignore[attr-defined]
        return browser

    return make


@pytest.fixture
def auditor(signed_in) -> FlaskClient:
    """A dashboard client signed in as the auditor ``audrey``."""
    return signed_in("auditor", "audrey")


@pytest.fixture
def cli_os_user(monkeypatch: pytest.MonkeyPatch) -> str:
    """In-process ``flask`` commands run as the operating-system user ``OS_USER``."""
    monkeypatch.setattr("webapp.cli.operator_commands.os_user", lambda: OS_USER)
    return OS_USER


@pytest.fixture
def cli(app: Flask, staff_factory: StaffFactory) -> Callable[[], AbstractContextManager[None]]:
    """Call services as an admin on the command line would, inside ``with cli():``.

    Each block gets an app context of its own: one left open would be shared
    by the test client's requests, and with it the command line's attribution.
    """
    admin = staff_factory.account("admin", "service-admin")

    @contextmanager
    def context() -> Iterator[None]:
        with app.app_context(), acting_as(Actor(admin.id, admin.username), Origin("cli")):
            yield

    return context


@pytest.fixture
def make_user(cli: Callable[[], AbstractContextManager[None]]) -> Callable[[str, str], int]:
    """Create a profile through the service, as ``cli`` does; returns its id."""

    def make(name: str, email: str) -> int:
        with cli():
            return users.create_user({"name": name, "email": email}).id

    return make
