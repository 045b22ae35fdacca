"""Exports and the drift check read personal values the table holds encrypted:
decrypted in every export format, ``[erased]`` once a profile is erased,
``[unreadable]`` when a ciphertext was altered, clear values of older entries
as they are; the drift check decrypts to compare, and passes for erased profiles."""

from __future__ import annotations

import csv
import io
import json

import pytest
from flask import Flask

from tests.support.database import rewrite_history
from tests.support.profiles import create_profile, update_profile
from webapp.audit.personal_data import ERASED, UNREADABLE, key_provider
from webapp.cli.operator_commands import acting_from_cli
from webapp.extensions import db
from webapp.services import audit_export, audit_integrity
from webapp.services.audit_filter import AuditFilter
from webapp.services.privacy import ERASED_NAME, erase_user, erased_email

PERSONAL = ("name", "email")


@pytest.fixture
def history(client, link_chain) -> dict[str, int]:
    """Ada (renamed, then her email changed) and Grace (deleted), linked."""
    ada = create_profile(client, 'Ada; "Lovelace", \\née', "ada@example.com")["id"]
    update_profile(client, ada, name="=Ada Byron")
    update_profile(client, ada, email="ada@example.org")
    grace = create_profile(client, "Grace Hopper", "grace@example.com")["id"]
    assert client.delete(f"/api/v1/users/{grace}").status_code == 204
    link_chain()
    return {"ada": ada, "grace": grace}


def erase(app: Flask, user_id: int) -> None:
    with app.app_context(), acting_from_cli():
        erase_user(user_id, reason="Art. 17 request #1")


def csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def export(app: Flask, kind: str, audit_filter: AuditFilter | None = None) -> bytes:
    lines = {
        "csv": audit_export.csv_lines,
        "ndjson": audit_export.ndjson_lines,
        "long": audit_export.long_csv_lines,
    }[kind]
    with app.app_context():
        try:
            return b"".join(lines(audit_filter or AuditFilter(), batch_size=2))
        finally:
            db.session.rollback()


def snapshots_by_entry(app: Flask, kind: str) -> dict[int, tuple[object, object]]:
    """Each entry's previous and new data as the CSV or the NDJSON export shows them."""
    data = export(app, kind)
    if kind == "ndjson":
        items = [json.loads(line) for line in data.decode().split("\n") if line]
        return {item["id"]: (item["previous_data"], item["new_data"]) for item in items}
    return {
        int(row["id"]): (
            json.loads(row["previous_data"]) if row["previous_data"] else None,
            json.loads(row["new_data"]),
        )
        for row in csv_rows(data)
    }


def test_the_table_holds_ciphertext_and_every_export_shows_the_values(app, history, database):
    stored = database.raw_audit(history["ada"])
    assert all(set(entry["new_data"]["name"]) == {"ciphertext"} for entry in stored)
    shown = {entry["id"]: (entry["previous_data"], entry["new_data"]) for entry in database.audit()}
    assert snapshots_by_entry(app, "csv") == shown
    assert snapshots_by_entry(app, "ndjson") == shown
    names = [entry["new_data"]["name"] for entry in database.audit(history["ada"])]
    assert names == ['Ada; "Lovelace", \\née', "=Ada Byron", "=Ada Byron"]


def test_the_long_form_shows_values_decrypted_and_neutralised(app, history):
    rows = csv_rows(export(app, "long", AuditFilter(user_id=history["ada"])))
    assert [(row["field"], row["before"], row["after"]) for row in rows] == [
        ("email", "ada@example.com", "ada@example.org"),
        ("name", 'Ada; "Lovelace", \\née', "'=Ada Byron"),
        ("name", "", 'Ada; "Lovelace", \\née'),
        ("email", "", "ada@example.com"),
    ]


def test_api_and_command_line_exports_show_values_decrypted(client, runner, history, tmp_path):
    ndjson = client.get("/api/v1/audit/export?format=ndjson").get_data(as_text=True)
    listed = client.get("/api/v1/audit?limit=100").get_json()["items"]
    assert [json.loads(line) for line in ndjson.splitlines()] == listed
    assert {item["new_data"]["name"] for item in listed} >= {"=Ada Byron", "Grace Hopper"}
    result = runner.invoke(args=["audit", "export", "--format", "csv", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = (tmp_path / "audit_all.csv").read_bytes()
    assert written == client.get("/api/v1/audit/export?format=csv").get_data()
    assert b"grace@example.com" in written
    assert b"ciphertext" not in written


def test_an_erased_profile_shows_erased_in_every_export(app, client, history, database):
    erase(app, history["grace"])
    erased_entries = [entry["id"] for entry in database.audit(history["grace"])]
    assert len(erased_entries) == 3  # create, delete, erase
    for kind in ("csv", "ndjson"):
        shown = snapshots_by_entry(app, kind)
        for entry_id in erased_entries:
            for snapshot in shown[entry_id]:
                if snapshot is not None:
                    assert [snapshot[name] for name in PERSONAL] == [ERASED, ERASED], kind
                    assert "deleted_at" in snapshot
        # Ada's values are untouched by Grace's erasure.
        assert shown[database.audit(history["ada"])[0]["id"]][1]["email"] == "ada@example.com"
    long_rows = csv_rows(export(app, "long", AuditFilter(user_id=history["grace"])))
    personal_rows = [row for row in long_rows if row["field"] in PERSONAL]
    assert personal_rows
    assert {row["after"] for row in personal_rows} == {ERASED}
    for kind in ("csv", "ndjson", "long"):
        data = export(app, kind)
        assert b"Grace Hopper" not in data
        assert b"grace@example.com" not in data
    api = client.get("/api/v1/audit/export?format=csv").get_data()
    assert b"Grace Hopper" not in api
    assert ERASED.encode() in api


def test_an_altered_ciphertext_shows_unreadable_and_the_rest_stays(app, history, database):
    ada = database.raw_audit(history["ada"])
    renamed, email_changed = ada[1]["id"], ada[2]["id"]
    flipped = ada[1]["new_data"]["name"]["ciphertext"]
    flipped = ("B" if flipped[0] == "A" else "A") + flipped[1:]
    # One ciphertext altered in place; another replaced by text COPY would quote.
    rewrite_history(
        database.engine,
        "UPDATE user_audit SET new_data = jsonb_set(new_data, '{name,ciphertext}', "
        f"'\"{flipped}\"') WHERE id = {renamed}",
        "UPDATE user_audit SET previous_data = jsonb_set(previous_data, "
        f"'{{email,ciphertext}}', to_jsonb('a,b\"c.d'::text)) WHERE id = {email_changed}",
    )
    for kind in ("csv", "ndjson"):
        shown = snapshots_by_entry(app, kind)
        assert shown[renamed][1]["name"] == UNREADABLE, kind
        assert shown[renamed][1]["email"] == "ada@example.com", kind
        assert shown[renamed][0]["name"] == 'Ada; "Lovelace", \\née', kind
        # A token split apart by the alteration: its personal values are unreadable.
        assert shown[email_changed][0]["email"] == UNREADABLE, kind
        assert shown[email_changed][0]["deleted_at"] is None, kind
        assert shown[email_changed][1]["email"] == "ada@example.org", kind
    long_rows = csv_rows(export(app, "long", AuditFilter(user_id=history["ada"])))
    assert (long_rows[0]["before"], long_rows[0]["after"]) == (UNREADABLE, "ada@example.org")
    assert (long_rows[1]["before"], long_rows[1]["after"]) == ('Ada; "Lovelace", \\née', UNREADABLE)


def test_entries_written_before_encryption_are_shown_as_they_are(app, history, database):
    first = database.raw_audit(history["grace"])[0]["id"]
    rewrite_history(
        database.engine,
        'UPDATE user_audit SET new_data = \'{"name": "Old; clear", '
        '"email": "old@example.com", "deleted_at": null}\' '
        f"WHERE id = {first}",
    )
    for kind in ("csv", "ndjson"):
        assert snapshots_by_entry(app, kind)[first][1] == {
            "name": "Old; clear",
            "email": "old@example.com",
            "deleted_at": None,
        }
    long_rows = csv_rows(export(app, "long", AuditFilter(user_id=history["grace"])))
    assert [row["after"] for row in long_rows if row["entry"] == str(first)] == [
        "Old; clear",
        "old@example.com",
    ]


def test_each_data_key_is_unwrapped_once_per_export(app, history, monkeypatch):
    with app.app_context():
        provider = key_provider()
    unwrapped = []
    original = provider.unwrap

    def counting(key_id: str, wrapped: bytes) -> bytes:
        unwrapped.append(wrapped)
        return original(key_id, wrapped)

    monkeypatch.setattr(provider, "unwrap", counting)
    for kind in ("csv", "ndjson", "long"):
        unwrapped.clear()
        export(app, kind)  # chunks of two entries: keys are looked up chunk by chunk
        assert len(unwrapped) == len(set(unwrapped)) == 2, kind


# --- the drift check ------------------------------------------------------------------


def drift(app: Flask) -> tuple[int, list[int]]:
    with app.app_context(), db.engine.connect() as connection:
        return audit_integrity.find_drift(connection)


def test_drift_check_decrypts_to_compare(app, history, database):
    assert drift(app) == (0, [])
    # Changed around the application, no entry: only the decrypted value tells.
    rewrite_history(
        database.engine,
        "ALTER TABLE users DISABLE TRIGGER users_audit_safety_net",
        f"UPDATE users SET name = 'Ada Lovelace' WHERE id = {history['ada']}",
        "ALTER TABLE users ENABLE TRIGGER users_audit_safety_net",
    )
    assert drift(app) == (1, [history["ada"]])


def test_drift_check_passes_for_an_erased_profile_and_checks_its_placeholders(
    app, runner, history, database, link_chain
):
    grace = history["grace"]
    erase(app, grace)
    link_chain()
    assert database.user(grace)["name"] == ERASED_NAME
    assert drift(app) == (0, [])
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    rewrite_history(
        database.engine,
        "ALTER TABLE users DISABLE TRIGGER users_audit_safety_net",
        f"UPDATE users SET email = 'grace@example.com' WHERE id = {grace}",
        "ALTER TABLE users ENABLE TRIGGER users_audit_safety_net",
    )
    assert erased_email(grace) != "grace@example.com"
    assert drift(app) == (1, [grace])


def test_drift_check_counts_an_unreadable_latest_entry(app, history, database):
    latest = database.raw_audit(history["ada"])[-1]
    stored = latest["new_data"]["email"]["ciphertext"]
    altered = ("B" if stored[0] == "A" else "A") + stored[1:]
    rewrite_history(
        database.engine,
        "UPDATE user_audit SET new_data = jsonb_set(new_data, '{email,ciphertext}', "
        f"'\"{altered}\"') WHERE id = {latest['id']}",
    )
    assert drift(app) == (1, [history["ada"]])


def test_drift_check_compares_entries_written_before_encryption_in_clear(app, history, database):
    latest = database.raw_audit(history["grace"])[-1]
    user = database.user(history["grace"])
    clear = json.dumps(
        {
            "name": user["name"],
            "email": user["email"],
            "deleted_at": latest["new_data"]["deleted_at"],
        }
    )
    rewrite_history(
        database.engine, f"UPDATE user_audit SET new_data = '{clear}' WHERE id = {latest['id']}"
    )
    assert drift(app) == (0, [])
    rewrite_history(
        database.engine,
        "ALTER TABLE users DISABLE TRIGGER users_audit_safety_net",
        f"UPDATE users SET name = 'Amazing Grace' WHERE id = {history['grace']}",
        "ALTER TABLE users ENABLE TRIGGER users_audit_safety_net",
    )
    assert drift(app) == (1, [history["grace"]])


def test_the_associated_data_is_the_one_values_are_encrypted_with():
    from webapp.audit.personal_data import _associated_data
    from webapp.services.entry_decryption import associated_data_prefix, side_field

    for entry_id, user_id, side, field in [(1, 2, "new", "name"), (10**12, 7, "previous", "email")]:
        assert associated_data_prefix(entry_id, user_id) + side_field(
            side, field
        ) == _associated_data(entry_id, user_id, side, field)
