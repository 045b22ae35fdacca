"""Tamper evidence: every entry is linked into a keyed hash chain, and
``flask audit verify`` finds any edit, removal, insertion or reordering, naming
the first entry that does not check out."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from datetime import UTC
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from tests.conftest import Database, append_only_lifted
from tests.flask_commands import run_flask
from webapp.audit import chain
from webapp.extensions import db
from webapp.models import User
from webapp.services import audit_integrity

KEY = b"dev-only-audit-chain-key"


def verify(runner: FlaskCliRunner, *args: str):
    result = runner.invoke(args=["audit", "verify", *args])
    assert "Traceback" not in result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def make_history(client: FlaskClient, profiles: int = 2) -> list[int]:
    """Create ``profiles`` profiles and change each twice: 3 entries per profile."""
    ids = []
    for n in range(profiles):
        user_id = client.post(
            "/api/v1/users", json={"name": f"Person {n}", "email": f"p{n}@example.com"}
        ).get_json()["id"]
        assert client.patch(f"/api/v1/users/{user_id}", json={"name": f"P {n}"}).status_code == 200
        assert client.delete(f"/api/v1/users/{user_id}").status_code == 204
        ids.append(user_id)
    return ids


def links(database: Database) -> list[dict]:
    return database.rows("SELECT seq, entry_id, hash FROM audit_chain ORDER BY seq")


def tamper(engine: Engine, *statements: str) -> None:
    """Change history the way a database administrator could: guards down."""
    with engine.begin() as connection, append_only_lifted(connection):
        for statement in statements:
            connection.execute(text(statement))


def assert_fails_at(result, entry_id: int | None, words: str) -> None:
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output
    if entry_id is not None:
        assert re.search(rf"\bentry {entry_id}\b", result.output), result.output
    assert words in result.output


def canonical_entries(database: Database) -> list[dict]:
    return database.rows(
        f"SELECT id, {chain.CANONICAL_ENTRY_SQL} AS canonical FROM user_audit ORDER BY id"
    )


def test_every_entry_is_linked_in_order_with_a_keyed_hash(client, database):
    make_history(client)
    entries = canonical_entries(database)
    chain_links = links(database)
    assert [link["seq"] for link in chain_links] == list(range(1, len(entries) + 1))
    assert [link["entry_id"] for link in chain_links] == [e["id"] for e in entries]
    previous = chain.GENESIS_HASH
    for link, entry in zip(chain_links, entries, strict=True):
        message = previous + link["seq"].to_bytes(8, "big") + bytes(entry["canonical"])
        expected = hmac.new(KEY, message, hashlib.sha256).digest()
        assert bytes(link["hash"]) == expected
        previous = expected
    head = database.rows("SELECT seq, hash FROM audit_chain_head")[0]
    assert (head["seq"], bytes(head["hash"])) == (len(entries), previous)


def test_the_canonical_bytes_hold_every_column_of_an_entry(client, database):
    make_history(client, profiles=1)
    traced = client.post(
        "/api/v1/users",
        json={"name": "Traced", "email": "traced@example.com"},
        headers={"X-Request-ID": "trace-0001"},
    )
    assert traced.status_code == 201
    columns = {
        row["column_name"]
        for row in database.rows(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'user_audit'"
        )
    }
    assert columns == set(chain.CHAINED_FIELDS)
    entry = database.audit()[-1]
    assert entry["token_id"] is not None
    assert entry["client_request_id"] == "trace-0001"
    canonical = bytes(canonical_entries(database)[-1]["canonical"])
    decoded = json.loads(canonical)
    assert set(decoded) == columns | {"encoding"}
    assert (decoded["token_id"], decoded["client_request_id"]) == (entry["token_id"], "trace-0001")
    assert decoded["timestamp"] == entry["timestamp"].astimezone(UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )
    assert decoded["new_data"] == entry["new_data"]
    assert decoded["changed_fields"] == entry["changed_fields"]
    assert (decoded["version"], decoded["actor_label"]) == (entry["version"], entry["actor_label"])


def test_columns_added_later_leave_the_bytes_of_entries_without_them_unchanged(
    client, database, engine
):
    """Entries chained before ``token_id`` and ``client_request_id`` existed
    have them null: their canonical bytes must be what they were, or every
    link made before the columns were added would stop verifying."""
    with engine.begin() as connection:  # as psql would: the safety net records it, no token
        connection.execute(
            text("INSERT INTO users (name, email, version) VALUES ('Old', 'old@example.com', 1)")
        )
    make_history(client, profiles=1)
    original = (
        "pg_catalog.convert_to(pg_catalog.jsonb_build_object("
        + ", ".join(
            f"'{name}', {chain._VALUE_OF.get(name, f'user_audit.{name}')}"
            for name in chain.CHAINED_FIELDS
            if name not in chain.OPTIONAL_CHAINED_FIELDS
        )
        + f", 'encoding', {chain.ENCODING_VERSION})::text, 'UTF8')"
    )
    rows = database.rows(
        f"SELECT token_id, {original} AS original, {chain.CANONICAL_ENTRY_SQL} AS canonical "
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


@pytest.mark.parametrize(
    ("column", "value"),
    [("token_id", "NULL"), ("client_request_id", "'forged-0001'")],
    ids=["token-removed", "client-id-added"],
)
def test_an_edited_token_or_client_request_id_is_named(
    client, runner, engine, database, column, value
):
    make_history(client, profiles=1)
    victim = database.audit()[1]["id"]
    tamper(engine, f"UPDATE user_audit SET {column} = {value} WHERE id = {victim}")
    assert_fails_at(verify(runner), victim, "does not match its hash")


def test_the_canonical_bytes_do_not_depend_on_the_sessions_settings(client, engine, database):
    make_history(client, profiles=1)
    expected = [bytes(e["canonical"]) for e in canonical_entries(database)]
    with engine.connect() as connection:
        connection.execute(text("SET TIME ZONE 'Asia/Tokyo'"))
        connection.execute(text("SET DateStyle = 'SQL, DMY'"))
        seen = connection.execute(
            text(f"SELECT {chain.CANONICAL_ENTRY_SQL} FROM user_audit ORDER BY id")
        ).scalars()
        assert [bytes(c) for c in seen] == expected


def test_an_intact_chain_verifies(client, runner, database):
    make_history(client)
    result = verify(runner)
    assert result.exit_code == 0, result.output
    assert "OK: 6 entries verified" in result.output
    [run] = database.rows("SELECT * FROM audit_verifications")
    assert run["ok"] is True
    assert run["entries_checked"] == 6
    assert run["head_seq"] == 6
    assert run["verified_by"].startswith("cli:")


def test_an_edited_entry_is_named(client, runner, engine, database):
    make_history(client)
    victim = database.audit()[3]["id"]
    tamper(engine, f"UPDATE user_audit SET reason = 'nothing to see' WHERE id = {victim}")
    assert_fails_at(verify(runner), victim, "does not match its hash")
    [run] = database.rows("SELECT ok, first_bad_entry_id FROM audit_verifications")
    assert run == {"ok": False, "first_bad_entry_id": victim}


def test_an_edited_snapshot_is_named(client, runner, engine, database):
    make_history(client)
    victim = database.audit()[1]["id"]
    tamper(
        engine,
        "UPDATE user_audit SET new_data = jsonb_set(new_data, '{name}', '\"Someone else\"') "
        f"WHERE id = {victim}",
    )
    assert_fails_at(verify(runner), victim, "does not match its hash")


def test_a_deleted_middle_entry_is_found(client, runner, engine, database):
    make_history(client)
    entries = database.audit()
    victim = entries[2]["id"]
    tamper(
        engine,
        f"DELETE FROM audit_chain WHERE entry_id = {victim}",
        f"DELETE FROM user_audit WHERE id = {victim}",
    )
    # The entry after the gap is named; the gap says which link went.
    assert_fails_at(verify(runner), entries[3]["id"], "link 3 is missing")


def test_an_entry_deleted_under_its_link_is_named(client, runner, engine, database):
    make_history(client)
    victim = database.audit()[2]["id"]
    with engine.begin() as connection:
        # Disabling every trigger, foreign keys included, takes a superuser.
        connection.execute(text("ALTER TABLE user_audit DISABLE TRIGGER ALL"))
        connection.execute(text(f"DELETE FROM user_audit WHERE id = {victim}"))
        connection.execute(text("ALTER TABLE user_audit ENABLE TRIGGER ALL"))
    assert_fails_at(verify(runner), victim, "is missing from the audit table")


def test_a_deleted_newest_entry_is_found_by_the_head(client, runner, engine, database):
    make_history(client)
    newest = database.audit()[-1]["id"]
    tamper(
        engine,
        f"DELETE FROM audit_chain WHERE entry_id = {newest}",
        f"DELETE FROM user_audit WHERE id = {newest}",
    )
    assert_fails_at(verify(runner), None, "the newest 1 entries were removed")


def test_a_head_row_moved_back_alone_is_found(client, runner, engine, database):
    make_history(client)
    tamper(
        engine,
        "UPDATE audit_chain_head SET seq = 4, hash = (SELECT hash FROM audit_chain WHERE seq = 4)",
    )
    assert_fails_at(verify(runner), None, "its head row records link 4: the head was rewritten")


def test_a_deleted_newest_entry_with_a_rewound_head_is_found_by_a_checkpoint(
    client, runner, engine, database, tmp_path: Path
):
    make_history(client)
    saved = tmp_path / "checkpoint.json"
    written = runner.invoke(args=["audit", "checkpoint", "--output", str(saved)])
    assert written.exit_code == 0, written.output
    assert json.loads(saved.read_text())["seq"] == 6

    newest = database.audit()[-1]["id"]
    profile = database.audit()[-1]["user_id"]
    tamper(
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
    client, runner, engine, database, tmp_path: Path
):
    make_history(client, profiles=1)
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


def test_a_reordered_pair_is_found(client, runner, engine, database):
    make_history(client)
    entries = database.audit()
    # Swap the places of links 2 and 3 in the chain.
    tamper(
        engine,
        "UPDATE audit_chain SET seq = seq + 1000 WHERE seq IN (2, 3)",
        "UPDATE audit_chain SET seq = 1005 - seq WHERE seq IN (1002, 1003)",
    )
    assert (
        database.rows("SELECT entry_id FROM audit_chain WHERE seq = 2")[0]["entry_id"]
        == (entries[2]["id"])
    )
    assert_fails_at(verify(runner), entries[2]["id"], "does not match its hash")


def test_swapped_timestamps_are_found(client, runner, engine, database):
    make_history(client)
    first, second = database.audit()[1:3]
    tamper(
        engine,
        f"UPDATE user_audit SET timestamp = '{second['timestamp'].isoformat()}' "
        f"WHERE id = {first['id']}",
        f"UPDATE user_audit SET timestamp = '{first['timestamp'].isoformat()}' "
        f"WHERE id = {second['id']}",
    )
    assert_fails_at(verify(runner), first["id"], "does not match its hash")


def test_a_chain_rehashed_without_the_key_is_found(client, runner, engine, database):
    make_history(client)
    victim = database.audit()[2]["id"]
    tamper(engine, f"UPDATE user_audit SET reason = 'rewritten' WHERE id = {victim}")
    # The intruder recomputes every hash, but can only guess at the key.
    guessed = b"guessed key"
    previous = chain.GENESIS_HASH
    with engine.begin() as connection, append_only_lifted(connection):
        rows = connection.execute(
            text(
                f"SELECT audit_chain.seq, {chain.CANONICAL_ENTRY_SQL} AS canonical "
                "FROM audit_chain JOIN user_audit ON user_audit.id = audit_chain.entry_id "
                "ORDER BY audit_chain.seq"
            )
        ).all()
        for row in rows:
            previous = chain.link_hash(guessed, previous, row.seq, bytes(row.canonical))
            connection.execute(
                text("UPDATE audit_chain SET hash = :hash WHERE seq = :seq"),
                {"hash": previous, "seq": row.seq},
            )
        connection.execute(text("UPDATE audit_chain_head SET hash = :hash"), {"hash": previous})
    # The very first link no longer matches under the real key.
    assert_fails_at(verify(runner), database.audit()[0]["id"], "re-hashed without the key")


def test_an_entry_inserted_behind_the_apps_back_is_named(client, runner, engine, database):
    [user_id] = make_history(client, profiles=1)
    with engine.begin() as connection:  # INSERT is all the app's own role may do
        forged = connection.execute(
            text(
                "INSERT INTO user_audit (user_id, operation, previous_data, new_data, "
                "changed_fields, version, actor_label, channel) VALUES (:user, 'update', "
                "'{}'::jsonb, '{}'::jsonb, ARRAY['name'], 9, 'admin', 'web') RETURNING id"
            ),
            {"user": user_id},
        ).scalar_one()
    assert_fails_at(verify(runner), forged, "is in no link of the chain")


def test_a_raw_write_waits_to_be_sealed_and_is_sealed_by_the_next_save(
    client, runner, engine, database
):
    [user_id, other] = make_history(client)
    with engine.begin() as connection:
        connection.execute(text("UPDATE users SET name = 'Rogue' WHERE id = :id"), {"id": user_id})
    [raw] = database.rows("SELECT id FROM user_audit WHERE unattributed")
    assert database.rows("SELECT entry_id FROM audit_chain_pending") == [{"entry_id": raw["id"]}]
    pending = verify(runner)
    assert pending.exit_code == 0, pending.output
    assert "1 entries waiting to be sealed" in pending.output

    assert client.post(f"/api/v1/users/{other}/restore").status_code == 200
    chain_links = links(database)
    assert [link["entry_id"] for link in chain_links[-2:]] == [
        raw["id"],
        database.audit()[-1]["id"],
    ]
    assert database.scalar("SELECT count(*) FROM audit_chain_pending") == 0
    sealed = verify(runner)
    assert sealed.exit_code == 0, sealed.output
    assert "OK: 8 entries verified" in sealed.output


def test_flask_audit_seal_seals_the_backlog(client, runner, engine, database):
    [user_id] = make_history(client, profiles=1)
    with engine.begin() as connection:
        for n in range(chain.SEAL_BATCH + 5):
            connection.execute(
                text("UPDATE users SET name = :name WHERE id = :id"),
                {"name": f"raw {n}", "id": user_id},
            )
    result = runner.invoke(args=["audit", "seal"])
    assert result.exit_code == 0, result.output
    assert f"{chain.SEAL_BATCH + 5} entries sealed" in result.output
    assert database.scalar("SELECT count(*) FROM audit_chain") == chain.SEAL_BATCH + 8
    assert verify(runner).exit_code == 0


def test_a_change_that_escaped_the_log_is_drift(client, runner, engine, database):
    [user_id, _] = make_history(client)
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


def test_a_fork_is_an_error_not_a_branch(client, engine, database):
    make_history(client, profiles=1)
    entry = database.audit()[0]["id"]
    with pytest.raises(IntegrityError), engine.begin() as connection:
        # A second link 3, as a writer that skipped the head's lock would add.
        connection.execute(
            text("INSERT INTO audit_chain (seq, entry_id, hash) VALUES (3, :entry, :hash)"),
            {"entry": entry, "hash": bytes(32)},
        )


def test_eight_concurrent_writers_never_fork_the_chain(app, client, runner, database):
    profiles = make_history(client, profiles=8)
    for user_id in profiles:
        client.post(f"/api/v1/users/{user_id}/restore")
    writes_each = 10
    start = threading.Barrier(8, timeout=60)
    failures: list[str] = []

    def writer(user_id: int) -> None:
        own = app.test_client()
        own.environ_base.update(client.environ_base)
        start.wait()
        for n in range(writes_each):
            answer = own.patch(f"/api/v1/users/{user_id}", json={"name": f"write {n}"})
            if answer.status_code != 200:
                failures.append(f"{user_id}: {answer.status_code} {answer.get_data(as_text=True)}")

    threads = [threading.Thread(target=writer, args=(user_id,)) for user_id in profiles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures
    entries = database.audit()
    assert len(entries) == 8 * (4 + writes_each)
    assert [link["seq"] for link in links(database)] == list(range(1, len(entries) + 1))
    result = verify(runner)
    assert result.exit_code == 0, result.output
    assert f"OK: {len(entries)} entries verified" in result.output


def test_a_failed_save_leaves_no_link_behind(client, database):
    first = client.post("/api/v1/users", json={"name": "Ada", "email": "ada@example.com"})
    refused = client.post("/api/v1/users", json={"name": "Ada", "email": "ADA@example.com"})
    assert (first.status_code, refused.status_code) == (201, 409)
    assert [link["seq"] for link in links(database)] == [1]
    assert database.scalar("SELECT seq FROM audit_chain_head") == 1


def test_the_api_reports_the_head_and_the_last_verification(
    client, runner, staff_factory, database
):
    make_history(client, profiles=1)
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


def test_the_api_reports_a_failed_verification(client, runner, engine, staff_factory, database):
    make_history(client, profiles=1)
    victim = database.audit()[1]["id"]
    tamper(engine, f"UPDATE user_audit SET version = 7 WHERE id = {victim}")
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


def test_the_timeline_shows_the_last_verification(client, runner, engine, signed_in, database):
    auditor = signed_in("auditor")
    assert 'class="chain-status chain-never"' in chain_badge(auditor.get("/audit"))

    make_history(client, profiles=1)
    assert verify(runner).exit_code == 0
    badge = chain_badge(auditor.get("/audit"))
    assert 'class="chain-status chain-ok"' in badge
    assert "3 entries intact up to link 3" in badge

    victim = database.audit()[0]["id"]
    tamper(engine, f"UPDATE user_audit SET actor_label = 'someone' WHERE id = {victim}")
    assert verify(runner).exit_code == 1
    badge = chain_badge(auditor.get("/audit"))
    assert 'class="chain-status chain-failed"' in badge
    assert f"FAILED (entry {victim})" in badge


def test_an_old_verification_is_shown_as_stale(client, runner, engine, signed_in):
    make_history(client, profiles=1)
    assert verify(runner).exit_code == 0
    tamper(
        engine,
        "UPDATE audit_verifications SET finished_at = finished_at - interval '3 days', "
        "started_at = started_at - interval '3 days'",
    )
    badge = chain_badge(signed_in("auditor").get("/audit"))
    assert 'class="chain-status chain-stale"' in badge


def test_the_badge_is_not_in_fragments(client, signed_in):
    make_history(client, profiles=1)
    fragment = signed_in("auditor").get("/audit?operation=update", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "chain-status" not in fragment.get_data(as_text=True)


def test_a_flush_of_many_profiles_is_linked_in_one_straight_run(app_context, runner, database):
    for n in range(2100):  # more rows than one multi-row INSERT carries
        db.session.add(User(name=f"Bulk {n}", email=f"bulk{n}@example.com"))
    db.session.commit()
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
    client, test_database_url
):
    make_history(client, profiles=1)
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


def test_walking_ranges_at_once_checks_every_link(app, client, database):
    make_history(client, profiles=4)
    result = verify_in_ranges(app)
    assert result.ok, result.problem
    assert result.entries_checked == 12
    head = database.rows("SELECT seq, hash FROM audit_chain_head")[0]
    assert (result.head.seq, result.head.hash) == (12, bytes(head["hash"]))


@pytest.mark.parametrize("index", [0, 3, 4, 8, 11])  # first, range ends and starts, last
def test_walking_ranges_at_once_names_an_edited_entry_anywhere(
    app, client, engine, database, index
):
    make_history(client, profiles=4)
    victim = database.audit()[index]["id"]
    tamper(engine, f"UPDATE user_audit SET reason = 'edited' WHERE id = {victim}")
    result = verify_in_ranges(app)
    assert result.problem is not None
    assert result.problem.entry_id == victim
    assert "does not match its hash" in result.problem.reason


@pytest.mark.parametrize("index", [3, 4, 7])  # the link on either side of a range boundary
def test_walking_ranges_at_once_finds_a_deleted_link_at_a_boundary(
    app, client, engine, database, index
):
    make_history(client, profiles=4)
    victim = database.audit()[index]["id"]
    tamper(
        engine,
        f"DELETE FROM audit_chain WHERE entry_id = {victim}",
        f"DELETE FROM user_audit WHERE id = {victim}",
    )
    result = verify_in_ranges(app)
    assert result.problem is not None
    assert f"link {index + 1} is missing" in result.problem.reason


def test_saves_during_a_verification_are_not_taken_for_damage(app, client, database):
    """Verification reads one snapshot: links and head written while it walks
    are neither walked nor compared with what was."""
    [user_id, _] = make_history(client)
    saved: list[int] = []

    def save_while_walking(count: int) -> None:
        if not saved:
            answer = client.post(f"/api/v1/users/{user_id}/restore")
            saved.append(answer.status_code)

    with app.app_context():
        result = audit_integrity.verify(db.engine, KEY, progress=save_while_walking)
    assert saved == [200]
    assert result.ok, result.problem
    assert result.head.seq == 6
    assert database.scalar("SELECT seq FROM audit_chain_head") == 7
