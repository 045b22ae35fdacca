"""The documented stronger setup: the app connecting as a role that may only
insert and read audit records still works, and that role cannot change history
even with the triggers out of the way."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import DBAPIError

from tests.support.pages import page_token, sign_in
from tests.support.staff import PASSWORD
from webapp import create_app
from webapp.audit.sealer import link_all
from webapp.extensions import db

GRANTS = Path(__file__).resolve().parent.parent / "migrations" / "restricted_app_role.sql"


@pytest.fixture
def restricted_url(app, engine):
    with engine.begin() as connection:
        connection.exec_driver_sql(GRANTS.read_text())
    return make_url(app.config["SQLALCHEMY_DATABASE_URI"]).set(username="profile_audit_app")


def test_the_app_works_as_the_restricted_role(restricted_url, staff_factory, database):
    restricted = create_app({"SQLALCHEMY_DATABASE_URI": restricted_url})
    secret = staff_factory.token(staff_factory.account("support"))
    api = restricted.test_client()
    auth = {"Authorization": f"Bearer {secret}"}

    created = api.post(
        "/api/v1/users", json={"name": "Ada", "email": "a@example.com"}, headers=auth
    )
    assert created.status_code == 201
    user_id = created.get_json()["id"]
    assert (
        api.patch(f"/api/v1/users/{user_id}", json={"name": "Ada K"}, headers=auth).status_code
        == 200
    )
    assert api.delete(f"/api/v1/users/{user_id}", headers=auth).status_code == 204
    assert [e["operation"] for e in database.audit(user_id)] == ["create", "update", "delete"]
    # Refusals anyone can repeat count up in their own table.
    for _ in range(2):
        refused = api.get("/api/v1/users", headers={"Authorization": "Bearer pa_not-a-token"})
        assert refused.status_code == 401
    assert database.scalar("SELECT count FROM security_event_repeats") == 2


def test_dashboard_sessions_work_as_the_restricted_role(restricted_url, staff_factory):
    """Signing in, being seen, signing out: every write a session needs is granted."""
    restricted = create_app({"SQLALCHEMY_DATABASE_URI": restricted_url})
    staff_factory.account("support", "ada")
    browser = sign_in(restricted.test_client(), "ada", PASSWORD)
    assert browser.get("/users").status_code == 200
    cookie = browser.get_cookie("session").value
    assert browser.post("/logout", data={"csrf_token": page_token(browser)}).status_code == 302
    thief = restricted.test_client()
    thief.set_cookie("session", cookie)
    assert thief.get("/users").status_code == 302


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE user_audit SET reason = 'rewritten'",
        "UPDATE user_audit SET seal = NULL, reason = 'rewritten'",
        "DELETE FROM profile_data_keys",
        "DELETE FROM user_audit",
        "TRUNCATE user_audit",
        "ALTER TABLE user_audit DISABLE TRIGGER USER",
        "UPDATE security_events SET username = 'x'",
        "DELETE FROM users",
        "DELETE FROM security_event_repeats",
        "TRUNCATE security_event_repeats",
    ],
)
def test_the_restricted_role_cannot_change_history(restricted_url, client, database, statement):
    client.post("/api/v1/users", json={"name": "Ada", "email": "a@example.com"})
    before = database.fingerprint()
    restricted = create_engine(restricted_url)
    try:
        with (
            pytest.raises(DBAPIError, match=r"permission denied|must be owner"),
            restricted.begin() as connection,
        ):
            connection.execute(text(statement))
    finally:
        restricted.dispose()
    assert database.fingerprint() == before


def test_the_restricted_role_seals_the_safety_nets_entries_and_nothing_more(
    restricted_url, make_user, engine, database, app
):
    """The one change granted on entries: the sealer encrypting a safety-net
    entry before linking it. Any other rewrite of the snapshots is refused."""
    user_id = make_user("Ada", "ada@example.com")
    with engine.begin() as connection:
        connection.execute(text("UPDATE users SET name = 'Raw' WHERE id = :id"), {"id": user_id})
    restricted = create_app({"SQLALCHEMY_DATABASE_URI": restricted_url})
    with restricted.app_context():
        linked = link_all(db.engine, restricted.config["AUDIT_CHAIN_KEY"].encode())
    assert linked == 2
    stored = database.raw_audit(user_id)
    assert "ciphertext" in stored[-1]["new_data"]["name"]
    assert database.audit(user_id)[-1]["new_data"]["name"] == "Raw"

    before = database.fingerprint()
    rogue = create_engine(restricted_url)
    try:
        with (
            pytest.raises(DBAPIError, match="append-only"),
            rogue.begin() as connection,
        ):
            connection.execute(text("UPDATE user_audit SET new_data = '{}'::jsonb"))
    finally:
        rogue.dispose()
    assert database.fingerprint() == before
