"""``/healthz`` (the process answers) and ``/readyz`` (it can serve: the database
answers and its schema is the one this code was written for).

Deployment tooling relies on exactly these paths and on 200 versus 503.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alembic.script import ScriptDirectory
from flask import Flask, current_app
from psycopg import errors as pg_errors
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from webapp.extensions import db
from webapp.services.audit_integrity import oldest_unlinked_seconds

#: A readiness probe must answer quickly even when the database is slow.
READINESS_STATEMENT_TIMEOUT_MS = 2000


@dataclass(frozen=True)
class Migrations:
    """What the migrations directory says: the head(s), and every revision known."""

    heads: frozenset[str]
    known: frozenset[str]


@dataclass
class Readiness:
    """The outcome of one readiness check."""

    ready: bool
    reason: str | None = None
    detail: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        if self.ready:
            return {"status": "ready", **self.extra}
        return {"status": "unavailable", "reason": self.reason, "detail": self.detail, **self.extra}


def read_migrations(directory: str) -> Migrations:
    """The heads and revisions of the migrations in ``directory``."""
    script = ScriptDirectory(directory)
    return Migrations(
        heads=frozenset(script.get_heads()),
        known=frozenset(revision.revision for revision in script.walk_revisions()),
    )


def _migrations(app: Flask) -> Migrations:
    # The files do not change while the process runs: read them once.
    cached = app.extensions.get("observability_migrations")
    if cached is None:
        cached = read_migrations(app.extensions["migrate"].directory)
        app.extensions["observability_migrations"] = cached
    return cached


def _database_revisions() -> frozenset[str]:
    with db.engine.connect() as connection:
        connection.execute(text(f"SET LOCAL statement_timeout = {READINESS_STATEMENT_TIMEOUT_MS}"))
        rows = connection.execute(text("SELECT version_num FROM alembic_version"))
        return frozenset(rows.scalars())


def _oldest_unlinked_seconds() -> float | None:
    try:
        with db.engine.connect() as connection:
            connection.execute(
                text(f"SET LOCAL statement_timeout = {READINESS_STATEMENT_TIMEOUT_MS}")
            )
            return oldest_unlinked_seconds(connection)
    except SQLAlchemyError:
        return None


def check_readiness(app: Flask) -> Readiness:
    """Whether the database answers and is at the migrations' head."""
    try:
        migrations = _migrations(app)
    except Exception as error:  # any failure to read them means not ready
        app.logger.error("readiness: cannot read the migrations: %s", error)
        return Readiness(False, "migrations_unreadable", "The migrations could not be read.")
    head = ",".join(sorted(migrations.heads))
    try:
        revisions = _database_revisions()
    except SQLAlchemyError as error:
        if isinstance(getattr(error, "orig", None), pg_errors.UndefinedTable):
            revisions = frozenset()
        else:
            app.logger.warning(
                "readiness: the database did not answer: %s", getattr(error, "orig", error)
            )
            return Readiness(
                False, "database_unreachable", "The database did not answer.", {"head": head}
            )
    revision = ",".join(sorted(revisions)) or None
    extra = {"database": "ok", "revision": revision, "head": head}
    if revisions == migrations.heads:
        # Detail only: a linking backlog does not stop a process from serving.
        extra["oldest_unlinked_entry_seconds"] = _oldest_unlinked_seconds()
        return Readiness(True, extra=extra)
    if not revisions:
        return Readiness(False, "database_not_migrated", "The database has no schema yet.", extra)
    if revisions <= migrations.known:
        return Readiness(
            False,
            "database_behind",
            "The database schema is older than this release: run the migrations.",
            extra,
        )
    return Readiness(
        False,
        "database_ahead",
        "The database schema is newer than this release knows.",
        extra,
    )


def healthz() -> tuple[dict[str, str], int]:
    """The process is up; nothing else is checked (no database)."""
    return {"status": "ok"}, 200


def readyz() -> tuple[dict[str, Any], int]:
    """200 when ready to serve, else 503 with the reason."""
    readiness = check_readiness(current_app._get_current_object())  # type: ignore[attr-defined]
    return readiness.body(), 200 if readiness.ready else 503
