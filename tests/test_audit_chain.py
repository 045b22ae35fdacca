"""Tamper evidence: every entry is linked into a keyed hash chain, and
``flask audit verify`` finds any edit, removal, insertion or reordering, naming
the first entry that does not check out."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from tests.conftest import SUITE_KEYS
from tests.support.cli import invoke, run_flask
from tests.support.database import (
    Database,
    append_only_lifted,
    insert_profile_directly,
    rewrite_history,
)
from tests.support.profiles import post_profile, update_profile
from webapp import create_app
from webapp.audit import chain, seal
from webapp.audit.context import Actor, Origin, acting_as
from webapp.audit.sealer import link_all
from webapp.extensions import db
from webapp.models import User
from webapp.services import audit_integrity

# The chain key the suite runs the app with (made at random for each run).
KEY = SUITE_KEYS["AUDIT_CHAIN_KEY"].encode()


def verify(runner: FlaskCliRunner, *args: str):
    return invoke(runner, "audit", "verify", *args)


def create_history(client: FlaskClient, profiles: int = 2) -> list[int]:
    """Create ``profiles`` profiles and change each twice: 3 entries per profile."""
    ids = []
    for n in range(profiles):
        user_id = post_profile(client, f"Person {n}", f"p{n}@example.com")
        update_profile(client, user_id, name=f"P {n}")
        assert client.delete(f"/api/v1/users/{user_id}").status_code == 204
        ids.append(user_id)
    return ids


@pytest.fixture
def make_history(client: FlaskClient, link_chain):
    """``create_history``, then the entries linked as the sealer links them after COMMIT."""

    def make(profiles: int = 2) -> list[int]:
        ids = create_history(client, profiles)
        link_chain()
        return ids

    return make


def links(database: Database) -> list[dict]:
    return database.rows("SELECT seq, entry_id, hash, encoding FROM audit_chain ORDER BY seq")


def assert_fails_at(result, entry_id: int | None, words: str) -> None:
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output
    if entry_id is not None:
        assert re.search(rf"\bentry {entry_id}\b", result.output), result.output
    assert words in result.output


CANONICAL_SQL = seal.CANONICAL_ENTRY_SQL


def canonical_entries(database: Database) -> list[dict]:
    return database.rows(
        f"SELECT id, seal, {CANONICAL_SQL} AS canonical FROM user_audit ORDER BY id"
    )


def keyed(message: bytes) -> bytes:
    return hmac.new(KEY, message, hashlib.sha256).digest()


def test_every_entry_is_linked_in_order_with_a_keyed_hash(make_history, client, database):
    make_history()
    entries = canonical_entries(database)
    chain_links = links(database)
    assert [link["seq"] for link in chain_links] == list(range(1, len(entries) + 1))
    assert [link["entry_id"] for link in chain_links] == [e["id"] for e in entries]
    previous = chain.GENESIS_HASH
    for link, entry in zip(chain_links, entries, strict=True):
        # The entry's seal, made by the app in its INSERT, is a keyed hash of its bytes...
        expected_seal = keyed(hashlib.sha256(bytes(entry["canonical"])).digest())
        assert bytes(entry["seal"]) == expected_seal
        # ...and each link chains the previous link's hash, its number and that seal.
        expected = keyed(previous + link["seq"].to_bytes(8, "big") + expected_seal)
        assert bytes(link["hash"]) == expected
        assert link["encoding"] == seal.ENCODING
        previous = expected
    head = database.rows("SELECT seq, hash FROM audit_chain_head")[0]
    assert (head["seq"], bytes(head["hash"])) == (len(entries), previous)


def test_the_canonical_bytes_hold_every_column_of_an_entry(
    make_history, client, database, link_chain
):
    make_history(profiles=1)
    traced = client.post(
        "/api/v1/users",
        json={"name": "Traced", "email": "traced@example.com"},
        headers={"X-Request-ID": "trace-0001"},
    )
    assert traced.status_code == 201
    link_chain()
    columns = {
        row["column_name"]
        for row in database.rows(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'user_audit'"
        )
    }
    # Every column but the seal itself.
    assert columns == set(seal.SEALED_FIELDS) | {"seal"}
    entry = database.raw_audit()[1]  # as stored: the bytes cover the ciphertext
    canonical = bytes(canonical_entries(database)[1]["canonical"]).decode()
    # The encoding, then each column as a JSON value, split by U+001F.
    encoding, *values = canonical.split("\x1f")
    assert int(encoding) == seal.ENCODING
    decoded = dict(zip(seal.SEALED_FIELDS, map(json.loads, values), strict=True))
    assert set(decoded) == columns - {"seal"}
    assert decoded["id"] == entry["id"]
    traced_entry = database.audit()[-1]
    assert traced_entry["token_id"] is not None
    assert traced_entry["client_request_id"] == "trace-0001"
    _, *traced_values = bytes(canonical_entries(database)[-1]["canonical"]).decode().split("\x1f")
    traced_decoded = dict(zip(seal.SEALED_FIELDS, map(json.loads, traced_values), strict=True))
    assert (traced_decoded["token_id"], traced_decoded["client_request_id"]) == (
        traced_entry["token_id"],
        "trace-0001",
    )
    assert decoded["timestamp"] == entry["timestamp"].astimezone(UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )
    assert decoded["new_data"] == entry["new_data"]
    assert decoded["changed_fields"] == entry["changed_fields"]
    assert (decoded["version"], decoded["actor_label"]) == (entry["version"], entry["actor_label"])


def test_columns_added_later_leave_the_legacy_bytes_of_entries_without_them_unchanged(
    make_history, client, database, engine
):
    """Links of encoding 1 hashed the entries' columns as they were then; the
    columns added since (``token_id``, ``client_request_id``) join those bytes
    only when set, so every link made before them still verifies."""
    with engine.begin() as connection:  # as psql would: the safety net records it, no token
        insert_profile_directly(connection, "Old", "old@example.com")
    make_history(profiles=1)
    original = chain.CANONICAL_ENTRY_V1_AS_LINKED_SQL
    rows = database.rows(
        f"SELECT token_id, {original} AS original, {chain.CANONICAL_ENTRY_V1_SQL} AS canonical "
        "FROM user_audit ORDER BY id"
    )
    without_token = [row for row in rows if row["token_id"] is None]
    with_token = [row for row in rows if row["token_id"] is not None]
    assert without_token
    assert with_token
    for row in without_token:
        assert bytes(row["canonical"]) == bytes(row["original"])
    for row in with_token:
        assert bytes(row["canonical"]) != bytes(row["original"])


def test_the_canonical_bytes_do_not_depend_on_the_sessions_settings(
    make_history, client, engine, database
):
    make_history(profiles=1)
    expected = [bytes(e["canonical"]) for e in canonical_entries(database)]
    with engine.connect() as connection:
        connection.execute(text("SET TIME ZONE 'Asia/Tokyo'"))
        connection.execute(text("SET DateStyle = 'SQL, DMY'"))
        seen = connection.execute(
            text(f"SELECT {CANONICAL_SQL} FROM user_audit ORDER BY id")
        ).scalars()
        assert [bytes(c) for c in seen] == expected


def test_an_intact_chain_verifies(make_history, client, runner, database):
    make_history()
    result = verify(runner)
    assert result.exit_code == 0, result.output
    assert "OK: 6 entries verified" in result.output
    [run] = database.rows("SELECT * FROM audit_verifications")
    assert run["ok"] is True
    assert run["entries_checked"] == 6
    assert run["head_seq"] == 6
    assert run["verified_by"].startswith("cli:")


def test_an_edited_entry_is_named(make_history, client, runner, engine, database):
    make_history()
    victim = database.audit()[3]["id"]
    rewrite_history(engine, f"UPDATE user_audit SET reason = 'nothing to see' WHERE id = {victim}")
    assert_fails_at(verify(runner), victim, "does not match its hash")
    [run] = database.rows("SELECT ok, first_bad_entry_id FROM audit_verifications")
    assert run == {"ok": False, "first_bad_entry_id": victim}


def test_an_edited_snapshot_is_named(make_history, client, runner, engine, database):
    make_history()
    victim = database.audit()[1]["id"]
    rewrite_history(
        engine,
        "UPDATE user_audit SET new_data = jsonb_set(new_data, '{name}', '\"Someone else\"') "
        f"WHERE id = {victim}",
    )
    assert_fails_at(verify(runner), victim, "does not match its hash")


def test_a_deleted_middle_entry_is_found(make_history, client, runner, engine, database):
    make_history()
    entries = database.audit()
    victim = entries[2]["id"]
    rewrite_history(
        engine,
        f"DELETE FROM audit_chain WHERE entry_id = {victim}",
        f"DELETE FROM user_audit WHERE id = {victim}",
    )
    # The entry after the gap is named; the gap says which link went.
    assert_fails_at(verify(runner), entries[3]["id"], "link 3 is missing")


def test_an_entry_deleted_under_its_link_is_named(make_history, client, runner, engine, database):
    make_history()
    victim = database.audit()[2]["id"]
    with engine.begin() as connection:
        # Disabling every trigger, foreign keys included, takes a superuser.
        connection.execute(text("ALTER TABLE user_audit DISABLE TRIGGER ALL"))
        connection.execute(text(f"DELETE FROM user_audit WHERE id = {victim}"))
        connection.execute(text("ALTER TABLE user_audit ENABLE TRIGGER ALL"))
    assert_fails_at(verify(runner), victim, "is missing from the audit table")


def test_a_deleted_newest_entry_is_found_by_the_head(
    make_history, client, runner, engine, database
):
    make_history()
    newest = database.audit()[-1]["id"]
    rewrite_history(
        engine,
        f"DELETE FROM audit_chain WHERE entry_id = {newest}",
        f"DELETE FROM user_audit WHERE id = {newest}",
    )
    assert_fails_at(verify(runner), None, "the newest 1 entries were removed")


def test_a_head_row_moved_back_alone_is_found(make_history, client, runner, engine, database):
    make_history()
    rewrite_history(
        engine,
        "UPDATE audit_chain_head SET seq = 4, hash = (SELECT hash FROM audit_chain WHERE seq = 4)",
    )
    assert_fails_at(verify(runner), None, "its head row records link 4: the head was rewritten")


def test_a_deleted_newest_entry_with_a_rewound_head_is_found_by_a_checkpoint(
    make_history, client, runner, engine, database, tmp_path: Path
):
    make_history()
    saved = tmp_path / "checkpoint.json"
    written = runner.invoke(args=["audit", "checkpoint", "--output", str(saved)])
    assert written.exit_code == 0, written.output
    assert json.loads(saved.read_text())["seq"] == 6

    newest = database.audit()[-1]["id"]
    profile = database.audit()[-1]["user_id"]
    rewrite_history(
        engine,
        f"DELETE FROM audit_chain WHERE entry_id = {newest}",
        f"DELETE FROM user_audit WHERE id = {newest}",
        # A careful intruder also moves the head back to the remaining end and
        # undoes the change itself, so that the profile matches its history.
        "UPDATE audit_chain_head SET seq = 5, hash = (SELECT hash FROM audit_chain WHERE seq = 5)",
        "ALTER TABLE users DISABLE TRIGGER users_audit_safety_net",
        f"UPDATE users SET deleted_at = NULL, version = version - 1 WHERE id = {profile}",
        "ALTER TABLE users ENABLE TRIGGER users_audit_safety_net",
    )
    # Without the checkpoint nothing is provably missing...
    assert verify(runner).exit_code == 0
    # ...with it, the removal is found.
    assert_fails_at(
        verify(runner, "--checkpoint", str(saved)), None, "before the checkpoint's link 6"
    )


def test_a_checkpoint_of_a_rewritten_chain_does_not_match(
    make_history, client, runner, engine, database, tmp_path: Path
):
    make_history(profiles=1)
    saved = tmp_path / "checkpoint.json"
    saved.write_text(runner.invoke(args=["audit", "checkpoint"]).output)
    checkpoint = json.loads(saved.read_text())
    checkpoint["hash"] = "ab" * 32
    saved.write_text(json.dumps(checkpoint))
    assert_fails_at(verify(runner, "--checkpoint", str(saved)), None, "differs from the checkpoint")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not a checkpoint"),
        ('{"seq": 1, "hash": "zz", "taken_at": "2026-01-01T00:00:00Z"}', "64 hexadecimal"),
        ('{"seq": -1, "hash": "' + "00" * 32 + '", "taken_at": "2026-01-01"}', "non-negative"),
    ],
)
def test_a_bad_checkpoint_file_is_refused_clearly(
    client, runner, tmp_path: Path, content: str, message: str
):
    saved = tmp_path / "checkpoint.json"
    saved.write_text(content)
    result = verify(runner, "--checkpoint", str(saved))
    assert result.exit_code == 1
    assert message in result.output
    missing = verify(runner, "--checkpoint", str(tmp_path / "absent.json"))
    assert missing.exit_code != 0
    assert "Cannot read" in missing.output


def test_a_reordered_pair_is_found(make_history, client, runner, engine, database):
    make_history()
    entries = database.audit()
    # Swap the places of links 2 and 3 in the chain.
    rewrite_history(
        engine,
        "UPDATE audit_chain SET seq = seq + 1000 WHERE seq IN (2, 3)",
        "UPDATE audit_chain SET seq = 1005 - seq WHERE seq IN (1002, 1003)",
    )
    assert (
        database.rows("SELECT entry_id FROM audit_chain WHERE seq = 2")[0]["entry_id"]
        == (entries[2]["id"])
    )
    assert_fails_at(verify(runner), entries[2]["id"], "does not match its hash")


def test_swapped_timestamps_are_found(make_history, client, runner, engine, database):
    make_history()
    first, second = database.audit()[1:3]
    rewrite_history(
        engine,
        f"UPDATE user_audit SET timestamp = '{second['timestamp'].isoformat()}' "
        f"WHERE id = {first['id']}",
        f"UPDATE user_audit SET timestamp = '{first['timestamp'].isoformat()}' "
        f"WHERE id = {second['id']}",
    )
    assert_fails_at(verify(runner), first["id"], "does not match its hash")


def test_a_chain_rehashed_without_the_key_is_found(make_history, client, runner, engine, database):
    make_history()
    victim = database.audit()[2]["id"]
    rewrite_history(engine, f"UPDATE user_audit SET reason = 'rewritten' WHERE id = {victim}")
    # The intruder recomputes every hash, but can only guess at the key.
    guessed = b"guessed key"
    previous = chain.GENESIS_HASH
    with engine.begin() as connection, append_only_lifted(connection):
        rows = connection.execute(
            text(
                f"SELECT audit_chain.seq, {seal.ENTRY_DIGEST_SQL} AS digest "
                "FROM audit_chain JOIN user_audit ON user_audit.id = audit_chain.entry_id "
                "ORDER BY audit_chain.seq"
            )
        ).all()
        for row in rows:
            digest = seal.digest_seal(guessed, bytes(row.digest))
            previous = chain.link_hash(guessed, previous, row.seq, digest)
            connection.execute(
                text("UPDATE audit_chain SET hash = :hash WHERE seq = :seq"),
                {"hash": previous, "seq": row.seq},
            )
        connection.execute(text("UPDATE audit_chain_head SET hash = :hash"), {"hash": previous})
    # The very first link no longer matches under the real key.
    assert_fails_at(verify(runner), database.audit()[0]["id"], "re-hashed without the key")


def test_an_entry_inserted_behind_the_apps_back_is_named(
    make_history, client, runner, engine, database
):
    [user_id] = make_history(profiles=1)
    with engine.begin() as connection:
        # Delete the queue row the INSERT made, as the app's own role may.
        forged = connection.execute(
            text(
                "INSERT INTO user_audit (user_id, operation, previous_data, new_data, "
                "changed_fields, version, actor_label, channel) VALUES (:user, 'update', "
                "'{}'::jsonb, '{}'::jsonb, ARRAY['name'], 9, 'admin', 'web') RETURNING id"
            ),
            {"user": user_id},
        ).scalar_one()
        connection.execute(
            text("DELETE FROM audit_chain_pending WHERE entry_id = :id"), {"id": forged}
        )
    assert_fails_at(verify(runner), forged, "is in no link of the chain")


def forge_as_support_staff(engine: Engine, user_id: int, support_id: int, **extra: object) -> int:
    """The forgery as an attacker holding the app's database role writes it:
    an entry claiming a support agent's change through the dashboard, queued
    for linking as the app's entries are."""
    columns = {
        "user_id": user_id,
        "operation": "update",
        "previous_data": '{"name": "P 0", "email": "p0@example.com", "deleted_at": null}',
        "new_data": '{"name": "Mallory", "email": "p0@example.com", "deleted_at": null}',
        "changed_fields": ["name"],
        "version": 9,
        "actor_id": support_id,
        "actor_label": "sup",
        "channel": "web",
        "unattributed": False,
        **extra,
    }
    names = ", ".join(columns)
    values = ", ".join(
        f"CAST(:{name} AS jsonb)" if name.endswith("_data") else f":{name}" for name in columns
    )
    with engine.begin() as connection:
        forged = connection.execute(
            text(f"INSERT INTO user_audit ({names}) VALUES ({values}) RETURNING id"), columns
        ).scalar_one()
    # The forger's own queue row: the INSERT already queued the entry, so
    # this second one is refused, and the entry is linked all the same.
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(
            text("INSERT INTO audit_chain_pending (entry_id) VALUES (:id)"), {"id": forged}
        )
    return forged


@pytest.mark.parametrize(
    "extra", [{}, {"seal": bytes(32)}], ids=["without a seal", "with a made-up seal"]
)
def test_a_forged_entry_claiming_a_staff_members_change_is_named(
    make_history, runner, engine, link_chain, staff_factory, extra
):
    [user_id] = make_history(profiles=1)
    support = staff_factory.account("support", "sup")
    forged = forge_as_support_staff(engine, user_id, support.id, **extra)
    # Linked into the chain like any entry (the chain proves order and
    # completeness), but verification names it as forged, with or without links.
    before_linking = verify(runner)
    assert_fails_at(before_linking, forged, "forged or altered")
    assert link_chain() == 1
    result = verify(runner)
    assert_fails_at(result, forged, f"entry {forged}: forged or altered")
    assert "with --checkpoint" not in result.output


def test_a_sealed_entry_copied_into_a_new_row_is_named(make_history, runner, engine, link_chain):
    make_history(profiles=1)
    columns = ", ".join(name for name in seal.SEALED_FIELDS if name != "id") + ", seal"
    with engine.begin() as connection:
        copy = connection.execute(
            text(
                f"INSERT INTO user_audit ({columns}) SELECT {columns} FROM user_audit "
                "ORDER BY id DESC LIMIT 1 RETURNING id"
            )
        ).scalar_one()
    link_chain()
    assert_fails_at(verify(runner), copy, f"entry {copy}: forged or altered")


EDITS = {
    "user_id": "user_id = (SELECT max(id) FROM users)",
    "operation": "operation = 'restore'",
    "timestamp": "timestamp = timestamp + interval '1 microsecond'",
    "previous_data": "previous_data = jsonb_set(previous_data, '{name}', '\"X\"')",
    "new_data": "new_data = jsonb_set(new_data, '{email}', '\"x@example.com\"')",
    "changed_fields": "changed_fields = ARRAY['email']",
    "version": "version = version + 1",
    "reason": "reason = 'edited'",
    "actor_id": "actor_id = NULL",
    "actor_label": "actor_label = 'someone else'",
    "channel": "channel = 'cli'",
    "channel_detail": "channel_detail = 'edited'",
    "remote_addr": "remote_addr = '203.0.113.9'",
    "request_id": "request_id = 'edited'",
    "unattributed": "unattributed = true",
    "token_id": "token_id = NULL",
    "client_request_id": "client_request_id = 'edited'",
    "seal": "seal = sha256(seal)",
}


@pytest.mark.parametrize("column", sorted(EDITS))
def test_editing_any_column_of_a_sealed_entry_is_named(
    make_history, client, runner, engine, database, link_chain, column
):
    make_history(profiles=2)
    assert set(EDITS) == set(seal.SEALED_FIELDS) - {"id"} | {"seal"}
    # An update: its previous data, reason and actor are all set.
    victim = database.audit()[1]["id"]
    rewrite_history(engine, f"UPDATE user_audit SET {EDITS[column]} WHERE id = {victim}")
    result = verify(runner)
    assert_fails_at(result, victim, "")
    assert f"entry {victim}" in result.output


def test_a_raw_write_waits_for_its_link_and_the_sealer_links_it(
    make_history, client, runner, engine, database, link_chain
):
    [user_id, _] = make_history()
    with engine.begin() as connection:
        connection.execute(text("UPDATE users SET name = 'Rogue' WHERE id = :id"), {"id": user_id})
    [raw] = database.rows("SELECT id, seal FROM user_audit WHERE unattributed")
    assert raw["seal"] is None  # the database has no key
    assert [
        row["entry_id"] for row in database.rows("SELECT entry_id FROM audit_chain_pending")
    ] == [raw["id"]]
    pending = verify(runner)
    assert pending.exit_code == 0, pending.output
    assert "1 entries waiting for their link" in pending.output

    assert link_chain() == 1
    assert links(database)[-1]["entry_id"] == raw["id"]
    assert database.scalar("SELECT count(*) FROM audit_chain_pending") == 0
    linked = verify(runner)
    assert linked.exit_code == 0, linked.output
    assert "OK: 7 entries verified" in linked.output


def test_flask_audit_seal_links_the_backlog(make_history, client, runner, engine, database):
    [user_id] = make_history(profiles=1)
    with engine.begin() as connection:
        for n in range(chain.LINK_BATCH + 5):
            connection.execute(
                text("UPDATE users SET name = :name WHERE id = :id"),
                {"name": f"raw {n}", "id": user_id},
            )
    result = runner.invoke(args=["audit", "seal"])
    assert result.exit_code == 0, result.output
    assert f"{chain.LINK_BATCH + 5} entries linked" in result.output
    assert database.scalar("SELECT count(*) FROM audit_chain") == chain.LINK_BATCH + 8
    assert verify(runner).exit_code == 0


def test_an_entry_left_unlinked_too_long_fails_verification(
    make_history, app, client, runner, engine, database
):
    [user_id] = make_history(profiles=1)
    assert client.post(f"/api/v1/users/{user_id}/restore").status_code == 200
    waiting = database.audit()[-1]["id"]
    assert verify(runner).exit_code == 0  # just written: within the allowed delay
    delay = app.config["AUDIT_MAX_LINK_DELAY_SECONDS"]
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE audit_chain_pending SET queued_at = queued_at - :late"),
            {"late": timedelta(seconds=delay + 5)},
        )
    assert_fails_at(verify(runner), waiting, "AUDIT_MAX_LINK_DELAY_SECONDS")


def test_a_change_that_escaped_the_log_is_drift(make_history, client, runner, engine, database):
    [user_id, _] = make_history()
    with engine.begin() as connection:
        # Someone who may disable triggers edits a profile with no trace.
        connection.execute(text("ALTER TABLE users DISABLE TRIGGER users_audit_safety_net"))
        connection.execute(
            text("UPDATE users SET email = 'x@example.com' WHERE id = :id"), {"id": user_id}
        )
        connection.execute(text("ALTER TABLE users ENABLE TRIGGER users_audit_safety_net"))
    result = verify(runner)
    assert_fails_at(result, None, "1 profile(s) differ from their latest audit entry")
    assert f": {user_id}." in result.output
    [run] = database.rows("SELECT ok, drifted_profiles FROM audit_verifications")
    assert run == {"ok": False, "drifted_profiles": 1}


def test_a_fork_is_an_error_not_a_branch(make_history, client, engine, database):
    make_history(profiles=1)
    entry = database.audit()[0]["id"]
    with pytest.raises(IntegrityError), engine.begin() as connection:
        # A second link 3, as a writer that skipped the head's lock would add.
        connection.execute(
            text("INSERT INTO audit_chain (seq, entry_id, hash) VALUES (3, :entry, :hash)"),
            {"entry": entry, "hash": bytes(32)},
        )


def test_sixteen_concurrent_writers_and_sealers_never_fork_the_chain(
    make_history, app, client, runner, database
):
    profiles = make_history(profiles=16)
    for user_id in profiles:
        assert client.post(f"/api/v1/users/{user_id}/restore").status_code == 200
    writes_each = 6
    start = threading.Barrier(16 + 4, timeout=60)
    writing = threading.Event()
    failures: list[str] = []
    key = app.config["AUDIT_CHAIN_KEY"].encode()

    def writer(user_id: int) -> None:
        own = app.test_client()
        own.environ_base.update(client.environ_base)
        start.wait()
        for n in range(writes_each):
            answer = own.patch(
                f"/api/v1/users/{user_id}", json={"email": f"w{n}.{user_id}@example.com"}
            )
            if answer.status_code != 200:
                failures.append(f"{user_id}: {answer.status_code} {answer.get_data(as_text=True)}")

    def sealer() -> None:
        # As the sealers of four processes would: each links what it finds.
        start.wait()
        with app.app_context():
            while writing.is_set():
                link_all(db.engine, key)

    writing.set()
    writers = [threading.Thread(target=writer, args=(user_id,)) for user_id in profiles]
    sealers = [threading.Thread(target=sealer) for _ in range(4)]
    for thread in writers + sealers:
        thread.start()
    for thread in writers:
        thread.join(timeout=180)
    writing.clear()
    for thread in sealers:
        thread.join(timeout=60)
    assert not failures
    with app.app_context():
        link_all(db.engine, key)
    entries = database.audit()
    assert len(entries) == 16 * (4 + writes_each)
    chain_links = links(database)
    assert [link["seq"] for link in chain_links] == list(range(1, len(entries) + 1))
    assert sorted(link["entry_id"] for link in chain_links) == [e["id"] for e in entries]
    result = verify(runner)
    assert result.exit_code == 0, result.output
    assert f"OK: {len(entries)} entries verified" in result.output


def test_entries_committed_out_of_id_order_are_all_linked(app, client, link_chain, database):
    """The transaction holding the lower entry id commits last: its entry is
    linked by a later batch, never skipped."""
    first = post_profile(client, "First", "first@example.com")
    second = post_profile(client, "Second", "second@example.com")
    link_chain()
    admin = client.staff  # type: ignore[attr-defined]
    with app.app_context() as outer, acting_as(Actor(admin.id, admin.username), Origin("cli")):
        early = db.session.get(User, first)
        early.name = "First, renamed early"
        db.session.flush()  # entry written (the lower id), not committed
        early_entry = database.scalar("SELECT max(id) FROM user_audit")
        with app.app_context():  # another transaction, on its own connection
            assert db.session is not outer
            late = db.session.get(User, second)
            late.name = "Second, renamed later"
            db.session.commit()
        late_entry = database.scalar("SELECT max(id) FROM user_audit")
        assert late_entry > early_entry or early_entry is None
        assert link_chain() == 1  # the committed one; the other is not visible yet
        db.session.commit()
    assert link_chain() == 1
    linked = [link["entry_id"] for link in links(database)]
    entries = [entry["id"] for entry in database.audit()]
    assert sorted(linked) == entries
    assert linked[-2:] == sorted(linked[-2:], reverse=True)  # higher id first
    assert database.scalar("SELECT count(*) FROM audit_chain_pending") == 0


def test_a_failed_save_leaves_nothing_to_link(client, database, link_chain):
    first = client.post("/api/v1/users", json={"name": "Ada", "email": "ada@example.com"})
    refused = client.post("/api/v1/users", json={"name": "Ada", "email": "ADA@example.com"})
    assert (first.status_code, refused.status_code) == (201, 409)
    assert database.scalar("SELECT count(*) FROM audit_chain_pending") == 1
    assert link_chain() == 1
    assert [link["seq"] for link in links(database)] == [1]
    assert database.scalar("SELECT seq FROM audit_chain_head") == 1


def test_the_api_reports_the_head_and_the_last_verification(
    make_history, client, runner, staff_factory, database
):
    make_history(profiles=1)
    auditor = staff_factory.client("auditor")
    before = auditor.get("/api/v1/audit/verify")
    assert before.status_code == 200
    body = before.get_json()
    assert body["last_verification"] is None
    head = database.rows("SELECT seq, hash FROM audit_chain_head")[0]
    assert body["head"] == {"seq": 3, "hash": bytes(head["hash"]).hex()}
    assert body["pending_entries"] == 0

    assert verify(runner).exit_code == 0
    last = auditor.get("/api/v1/audit/verify").get_json()["last_verification"]
    assert last["ok"] is True
    assert last["entries_checked"] == 3
    assert last["head"] == body["head"]
    assert last["problem"] is None
    assert last["verified_by"].startswith("cli:")


def test_the_api_reports_a_failed_verification(
    make_history, client, runner, engine, staff_factory, database
):
    make_history(profiles=1)
    victim = database.audit()[1]["id"]
    rewrite_history(engine, f"UPDATE user_audit SET version = 7 WHERE id = {victim}")
    assert verify(runner).exit_code == 1
    last = client.get("/api/v1/audit/verify").get_json()["last_verification"]
    assert last["ok"] is False
    assert last["first_bad_entry_id"] == victim
    assert "does not match its hash" in last["problem"]


@pytest.mark.parametrize(("role", "status"), [("support", 403), (None, 401)])
def test_only_auditors_and_admins_see_verification(staff_factory, role, status):
    answer = staff_factory.client(role).get("/api/v1/audit/verify")
    assert answer.status_code == status
    assert answer.headers["Content-Type"] == "application/problem+json"


def test_verification_takes_no_parameters(client):
    answer = client.get("/api/v1/audit/verify?full=1")
    assert answer.status_code == 400
    assert "full" in answer.get_json()["errors"]


def chain_badge(page) -> str:
    html = page.get_data(as_text=True)
    start = html.index('id="chain-status"')
    return html[html.rindex("<p", 0, start) : html.index("</p>", start)]


def test_the_timeline_shows_the_last_verification(
    make_history, client, runner, engine, signed_in, database
):
    auditor = signed_in("auditor")
    badge = chain_badge(auditor.get("/audit"))
    assert 'class="chain-status chain-never"' in badge
    # Worded for auditors: what it means and whom to ask, not a command to run.
    assert "Not checked for tampering yet" in badge
    assert "Ask your administrators to schedule the daily check." in badge
    assert "flask" not in badge

    make_history(profiles=1)
    assert verify(runner).exit_code == 0
    badge = chain_badge(auditor.get("/audit"))
    assert 'class="chain-status chain-ok"' in badge
    assert "all 3 entries up to then are intact: none was changed, removed or inserted" in badge

    victim = database.audit()[0]["id"]
    rewrite_history(engine, f"UPDATE user_audit SET actor_label = 'someone' WHERE id = {victim}")
    assert verify(runner).exit_code == 1
    badge = chain_badge(auditor.get("/audit"))
    assert 'class="chain-status chain-failed"' in badge
    assert f"Tamper check FAILED at entry {victim}" in badge
    assert "Do not rely on these entries as evidence until this is explained" in badge
    assert "tell your security contact and your administrators at once" in badge


def test_an_old_verification_is_shown_as_stale(make_history, app, engine, signed_in):
    make_history(profiles=1)
    with app.app_context():
        # A genuine result, three days old: editing a result's dates breaks its seal.
        result = audit_integrity.verify(db.engine, KEY)
        result.started_at -= timedelta(days=3)
        result.finished_at -= timedelta(days=3)
        audit_integrity.record(result, "cli:tests")
    badge = chain_badge(signed_in("auditor").get("/audit"))
    assert 'class="chain-status chain-stale"' in badge
    assert "The daily check may have stopped: ask your administrators." in badge


def fake_a_passing_result(engine: Engine) -> None:
    """A result row as an attacker with the app's role would insert it."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO audit_verifications (started_at, finished_at, ok, entries_checked, "
                "head_seq, head_hash, pending_entries, drifted_profiles, verified_by) VALUES "
                "('2099-01-01', '2099-01-01', true, 3, 3, '\\x00', 0, 0, 'cli:root')"
            )
        )


def test_a_faked_verification_result_is_ignored_and_reported(
    make_history, client, runner, engine, signed_in, staff_factory, database
):
    make_history(profiles=1)
    victim = database.audit()[0]["id"]
    rewrite_history(engine, f"UPDATE user_audit SET actor_label = 'someone' WHERE id = {victim}")
    assert verify(runner).exit_code == 1
    fake_a_passing_result(engine)

    badge = chain_badge(signed_in("auditor").get("/audit"))
    assert 'class="chain-status chain-failed"' in badge
    assert "Someone tried to change the tamper check" in badge
    status = staff_factory.client("auditor").get("/api/v1/audit/verify").get_json()
    assert status["last_verification"]["ok"] is False
    assert status["last_verification"]["first_bad_entry_id"] == victim
    assert status["unsealed_results_ignored"] == 1


def test_a_faked_result_alone_fails_verification(make_history, runner, engine, database):
    make_history(profiles=1)
    fake_a_passing_result(engine)
    fake_id = database.scalar("SELECT id FROM audit_verifications WHERE seal IS NULL")
    result = verify(runner)
    assert_fails_at(result, None, f"verification result(s) {fake_id} were not written")


def test_the_backlog_of_unlinked_entries_is_shown(client, signed_in, staff_factory, link_chain):
    post_profile(client, "Waiting", "waiting@example.com")
    badge = chain_badge(signed_in("auditor").get("/audit"))
    assert "Newest entries wait for their link: the oldest for" in badge
    status = staff_factory.client("auditor").get("/api/v1/audit/verify").get_json()
    assert status["pending_entries"] == 1
    assert status["oldest_unlinked_entry_seconds"] >= 0
    link_chain()
    assert "wait for their link" not in chain_badge(signed_in("auditor").get("/audit"))
    status = staff_factory.client("auditor").get("/api/v1/audit/verify").get_json()
    assert (status["pending_entries"], status["oldest_unlinked_entry_seconds"]) == (0, None)


def test_the_badge_is_not_in_fragments(make_history, client, signed_in):
    make_history(profiles=1)
    fragment = signed_in("auditor").get("/audit?operation=update", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "chain-status" not in fragment.get_data(as_text=True)


def test_a_flush_of_many_profiles_is_linked_in_one_straight_run(
    app_context, runner, database, link_chain
):
    for n in range(2100):  # more rows than one multi-row INSERT carries
        db.session.add(User(name=f"Bulk {n}", email=f"bulk{n}@example.com"))
    db.session.commit()
    assert link_chain() == 2100
    entries = database.audit()
    assert len(entries) == 2100
    assert [link["entry_id"] for link in links(database)] == [e["id"] for e in entries]
    assert verify(runner).exit_code == 0


def run_verify_command(database_url: str, *, stderr_on_a_terminal: bool) -> tuple[int, str, str]:
    """``flask audit verify`` in a subprocess: (status, stdout, stderr)."""
    status, stdout, stderr = run_flask(
        database_url, "audit", "verify", stderr_on_a_terminal=stderr_on_a_terminal
    )
    return status, stdout.decode(), stderr


def test_the_command_shows_progress_on_a_terminal_and_stays_quiet_in_pipes(
    make_history, client, test_database_url
):
    make_history(profiles=1)
    status, stdout, stderr = run_verify_command(test_database_url, stderr_on_a_terminal=True)
    assert status == 0, stderr
    assert "Verifying" in stderr
    assert "100%" in stderr
    assert "OK: 3 entries verified" in stdout

    status, stdout, stderr = run_verify_command(test_database_url, stderr_on_a_terminal=False)
    assert status == 0, stderr
    assert stderr == ""
    assert stdout.startswith("OK: 3 entries verified")


def verify_in_ranges(app: Flask, **kwargs):
    with app.app_context():
        return audit_integrity.verify(db.engine, KEY, workers=3, min_links_per_worker=2, **kwargs)


def test_walking_ranges_at_once_checks_every_link(make_history, app, client, database):
    make_history(profiles=4)
    result = verify_in_ranges(app)
    assert result.ok, result.problem
    assert result.entries_checked == 12
    head = database.rows("SELECT seq, hash FROM audit_chain_head")[0]
    assert (result.head.seq, result.head.hash) == (12, bytes(head["hash"]))


@pytest.mark.parametrize("index", [0, 3, 4, 8, 11])  # first, range ends and starts, last
def test_walking_ranges_at_once_names_an_edited_entry_anywhere(
    make_history, app, client, engine, database, index
):
    make_history(profiles=4)
    victim = database.audit()[index]["id"]
    rewrite_history(engine, f"UPDATE user_audit SET reason = 'edited' WHERE id = {victim}")
    result = verify_in_ranges(app)
    assert result.problem is not None
    assert result.problem.entry_id == victim
    assert "does not match its hash" in result.problem.reason


@pytest.mark.parametrize("index", [3, 4, 7])  # the link on either side of a range boundary
def test_walking_ranges_at_once_finds_a_deleted_link_at_a_boundary(
    make_history, app, client, engine, database, index
):
    make_history(profiles=4)
    victim = database.audit()[index]["id"]
    rewrite_history(
        engine,
        f"DELETE FROM audit_chain WHERE entry_id = {victim}",
        f"DELETE FROM user_audit WHERE id = {victim}",
    )
    result = verify_in_ranges(app)
    assert result.problem is not None
    assert f"link {index + 1} is missing" in result.problem.reason


def test_saves_during_a_verification_are_not_taken_for_damage(make_history, app, client, database):
    """Verification reads one snapshot: links and head written while it walks
    are neither walked nor compared with what was."""
    [user_id, _] = make_history()
    saved: list[int] = []

    def save_while_walking(count: int) -> None:
        if not saved:
            answer = client.post(f"/api/v1/users/{user_id}/restore")
            saved.append(answer.status_code)

    with app.app_context():
        result = audit_integrity.verify(db.engine, KEY, progress=save_while_walking)
        link_all(db.engine, KEY)
    assert saved == [200]
    assert result.ok, result.problem
    assert result.head.seq == 6
    assert result.pending_entries == 0
    assert database.scalar("SELECT seq FROM audit_chain_head") == 7


def test_the_apps_sealer_links_each_save_soon_after_its_commit(app, client, database):
    threaded = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "AUDIT_SEALER": "thread",
            "AUDIT_SEAL_POLL_SECONDS": 30,  # so only the commit's wake-up can link in time
        }
    )
    sealer = threaded.extensions["audit_sealer"]
    browser = threaded.test_client()
    browser.environ_base.update(client.environ_base)
    try:
        for n in range(3):
            created = browser.post(
                "/api/v1/users", json={"name": f"Linked {n}", "email": f"l{n}@example.com"}
            )
            assert created.status_code == 201
            deadline = time.monotonic() + 20
            while database.scalar("SELECT count(*) FROM audit_chain") < n + 1:
                assert time.monotonic() < deadline, "the save was not linked"
                time.sleep(0.05)
        assert database.scalar("SELECT count(*) FROM audit_chain_pending") == 0
        with threaded.app_context():
            assert audit_integrity.verify(db.engine, threaded.config["AUDIT_CHAIN_KEY"].encode()).ok
    finally:
        sealer.stop()
        with threaded.app_context():
            db.engine.dispose()
