"""Writes to profiles that bypass the application are still recorded, by a
database trigger, and flagged as unattributed; the application's own writes
are recorded once, by the flush listeners."""

from __future__ import annotations

from sqlalchemy import text, update

from tests.support.database import insert_profile_directly
from tests.support.profiles import post_profile, update_profile
from webapp.extensions import db
from webapp.models import User


def test_a_raw_update_appears_in_the_timeline_with_its_data(client, engine, database):
    user_id = post_profile(client, "Ada", "ada@example.com")
    with engine.begin() as connection:  # as psql or any other program would
        connection.execute(
            text("UPDATE users SET name = 'Changed behind our back' WHERE id = :id"),
            {"id": user_id},
        )

    body = client.get("/api/v1/audit?unattributed=true").get_json()
    [entry] = body["items"]
    assert entry["unattributed"] is True
    assert entry["operation"] == "update"
    assert entry["previous_data"] == {"name": "Ada", "email": "ada@example.com", "deleted_at": None}
    assert entry["new_data"]["name"] == "Changed behind our back"
    assert entry["changed_fields"] == ["name"]
    # No account: the database role and channel say where it came from.
    assert entry["actor"]["id"] is None
    assert entry["actor"]["label"] == f"db:{engine.url.username}"
    assert entry["actor"]["channel"] == "database"
    history = client.get(f"/api/v1/users/{user_id}/history").get_json()["items"]
    assert [e["unattributed"] for e in history] == [True, False]


def test_raw_inserts_and_soft_deletes_are_named_like_the_apps(engine, database):
    with engine.begin() as connection:
        user_id = insert_profile_directly(connection, "Sneaky", "sneaky@example.com")
        connection.execute(
            text("UPDATE users SET deleted_at = now() WHERE id = :id"), {"id": user_id}
        )
        connection.execute(
            text("UPDATE users SET deleted_at = NULL WHERE id = :id"), {"id": user_id}
        )
    entries = database.audit(user_id)
    assert [e["operation"] for e in entries] == ["create", "delete", "restore"]
    assert all(e["unattributed"] for e in entries)
    assert entries[0]["previous_data"] is None
    assert entries[1]["new_data"]["deleted_at"].endswith("Z")
    assert entries[2]["previous_data"] == entries[1]["new_data"]


def test_a_raw_write_names_the_program_that_made_it(engine, database):
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL application_name = 'psql'"))
        user_id = insert_profile_directly(connection, "Sneaky", "sneaky@example.com")
    [entry] = database.audit(user_id)
    # Any client can set its application name: kept as an untrusted claim.
    assert (entry["channel"], entry["channel_detail"]) == (
        "database",
        "untrusted; application=psql",
    )


def test_no_session_setting_makes_a_raw_write_a_staff_members_change(
    engine, database, staff_factory
):
    admin = staff_factory.account("admin", "admin")
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL profile_audit.actor = 'admin'"))
        connection.execute(text("SET LOCAL profile_audit.capturing = 'on'"))
        connection.execute(text("SET LOCAL application_name = 'profile-audit'"))
        user_id = insert_profile_directly(connection, "Posing", "posing@example.com")
    [entry] = database.audit(user_id)
    assert entry["unattributed"] is True
    assert entry["seal"] is None
    assert entry["actor_id"] is None
    assert entry["actor_label"] == f"db:{engine.url.username}" != admin.username
    assert entry["channel"] == "database"
    assert entry["channel_detail"] == "untrusted; actor=admin; application=profile-audit"


def test_writes_that_change_nothing_tracked_leave_no_entry(client, engine, database):
    user_id = post_profile(client, "Ada", "ada@example.com")
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE users SET updated_at = now() WHERE id = :id"), {"id": user_id}
        )
    assert len(database.audit(user_id)) == 1


#: A profile the app created, then changed by a statement the app's capture did not see.
CREATED_THEN_CHANGED_AROUND_THE_APP = [("create", False), ("update", True)]


def operations_and_unattributed(entries: list[dict]) -> list[tuple[object, object]]:
    """Each entry's operation, and whether it came from outside the application."""
    return [(entry["operation"], entry["unattributed"]) for entry in entries]


def test_the_apps_own_changes_are_recorded_once(client, database):
    user_id = post_profile(client, "Ada", "ada@example.com")
    update_profile(client, user_id, name="Ada King")
    client.delete(f"/api/v1/users/{user_id}")
    entries = database.audit(user_id)
    assert operations_and_unattributed(entries) == [
        ("create", False),
        ("update", False),
        ("delete", False),
    ]


def test_a_core_statement_through_the_apps_session_is_caught(app_context, database):
    user = User(name="Ada", email="ada@example.com")
    db.session.add(user)
    db.session.commit()
    # A Core statement on the table skips the ORM events entirely.
    db.session.connection().execute(
        update(User.__table__).where(User.__table__.c.id == user.id).values(name="Core")
    )
    db.session.commit()
    entries = database.audit(user.id)
    assert operations_and_unattributed(entries) == CREATED_THEN_CHANGED_AROUND_THE_APP


def test_raw_sql_after_an_app_flush_in_one_transaction_is_still_caught(app_context, database):
    user = User(name="Ada", email="ada@example.com")
    db.session.add(user)
    db.session.flush()
    db.session.execute(
        text("UPDATE users SET email = 'other@example.com' WHERE id = :id"), {"id": user.id}
    )
    db.session.commit()
    entries = database.audit(user.id)
    assert operations_and_unattributed(entries) == CREATED_THEN_CHANGED_AROUND_THE_APP
    # The statement went around the app's capture, so the database records
    # only what it knows for itself: its role, never the app's actor.
    assert entries[0]["actor_label"] == "service-admin"
    assert entries[1]["actor_label"].startswith("db:")
    assert entries[1]["channel"] == "database"


def test_the_timeline_can_show_only_unattributed_changes(client, engine, signed_in):
    user_id = post_profile(client, "Ada", "ada@example.com")
    with engine.begin() as connection:
        connection.execute(text("UPDATE users SET name = 'Rogue' WHERE id = :id"), {"id": user_id})
    page = signed_in("auditor").get("/audit?unattributed=true")
    assert page.status_code == 200
    text_of_page = page.get_data(as_text=True)
    assert "Unattributed" in text_of_page
    assert "Rogue" in text_of_page
    assert client.get("/api/v1/audit?unattributed=maybe").status_code == 400
