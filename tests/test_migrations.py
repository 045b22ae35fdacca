"""The migrations are the only source of the schema: they build it, tear it
down, build it again, and match the models exactly."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect

from webapp import create_app
from webapp.config import database_url
from webapp.extensions import db
from webapp.local_database import drop_database, ensure_database


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
