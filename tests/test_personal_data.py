"""Personal values in the audit trail: encrypted per profile, readable through
every view, erased by destroying the profile's key without breaking the proof."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import text

from tests.support.database import append_only_lifted, insert_profile_directly, rewrite_history
from tests.support.profiles import post_profile, update_profile
from webapp.audit import personal_data
from webapp.audit.personal_data import (
    CIPHERTEXT,
    ERASED,
    UNREADABLE,
    ConfiguredMasterKeys,
    MasterKeyError,
    decrypt_value,
    encrypt_snapshot,
)
from webapp.dev.embedded_server import WHEEL_BINARIES
from webapp.extensions import db
from webapp.models import User
from webapp.services import audit_integrity, privacy, users
from webapp.services.errors import AlreadyErased, ValidationFailed

SNAPSHOT = {"name": "Ada", "email": "ada@example.com", "deleted_at": None}


def test_entries_hold_personal_values_only_as_ciphertext(client, database):
    user_id = post_profile(client, "Ada Lovelace", "ada@example.com")
    update_profile(client, user_id, name="Ada King")

    stored = database.raw_audit(user_id)
    assert [entry["operation"] for entry in stored] == ["create", "update"]
    for entry in stored:
        for snapshot in (entry["previous_data"], entry["new_data"]):
            if snapshot is None:
                continue
            assert set(snapshot["name"]) == {CIPHERTEXT}
            assert set(snapshot["email"]) == {CIPHERTEXT}
            assert snapshot["deleted_at"] is None  # not personal: kept in clear
    dumped = json.dumps([e["previous_data"] for e in stored] + [e["new_data"] for e in stored])
    assert "Ada" not in dumped
    assert "ada@example.com" not in dumped
    # Field names, operation and version stay in clear, so filters work.
    assert stored[1]["changed_fields"] == ["name"]
    assert client.get(f"/api/v1/audit?user_id={user_id}&field=name").get_json()["items"]


def test_readers_see_the_values_decrypted(client, database):
    user_id = post_profile(client, "Ada Lovelace", "ada@example.com")
    update_profile(client, user_id, name="Ada King")

    history = client.get(f"/api/v1/users/{user_id}/history").get_json()["items"]
    assert history[0]["previous_data"]["name"] == "Ada Lovelace"
    assert history[0]["new_data"]["name"] == "Ada King"
    assert history[1]["new_data"] == {
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "deleted_at": None,
    }
    assert database.audit(user_id)[1]["new_data"]["name"] == "Ada King"


def test_a_value_decrypts_only_in_its_own_entry_profile_side_and_field():
    cipher = AESGCM(personal_data.new_data_key())
    stored = encrypt_snapshot(cipher, 7, 3, "new", SNAPSHOT)["name"]
    assert decrypt_value(cipher, 7, 3, "new", "name", stored) == "Ada"
    for entry_id, user_id, side, field in [
        (8, 3, "new", "name"),  # moved to another entry
        (7, 4, "new", "name"),  # to another profile's entry
        (7, 3, "previous", "name"),  # to the other side
        (7, 3, "new", "email"),  # to another field
    ]:
        with pytest.raises(InvalidTag):
            decrypt_value(cipher, entry_id, user_id, side, field, stored)
    with pytest.raises(InvalidTag):  # under another profile's key
        decrypt_value(AESGCM(personal_data.new_data_key()), 7, 3, "new", "name", stored)


def test_every_value_gets_a_fresh_nonce():
    cipher = AESGCM(personal_data.new_data_key())
    first = encrypt_snapshot(cipher, 7, 3, "new", SNAPSHOT)
    second = encrypt_snapshot(cipher, 7, 3, "new", SNAPSHOT)
    assert first["name"] != second["name"]
    assert first["name"][CIPHERTEXT][:16] != second["name"][CIPHERTEXT][:16]


def test_a_swapped_or_altered_value_shows_as_unreadable_not_as_another_value(
    client, database, engine
):
    first = post_profile(client, "Ada Lovelace", "ada@example.com")
    second = post_profile(client, "Grace Hopper", "grace@example.com")
    ada, grace = database.raw_audit(first)[0], database.raw_audit(second)[0]
    # An administrator copies Grace's encrypted name into Ada's entry, and
    # flips one character of Ada's email's nonce.
    email = ada["new_data"]["email"][CIPHERTEXT]
    flipped = ("B" if email[0] != "B" else "C") + email[1:]
    rewrite_history(
        engine,
        f"UPDATE user_audit SET new_data = jsonb_set(jsonb_set(new_data, '{{name}}', "
        f"'{json.dumps(grace['new_data']['name'])}'), '{{email}}', "
        f"'{json.dumps({CIPHERTEXT: flipped})}') WHERE id = {ada['id']}",
    )

    shown = client.get(f"/api/v1/users/{first}/history").get_json()["items"][0]["new_data"]
    assert shown["name"] == UNREADABLE
    assert shown["email"] == UNREADABLE


def test_a_wrong_master_key_does_not_unwrap_a_data_key(app, database, make_user):
    make_user("Ada", "ada@example.com")
    row = database.rows("SELECT master_key_id, wrapped_key FROM profile_data_keys")[0]
    right = ConfiguredMasterKeys(app.config["PRIVACY_MASTER_KEY"])
    assert len(right.unwrap(row["master_key_id"], bytes(row["wrapped_key"]))) == 32
    wrong = ConfiguredMasterKeys("another-master-key-of-enough-length-0123456789")
    with pytest.raises(MasterKeyError):
        wrong.unwrap(row["master_key_id"], bytes(row["wrapped_key"]))
    # Same id, so the key is tried, and the tag check fails:
    forged = ConfiguredMasterKeys("another-master-key-of-enough-length-0123456789")
    forged._keys[row["master_key_id"]] = forged._current
    with pytest.raises(MasterKeyError):
        forged.unwrap(row["master_key_id"], bytes(row["wrapped_key"]))


# --- erasure ---------------------------------------------------------------------


@pytest.fixture
def erased_profile(app, client, cli, link_chain):
    """A profile with 100 changes, then erased; and a neighbour left alone."""
    user_id = post_profile(client, "Erin Secretname", "erin.secret@example.com")
    for number in range(99):
        update_profile(client, user_id, name=f"Erin Secretname {number}")
    neighbour = post_profile(client, "Nora Neighbour", "nora@example.com")
    link_chain()
    with cli():
        privacy.erase_user(user_id, reason="Subject's request #42")
    link_chain()
    return user_id, neighbour


def test_erasure_leaves_every_entry_but_no_value(erased_profile, client, database, app):
    user_id, neighbour = erased_profile
    history = client.get(f"/api/v1/users/{user_id}/history?limit=200").get_json()["items"]
    assert len(history) == 101
    erase, *earlier = history
    assert erase["operation"] == "erase"
    assert erase["reason"] == "Subject's request #42"
    assert erase["actor"]["label"] == "service-admin"
    for entry in history:
        for snapshot in (entry["previous_data"], entry["new_data"]):
            if snapshot is not None:
                assert snapshot["name"] == ERASED
                assert snapshot["email"] == ERASED
    # Everything else is kept: operations, versions, fields, times.
    assert [entry["version"] for entry in history] == list(range(101, 0, -1))
    assert earlier[0]["changed_fields"] == ["name"]
    # The neighbour reads as before.
    assert database.audit(neighbour)[0]["new_data"]["name"] == "Nora Neighbour"

    profile = database.user(user_id)
    assert profile["name"] == privacy.ERASED_NAME
    assert profile["email"] == privacy.erased_email(user_id)
    assert profile["deleted_at"] is not None
    assert profile["erased_at"] is not None
    key = database.rows("SELECT * FROM profile_data_keys WHERE user_id = :id", id=user_id)[0]
    assert key["wrapped_key"] is None
    assert key["erased_at"] is not None


def test_erasure_keeps_the_trail_verifiable(erased_profile, app):
    with app.app_context():
        result = audit_integrity.verify(db.engine, app.config["AUDIT_CHAIN_KEY"].encode())
    assert result.ok, result.problem


def test_every_view_shows_erased_values(erased_profile, signed_in):
    user_id, _ = erased_profile
    auditor = signed_in("auditor")
    pages = [
        f"/audit?user_id={user_id}",
        f"/audit/compare?user_id={user_id}&from=1&to=2",
        f"/audit/as-of?user_id={user_id}&at=2000-01-01",
        f"/audit/as-of?user_id={user_id}",
        f"/users/{user_id}",
    ]
    for page in pages:
        response = auditor.get(page)
        assert response.status_code == 200, page
        html = response.get_data(as_text=True)
        assert "Secretname" not in html, page
        assert "erin.secret" not in html, page
    timeline = auditor.get(f"/audit?user_id={user_id}").get_data(as_text=True)
    assert ERASED in timeline
    compare = auditor.get(f"/audit/compare?user_id={user_id}&from=1&to=2").get_data(as_text=True)
    assert ERASED in compare


def test_the_database_keeps_no_plaintext_of_an_erased_profile(
    erased_profile, test_database_url, tmp_path: Path
):
    dump = tmp_path / "dump.sql"
    subprocess.run(  # noqa: S603 (the suite's own database and binaries)
        [str(WHEEL_BINARIES / "pg_dump"), "--dbname", test_database_url, "--file", str(dump)],
        check=True,
        timeout=120,
    )
    content = dump.read_text()
    assert "Nora Neighbour" in content  # the dump holds the data: a profile still live
    assert "Secretname" not in content
    assert "erin.secret" not in content
    assert "Subject's request #42" in content  # the reason is not personal data


def test_the_email_index_no_longer_matches_an_erased_profile(
    erased_profile, app, database, make_user
):
    user_id, _ = erased_profile
    with app.app_context():
        old_index = personal_data.email_index("erin.secret@example.com")
    assert database.scalar("SELECT count(*) FROM users WHERE email_index = :i", i=old_index) == 0
    # Its email is free again: a new profile with it gets a key and history of its own.
    newcomer = make_user("Erin Again", "Erin.Secret@example.com")
    assert newcomer != user_id
    assert database.scalar("SELECT count(*) FROM users WHERE email_index = :i", i=old_index) == 1


def test_an_erased_profile_cannot_be_changed_restored_or_erased_again(erased_profile, cli):
    user_id, _ = erased_profile
    with cli():
        with pytest.raises(AlreadyErased):
            users.update_user(user_id, {"name": "Back"})
        with pytest.raises(AlreadyErased):
            users.restore_user(user_id)
        with pytest.raises(AlreadyErased):
            privacy.erase_user(user_id, reason="again")


def test_erasure_needs_a_reason_and_changes_nothing_without(make_user, cli, database):
    user_id = make_user("Ada", "ada@example.com")
    before = database.fingerprint()
    with cli(), pytest.raises(ValidationFailed, match="reason"):
        privacy.erase_user(user_id, reason="  ")
    assert database.fingerprint() == before


def test_the_safety_nets_clear_entries_are_encrypted_before_linking(
    make_user, engine, database, link_chain, app
):
    user_id = make_user("Ada", "ada@example.com")
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE users SET name = 'Behind The Back' WHERE id = :id"), {"id": user_id}
        )
    written = database.raw_audit(user_id)[-1]
    assert written["unattributed"]
    assert written["seal"] is None
    assert written["new_data"]["name"] == "Behind The Back"  # the database has no key

    link_chain()
    sealed = database.raw_audit(user_id)[-1]
    assert set(sealed["new_data"]["name"]) == {CIPHERTEXT}
    assert sealed["seal"] is not None
    assert sealed["unattributed"]
    assert database.audit(user_id)[-1]["new_data"]["name"] == "Behind The Back"
    with app.app_context():
        assert audit_integrity.verify(db.engine, app.config["AUDIT_CHAIN_KEY"].encode()).ok


def test_erasure_encrypts_the_safety_nets_unlinked_entries_first(
    make_user, engine, database, cli, test_database_url, tmp_path
):
    user_id = make_user("Ada", "ada@example.com")
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE users SET name = 'Unlinked Secret' WHERE id = :id"), {"id": user_id}
        )
    with cli():
        privacy.erase_user(user_id, reason="request")
    assert all(entry["new_data"]["name"] in (ERASED,) for entry in database.audit(user_id)), (
        database.audit(user_id)
    )
    assert "Unlinked Secret" not in json.dumps([e["new_data"] for e in database.raw_audit()])


def test_a_linked_entry_cannot_be_rewritten_through_the_sealers_exception(
    make_user, engine, link_chain, database
):
    user_id = make_user("Ada", "ada@example.com")
    with engine.begin() as connection:
        connection.execute(text("UPDATE users SET name = 'Raw' WHERE id = :id"), {"id": user_id})
    link_chain()
    entry_id = database.raw_audit(user_id)[-1]["id"]
    with pytest.raises(Exception, match="append-only"), engine.begin() as connection:
        connection.execute(
            text("UPDATE user_audit SET new_data = '{}' WHERE id = :id"), {"id": entry_id}
        )


def test_a_second_change_of_the_same_row_version_around_the_app_gets_its_own_entry(
    app, cli, make_user, database
):
    user_id = make_user("Ada", "ada@example.com")
    with cli():
        user = users.get_user(user_id)
        user.name = "Through The App"
        db.session.flush()
        # Same transaction, same version: a raw change the ORM's entry does not cover.
        db.session.execute(
            text("UPDATE users SET name = 'Raw Twin' WHERE id = :id"), {"id": user_id}
        )
        db.session.commit()
    entries = database.audit(user_id)
    assert [(e["operation"], e["unattributed"]) for e in entries] == [
        ("create", False),
        ("update", False),
        ("update", True),
    ]
    assert entries[2]["new_data"]["name"] == "Raw Twin"


def test_a_profile_without_a_key_gets_one_and_keeps_it_within_a_transaction(engine, cli, database):
    with engine.begin() as connection:
        user_id = insert_profile_directly(connection, "Made Around", "around@example.com")
    with engine.begin() as connection, append_only_lifted(connection):
        # As if the profile had been made before keys existed, its history gone.
        connection.execute(text("DELETE FROM audit_chain_pending"))
        connection.execute(text("DELETE FROM user_audit"))
    with cli():
        user = users.get_user(user_id)
        user.name = "First Rename"
        db.session.flush()
        user.name = "Second Rename"
        db.session.flush()
        created = User(name="Brand New", email="new@example.com")
        db.session.add(created)
        db.session.flush()
        created.name = "Renamed At Once"
        db.session.commit()
        created_id = created.id
    assert database.scalar("SELECT count(*) FROM profile_data_keys") == 2
    assert [e["new_data"]["name"] for e in database.audit(user_id)] == [
        "First Rename",
        "Second Rename",
    ]
    assert [e["new_data"]["name"] for e in database.audit(created_id)] == [
        "Brand New",
        "Renamed At Once",
    ]


def test_a_profile_made_around_the_app_can_be_erased_before_the_sealer_ran(engine, cli, database):
    """Its only entry is the safety net's, still in clear and queued: erasure
    encrypts it under the key it makes for the profile, then destroys that key."""
    with engine.begin() as connection:
        user_id = insert_profile_directly(connection, "Raw Secret", "raw.secret@example.com")
    with cli():
        privacy.erase_user(user_id, reason="request")
    assert [e["operation"] for e in database.audit(user_id)] == ["create", "erase"]
    assert {e["new_data"]["name"] for e in database.audit(user_id)} == {ERASED}
    assert "Raw Secret" not in json.dumps([e["new_data"] for e in database.raw_audit()])
    assert (
        database.scalar("SELECT count(*) FROM profile_data_keys WHERE user_id = :id", id=user_id)
        == 1
    )
