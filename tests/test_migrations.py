"""The migrations are the only source of the schema: they build it, tear it
down, build it again, and match the models exactly."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect, select, text

from webapp import create_app
from webapp.audit import chain
from webapp.audit.context import Actor, Origin, acting_as
from webapp.audit.sealer import link_all
from webapp.config import database_url
from webapp.dev.local_database import drop_database, ensure_database
from webapp.extensions import db
from webapp.models import User


@pytest.fixture
def scratch_app(server_url):
    name = "profile_audit_migrations_test"
    drop_database(server_url, name)
    url = database_url(ensure_database(server_url, name))
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    yield app
    with app.app_context():
        db.engine.dispose()
    drop_database(server_url, name)


def at_revision(revision: str, *statements: str) -> None:
    """Migrate to ``revision`` and write what that schema's application wrote."""
    upgrade(revision=revision)
    with db.engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))


def test_upgrade_downgrade_upgrade(scratch_app):
    with scratch_app.app_context():
        upgrade()
        assert {"users", "user_audit", "alembic_version"} <= set(
            inspect(db.engine).get_table_names()
        )
        downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) == {"alembic_version"}
        upgrade()
        assert {"users", "user_audit"} <= set(inspect(db.engine).get_table_names())


def test_models_match_the_migrated_schema(app):
    with app.app_context(), db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), db.metadata)
    assert differences == []


def test_the_timeline_indexes_exist(app, test_database_url):
    engine = create_engine(database_url(test_database_url))
    try:
        indexes = {
            index["name"]: index["column_names"]
            for index in inspect(engine).get_indexes("user_audit")
        }
    finally:
        engine.dispose()
    assert indexes["ix_user_audit_timestamp_id"] == ["timestamp", "id"]
    assert indexes["ix_user_audit_user_id_timestamp_id"] == ["user_id", "timestamp", "id"]
    assert indexes["ix_user_audit_operation_timestamp_id"] == ["operation", "timestamp", "id"]


def test_history_from_before_the_chain_is_queued_and_sealed(scratch_app):
    """Upgrading a database with history: its entries wait to be sealed, and
    `flask audit seal` links them so that verification passes."""
    with scratch_app.app_context():
        at_revision(
            "0005",
            "INSERT INTO users (name, email, version) "
            "VALUES ('Old', 'old@example.com', 1), ('Older', 'older@example.com', 1)",
        )
        upgrade()
        with db.engine.connect() as connection:
            assert (
                connection.execute(text("SELECT count(*) FROM audit_chain_pending")).scalar() == 2
            )
    runner = scratch_app.test_cli_runner()
    sealed = runner.invoke(args=["audit", "seal"])
    assert sealed.exit_code == 0, sealed.output
    assert "2 entries linked" in sealed.output
    verified = runner.invoke(args=["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert "OK: 2 entries verified" in verified.output


def test_links_made_before_seals_still_verify_beside_new_ones(scratch_app):
    """A chain begun before entries carried seals (links of encoding 1, each in
    its save's transaction) goes on with sealed entries linked after COMMIT,
    and the whole verifies."""
    key = scratch_app.config["AUDIT_CHAIN_KEY"].encode()
    with scratch_app.app_context():
        upgrade(revision="0006")
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO users (name, email, version) VALUES ('Old', 'old@example.com', 1)"
                )
            )
            # Linked as revision 0006's application linked entries (the legacy
            # bytes of that time, before token columns existed).
            canonical_then = chain.CANONICAL_ENTRY_V1_AS_LINKED_SQL
            rows = connection.execute(
                text(
                    f"SELECT user_audit.id, {canonical_then} AS canonical "
                    "FROM user_audit ORDER BY id"
                )
            ).all()
            previous = chain.GENESIS_HASH
            for seq, row in enumerate(rows, start=1):
                previous = chain.link_hash(key, previous, seq, bytes(row.canonical))
                connection.execute(
                    text("INSERT INTO audit_chain (seq, entry_id, hash) VALUES (:s, :e, :h)"),
                    {"s": seq, "e": row.id, "h": previous},
                )
            connection.execute(text("DELETE FROM audit_chain_pending"))
            connection.execute(
                text("UPDATE audit_chain_head SET seq = :s, hash = :h"),
                {"s": len(rows), "h": previous},
            )
        upgrade()
        with acting_as(Actor(None, "cli:tests"), Origin("cli")):
            old = db.session.scalars(select(User)).one()
            old.name = "Old, renamed with a seal"
            db.session.commit()
        link_all(db.engine, key)
        with db.engine.connect() as connection:
            encodings = connection.execute(
                text("SELECT encoding FROM audit_chain ORDER BY seq")
            ).scalars()
            assert list(encodings) == [1, 2]
    verified = scratch_app.test_cli_runner().invoke(args=["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert "OK: 2 entries verified" in verified.output


def test_duplicate_token_names_are_told_apart_when_names_become_unique(scratch_app):
    """Before token names were unique per owner, one account could have two
    "nightly" tokens; the upgrade keeps the oldest name and suffixes the others."""
    with scratch_app.app_context():
        at_revision(
            "0006",
            "INSERT INTO staff (id, username, password_hash, role) OVERRIDING SYSTEM VALUE "
            "VALUES (1, 'sam', '!', 'support'), (2, 'kim', '!', 'support')",
            "INSERT INTO api_tokens (id, staff_id, name, token_hash, prefix) "
            "OVERRIDING SYSTEM VALUE VALUES "
            "(1, 1, 'nightly', repeat('a', 64), 'pa_a'), "
            "(2, 1, 'Nightly', repeat('b', 64), 'pa_b'), "
            "(3, 2, 'nightly', repeat('c', 64), 'pa_c'), "
            "(4, 1, 'other', repeat('d', 64), 'pa_d')",
        )
        upgrade()
        with db.engine.connect() as connection:
            names = connection.execute(
                text("SELECT id, name, created_by_id FROM api_tokens ORDER BY id")
            ).all()
    assert [(row.id, row.name, row.created_by_id) for row in names] == [
        (1, "nightly", None),
        (2, "Nightly #2", None),
        (3, "nightly", None),
        (4, "other", None),
    ]
