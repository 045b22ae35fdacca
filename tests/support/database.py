"""The suite's database from outside the app: reading it as an auditor would,
and emptying or rewriting audit history, which the database refuses to
anyone else."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Connection, Engine, text

from webapp.audit.chain import GENESIS_HASH
from webapp.audit.entry_ids import entry_ids
from webapp.audit.personal_data import KEY_COLUMNS_SQL, ConfiguredMasterKeys, reveal_row

TABLES = (
    "audit_chain, audit_chain_pending, audit_verifications, "
    "user_audit, profile_data_keys, users, api_tokens, security_events, security_event_repeats, "
    "staff_sessions, "
    "staff, sign_in_attempts"
)

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


def empty_database(engine: Engine) -> None:
    """Every table empty and the chain back at its genesis, as before each test."""
    with engine.begin() as connection, append_only_lifted(connection):
        connection.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
        connection.execute(
            text("UPDATE audit_chain_head SET seq = 0, hash = :genesis"),
            {"genesis": GENESIS_HASH},
        )
    # The ids reserved before the sequence restarted would be handed out again.
    entry_ids.forget()


def insert_profile_directly(connection: Connection, name: str, email: str) -> int:
    """Insert a profile with SQL, as a program other than the app would; its id."""
    return connection.execute(
        text("INSERT INTO users (name, email, version) VALUES (:name, :email, 1) RETURNING id"),
        {"name": name, "email": email},
    ).scalar_one()


def rewrite_history(engine: Engine, *statements: str) -> None:
    """Change history the way a database administrator could: guards down."""
    with engine.begin() as connection, append_only_lifted(connection):
        for statement in statements:
            connection.execute(text(statement))


def end_every_session(engine: Engine) -> None:
    """What the server does when a session ends (idle, signed out elsewhere...)."""
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM staff_sessions"))


def backdate(engine: Engine, entry_id: int, moment: datetime) -> None:
    """Move an audit entry in time, as if it had been written then."""
    with engine.begin() as connection, append_only_lifted(connection):
        connection.execute(
            text("UPDATE user_audit SET timestamp = :t WHERE id = :id"),
            {"t": moment, "id": entry_id},
        )


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
        """Audit entries in the order they were written, personal values decrypted."""
        keys = ConfiguredMasterKeys(os.environ["PRIVACY_MASTER_KEY"])
        entries = []
        for row in self.raw_audit(user_id, with_keys=True):
            row["previous_data"], row["new_data"] = reveal_row(row, keys)
            for name in ("key_id", "wrapped_key", "key_erased_at"):
                del row[name]
            entries.append(row)
        return entries

    def raw_audit(
        self, user_id: int | None = None, *, with_keys: bool = False
    ) -> list[dict[str, object]]:
        """Audit entries as the table holds them (personal values encrypted)."""
        where = "WHERE a.user_id = :user_id" if user_id is not None else ""
        join = "LEFT JOIN profile_data_keys k ON k.user_id = a.user_id" if with_keys else ""
        keys = f", {KEY_COLUMNS_SQL}" if with_keys else ""
        return self.rows(
            f"SELECT a.*{keys} FROM user_audit a {join} {where} ORDER BY a.id", user_id=user_id
        )

    def audit_ids_newest_first(self, condition: str = "TRUE", **params: object) -> list[int]:
        """Ids of the entries matching ``condition``, in the timeline's order."""
        rows = self.rows(
            f"SELECT id FROM user_audit WHERE {condition} ORDER BY timestamp DESC, id DESC",
            **params,
        )
        return [row["id"] for row in rows]  # type: ignore[misc]

    def user(self, user_id: int) -> dict[str, object] | None:
        found = self.rows("SELECT * FROM users WHERE id = :id", id=user_id)
        return found[0] if found else None

    def security_events(self) -> list[dict[str, object]]:
        """Security events in the order they were recorded."""
        return self.rows("SELECT * FROM security_events ORDER BY id")

    def security_event_names(self) -> list[str]:
        """The security events' names, oldest first."""
        return [row["event"] for row in self.security_events()]  # type: ignore[misc]

    def fingerprint(self) -> list[object]:
        """Profiles and their audit, to show that a refused request changed nothing."""
        return [
            self.rows("SELECT * FROM users ORDER BY id"),
            self.rows("SELECT * FROM user_audit ORDER BY id"),
        ]
