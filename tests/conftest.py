"""Test fixtures: one real PostgreSQL database per test session, migrated with
the real migrations, emptied before every test.

Without ``TEST_DATABASE_URL`` a throwaway embedded PostgreSQL is started (and
deleted afterwards). Either way the suite works in its own database, created
for the session and dropped at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import Engine, create_engine, text

from webapp import create_app
from webapp.config import database_url
from webapp.extensions import db
from webapp.local_database import drop_database, ensure_database, start_embedded_server


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A libpq URL of a PostgreSQL server the suite may create databases on."""
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield external
        return
    server = start_embedded_server(tmp_path_factory.mktemp("pg") / "data", delete_on_stop=True)
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


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
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE user_audit, users RESTART IDENTITY CASCADE"))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def app_context(app: Flask) -> Iterator[None]:
    """For calling services directly; the session is discarded afterwards."""
    with app.app_context():
        yield
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
        """Everything in both tables, to show that a refused request changed nothing."""
        return [
            self.rows("SELECT * FROM users ORDER BY id"),
            self.rows("SELECT * FROM user_audit ORDER BY id"),
        ]


@pytest.fixture
def database(engine: Engine) -> Database:
    return Database(engine)
