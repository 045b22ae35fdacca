"""The audit invariant at the ORM level: every accepted change writes exactly one
entry with the right snapshots, in the same transaction; nothing else writes any,
and no ORM path changes profiles without one."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from webapp.audit.context import change_context
from webapp.audit.errors import AuditBypassError, HardDeleteRefused
from webapp.extensions import db
from webapp.models import User
from webapp.services import users

pytestmark = pytest.mark.usefixtures("app_context")


def test_create_writes_entry_with_null_previous_data(database):
    user = users.create_user({"name": "Ada", "email": "ada@example.com"}, reason="signup")

    [entry] = database.audit(user.id)
    assert entry["operation"] == "create"
    assert entry["previous_data"] is None
    assert entry["new_data"] == {"name": "Ada", "email": "ada@example.com", "deleted_at": None}
    assert entry["changed_fields"] == ["name", "email"]
    assert entry["version"] == 1
    assert entry["reason"] == "signup"
    assert entry["timestamp"].utcoffset().total_seconds() == 0


def test_update_records_previous_and_new_snapshots(database):
    user = users.create_user({"name": "Ada", "email": "ada@example.com"})
    users.update_user(user.id, {"name": "Ada Lovelace"}, expected_version=1, reason="typo")

    entries = database.audit(user.id)
    assert [e["operation"] for e in entries] == ["create", "update"]
    update_entry = entries[1]
    assert update_entry["previous_data"] == {
        "name": "Ada",
        "email": "ada@example.com",
        "deleted_at": None,
    }
    assert update_entry["new_data"]["name"] == "Ada Lovelace"
    assert update_entry["changed_fields"] == ["name"]
    assert update_entry["version"] == 2
    assert update_entry["reason"] == "typo"
    assert database.user(user.id)["version"] == 2


def test_no_op_save_writes_nothing_and_keeps_version(database):
    user = users.create_user({"name": "Ada", "email": "ada@example.com"})
    users.update_user(user.id, {"name": "  Ada ", "email": "ada@EXAMPLE.com"})

    assert len(database.audit(user.id)) == 1
    assert database.user(user.id)["version"] == 1


def test_assigning_the_same_value_through_the_orm_is_not_a_change(database):
    user = users.create_user({"name": "Ada", "email": "ada@example.com"})
    user.name = "Ada"
    db.session.commit()

    assert len(database.audit(user.id)) == 1
    assert database.user(user.id)["version"] == 1


def test_changing_only_the_case_of_the_email_is_a_change(database):
    user = users.create_user({"name": "Ada", "email": "ada@example.com"})
    users.update_user(user.id, {"email": "Ada@example.com"})

    entries = database.audit(user.id)
    assert entries[-1]["changed_fields"] == ["email"]
    assert entries[-1]["previous_data"]["email"] == "ada@example.com"
    assert entries[-1]["new_data"]["email"] == "Ada@example.com"


def test_soft_delete_and_restore_are_their_own_operations(database):
    user = users.create_user({"name": "Ada", "email": "ada@example.com"})
    users.delete_user(user.id)
    users.restore_user(user.id)

    create, deletion, restore = database.audit(user.id)
    assert deletion["operation"] == "delete"
    assert deletion["previous_data"]["deleted_at"] is None
    assert deletion["new_data"]["deleted_at"].endswith("Z")
    assert deletion["changed_fields"] == ["deleted_at"]
    assert restore["operation"] == "restore"
    assert restore["previous_data"]["deleted_at"] == deletion["new_data"]["deleted_at"]
    assert restore["new_data"]["deleted_at"] is None
    assert [e["version"] for e in (create, deletion, restore)] == [1, 2, 3]


def test_previous_data_is_right_for_attributes_expired_by_a_commit(database):
    user = User(name="Ada", email="ada@example.com")
    db.session.add(user)
    db.session.commit()  # expires every attribute of user

    user.email = "lovelace@example.com"  # set without loading the old value first
    db.session.commit()

    assert database.audit(user.id)[-1]["previous_data"]["email"] == "ada@example.com"


def test_one_flush_of_many_profiles_writes_one_entry_each(database):
    people = [User(name=f"Person {i}", email=f"p{i}@example.com") for i in range(5)]
    db.session.add_all(people)
    db.session.commit()
    # Open the context before touching anything: an autoflush triggered by a
    # lazy load inside the block must carry the reason too.
    with change_context(reason="batch rename"):
        for person in people:
            person.name += " (renamed)"
        db.session.commit()

    entries = database.audit()
    assert len(entries) == 10
    renames = [e for e in entries if e["operation"] == "update"]
    assert sorted(e["user_id"] for e in renames) == sorted(p.id for p in people)
    assert {e["reason"] for e in renames} == {"batch rename"}


def test_a_rolled_back_change_leaves_no_entry(database):
    user = users.create_user({"name": "Ada", "email": "ada@example.com"})
    user.name = "Changed"
    db.session.flush()  # the entry is written inside the transaction...
    db.session.rollback()  # ...and goes with it

    assert len(database.audit(user.id)) == 1
    assert database.user(user.id)["name"] == "Ada"


def test_a_failing_audit_insert_rolls_back_the_change(database, engine):
    user = users.create_user({"name": "Ada", "email": "ada@example.com"})
    with engine.begin() as connection:
        connection.execute(
            text("ALTER TABLE user_audit ADD CONSTRAINT test_refuse CHECK (reason <> 'boom')")
        )
    try:
        with pytest.raises(IntegrityError):
            users.update_user(user.id, {"name": "Changed"}, reason="boom")
    finally:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE user_audit DROP CONSTRAINT test_refuse"))

    assert database.user(user.id)["name"] == "Ada"
    assert database.user(user.id)["version"] == 1
    assert len(database.audit(user.id)) == 1


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param(lambda: update(User).values(name="Bulk"), id="bulk-update"),
        pytest.param(
            lambda: update(User).where(User.id > 0).values(deleted_at=text("now()")),
            id="bulk-soft-delete",
        ),
        pytest.param(lambda: delete(User), id="bulk-delete"),
        pytest.param(
            lambda: insert(User).values(name="Sneaky", email="s@example.com", version=1),
            id="bulk-insert",
        ),
    ],
)
def test_orm_bulk_statements_on_users_are_refused(database, statement):
    users.create_user({"name": "Ada", "email": "ada@example.com"})
    before = database.fingerprint()

    with pytest.raises(AuditBypassError, match="bypass the audit log"):
        db.session.execute(statement())
    db.session.rollback()

    assert database.fingerprint() == before


def test_orm_bulk_update_by_primary_key_is_refused(database):
    user = users.create_user({"name": "Ada", "email": "ada@example.com"})
    before = database.fingerprint()

    with pytest.raises(AuditBypassError):
        db.session.execute(update(User), [{"id": user.id, "name": "Bulk"}])
    db.session.rollback()

    assert database.fingerprint() == before


@pytest.mark.parametrize("method", ["bulk_update_mappings", "bulk_insert_mappings"])
def test_legacy_bulk_mapping_methods_are_refused(database, method):
    user = users.create_user({"name": "Ada", "email": "ada@example.com"})
    before = database.fingerprint()

    with pytest.raises(AuditBypassError):
        getattr(db.session, method)(User, [{"id": user.id, "name": "Bulk", "version": 1}])
    db.session.rollback()

    assert database.fingerprint() == before


def test_bulk_save_objects_is_refused(database):
    before = database.fingerprint()
    with pytest.raises(AuditBypassError):
        db.session.bulk_save_objects([User(name="Bulk", email="bulk@example.com")])
    db.session.rollback()
    assert database.fingerprint() == before


def test_hard_delete_through_the_session_is_refused(database):
    user = users.create_user({"name": "Ada", "email": "ada@example.com"})
    before = database.fingerprint()

    db.session.delete(user)
    with pytest.raises(HardDeleteRefused):
        db.session.commit()
    db.session.rollback()

    assert database.fingerprint() == before


def test_the_database_refuses_to_delete_a_profile_with_history(database, engine):
    user = users.create_user({"name": "Ada", "email": "ada@example.com"})
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(text("DELETE FROM users WHERE id = :id"), {"id": user.id})
    assert database.user(user.id) is not None


def test_reads_are_not_refused(database):
    users.create_user({"name": "Ada", "email": "ada@example.com"})
    assert db.session.scalars(select(User.name)).all() == ["Ada"]
