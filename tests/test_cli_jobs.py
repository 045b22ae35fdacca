"""``flask demo seed`` and ``flask audit export``: bulk jobs from the command line.

The seed writes through the ORM, so its profiles and changes must look like
any other history: one entry per change, every entry chained, attributed to
the CLI. The export must be the timeline's download, row for row and byte for
byte, for the same filter.
"""

from __future__ import annotations

import functools
import itertools
import json

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from tests.support.cli import ACTOR, OS_USER, invoke, run_flask
from tests.support.database import Database, empty_database
from tests.support.profiles import post_profile
from webapp.cli import audit as audit_commands
from webapp.cli.demo import make_plan
from webapp.services import audit_export

pytestmark = pytest.mark.usefixtures("cli_os_user")


def seed(runner: FlaskCliRunner, *args: str):
    result = invoke(runner, "demo", "seed", *args)
    assert result.exit_code == 0, result.output
    return result


def without_times(snapshot: dict | None) -> dict | None:
    # deleted_at is the moment of the run; whether it is set is what must repeat.
    if snapshot is None:
        return None
    return {**snapshot, "deleted_at": snapshot["deleted_at"] is not None}


def fingerprint(database: Database) -> list[object]:
    """Everything a seed decides, leaving out the times it ran at."""
    users = database.rows(
        "SELECT id, name, email, deleted_at IS NOT NULL AS deleted, version FROM users ORDER BY id"
    )
    kept = ("id", "user_id", "operation", "changed_fields", "version", "reason")
    entries = [
        {
            **{name: row[name] for name in (*kept, "actor_label", "channel")},
            # Decrypted: the ciphertext differs from run to run (fresh keys and nonces).
            "previous_data": without_times(row["previous_data"]),
            "new_data": without_times(row["new_data"]),
        }
        for row in database.audit()
    ]
    return [users, entries]


# --- flask demo seed ------------------------------------------------------------


def test_seed_writes_profiles_and_changes_each_audited_and_chained(runner, database, link_chain):
    # A small batch size: several transactions of profiles and of changes.
    result = seed(runner, "--users", "30", "--changes", "120", "--seed", "7", "--batch-size", "25")

    assert database.scalar("SELECT count(*) FROM users") == 30
    entries = database.audit()
    assert len(entries) == 150
    assert {(e["actor_label"], e["channel"], e["channel_detail"]) for e in entries} == {
        (ACTOR, "cli", OS_USER)
    }
    assert [e["operation"] for e in entries].count("create") == 30
    assert {e["operation"] for e in entries} == {"create", "update", "delete", "restore"}
    # Sealed in their INSERTs, linked after COMMIT (as the sealer does), in order.
    assert all(e["seal"] is not None for e in entries)
    assert link_chain() == 150
    links = database.rows("SELECT entry_id FROM audit_chain ORDER BY seq")
    assert [link["entry_id"] for link in links] == [e["id"] for e in entries]
    # Every change was its own flush: one entry per version of each profile.
    assert (
        database.scalar(
            "SELECT count(*) FROM users u WHERE version <> "
            "(SELECT count(*) FROM user_audit a WHERE a.user_id = u.id)"
        )
        == 0
    )
    assert invoke(runner, "audit", "verify").exit_code == 0

    users = database.rows("SELECT name, email FROM users")
    assert any(not user["name"].isascii() for user in users)
    assert len({user["email"].lower() for user in users}) == 30
    assert all(
        user["email"].split("@")[1].startswith(("example.", "mail.", "post.")) for user in users
    )
    changes = [e for e in entries if e["operation"] != "create"]
    assert sum(e["reason"] is not None for e in changes) > len(changes) // 2
    assert {e["reason"] for e in entries if e["operation"] == "create"} == {
        "Demo data (flask demo seed --seed 7)"
    }
    assert result.stdout.startswith("Seeded 30 profiles (")
    assert "120 changes (" in result.stdout
    assert "seed 7" in result.stdout
    assert result.stderr == ""


def test_the_same_seed_on_an_empty_database_writes_the_same_history(runner, engine, database):
    seed(runner, "--users", "20", "--changes", "60", "--seed", "42", "--batch-size", "7")
    first = fingerprint(database)
    empty_database(engine)
    seed(runner, "--users", "20", "--changes", "60", "--seed", "42")
    assert fingerprint(database) == first

    empty_database(engine)
    seed(runner, "--users", "20", "--changes", "60", "--seed", "43")
    assert fingerprint(database) != first


def test_seed_without_a_seed_prints_the_one_it_chose(runner, database):
    result = seed(runner, "--users", "3")
    assert database.scalar("SELECT count(*) FROM user_audit") == 3
    assert " with seed " in result.stdout


def test_seed_asks_for_yes_before_adding_to_existing_profiles(client, runner, database):
    existing = post_profile(client, "Ada Lovelace", "ada@example.com")
    before = database.fingerprint()

    refused = invoke(runner, "demo", "seed", "--users", "5", "--changes", "5")
    assert refused.exit_code == 1
    assert refused.stderr.startswith("Error: The database already holds 1 profiles")
    assert "--yes" in refused.stderr
    assert database.fingerprint() == before

    seed(runner, "--users", "5", "--changes", "40", "--seed", "1", "--yes")
    assert database.scalar("SELECT count(*) FROM users") == 6
    # Only the new profiles are changed; the existing one keeps its one entry.
    assert database.user(existing)["version"] == 1
    assert len(database.audit(existing)) == 1
    assert invoke(runner, "audit", "verify").exit_code == 0


def test_a_second_seed_never_reuses_the_emails_of_the_first(runner, database):
    seed(runner, "--users", "40", "--changes", "100", "--seed", "5")
    seed(runner, "--users", "40", "--changes", "100", "--seed", "5", "--yes")
    emails = database.rows("SELECT lower(email) AS email FROM users")
    assert len({row["email"] for row in emails}) == 80


def test_seed_refuses_an_email_an_active_profile_uses(client, runner, database):
    # The one existing profile gets id 1, so the run numbers its emails from 2.
    planned = make_plan(9, 4, 0, first_number=2).profiles[2][1]
    post_profile(client, "Someone Else", planned.upper())
    before = database.fingerprint()

    result = invoke(runner, "demo", "seed", "--users", "4", "--seed", "9", "--yes")

    assert result.exit_code == 1
    assert "1 of the generated emails are already used by active profiles" in result.stderr
    assert planned in result.stderr
    assert database.fingerprint() == before


@pytest.mark.parametrize("args", [["--users", "0"], ["--users", "2", "--changes", "-1"], []])
def test_seed_refuses_bad_counts(runner, database, args):
    result = invoke(runner, "demo", "seed", *args)
    assert result.exit_code == 2
    assert database.scalar("SELECT count(*) FROM users") == 0


# --- flask audit export ---------------------------------------------------------


@pytest.fixture
def history(client, runner, engine) -> dict[str, int]:
    """Seeded history (non-ASCII names, reasons), API changes, a formula-like
    reason and one change that bypassed the application."""
    seed(runner, "--users", "25", "--changes", "80", "--seed", "3", "--batch-size", "10")
    ada = post_profile(client, "Ada Lovelace", "ada@example.com")
    response = client.patch(
        f"/api/v1/users/{ada}",
        json={"name": '=HYPERLINK("http://evil")', "reason": "+1 -2 @3"},
    )
    assert response.status_code == 200
    with engine.begin() as connection:
        connection.execute(text("UPDATE users SET name = 'Raw Write' WHERE id = 2"))
    return {"ada": ada}


def web_export(app: Flask, signed_in, kind: str, query: str) -> bytes:
    auditor = signed_in("auditor")
    response = auditor.get(f"/audit/export.{kind}?{query}")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data()


FILTERS = [
    ("", []),
    ("operation=update,delete&field=email", ["--operation", "update,delete", "--field", "email"]),
    ("operation=restore&operation=create", ["--operation", "restore", "--operation", "create"]),
    ("user_id=3", ["--user-id", "3"]),
    (f"actor={ACTOR}", ["--actor", ACTOR]),
    ("actor=test-admin&field=name", ["--actor", "test-admin", "--field", "name"]),
    ("since=2000-01-01&until=2999-12-31", ["--since", "2000-01-01", "--until", "2999-12-31"]),
    ("until=2000-01-01", ["--until", "2000-01-01"]),
]


@pytest.mark.parametrize("kind", ["csv", "ndjson"])
@pytest.mark.parametrize(("query", "options"), FILTERS)
def test_export_is_the_web_export_byte_for_byte(
    app, runner, signed_in, history, kind, query, options
):
    expected = web_export(app, signed_in, kind, query)

    result = invoke(runner, "audit", "export", "--format", kind, *options)

    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == expected
    assert result.stderr == ""


def test_export_carries_every_entry_and_neutralises_formulas(runner, history, database):
    result = invoke(runner, "audit", "export")
    lines = result.stdout_bytes.decode("utf-8").split("\r\n")
    assert lines[0].startswith("id,timestamp,user_id,operation,")
    assert len([line for line in lines[1:] if line]) == database.scalar(
        "SELECT count(*) FROM user_audit"
    )
    assert "'+1 -2 @3" in result.stdout


def test_export_of_unattributed_changes(runner, history, database):
    result = invoke(runner, "audit", "export", "--format", "ndjson", "--unattributed")
    rows = [json.loads(line) for line in result.stdout_bytes.splitlines()]
    expected = database.rows("SELECT id FROM user_audit WHERE unattributed ORDER BY id")
    assert [row["id"] for row in rows] == [row["id"] for row in expected]
    assert len(rows) == 1


@pytest.mark.parametrize("kind", ["csv", "ndjson"])
def test_export_to_a_file_is_what_stdout_gets(runner, history, database, tmp_path, kind):
    target = tmp_path / f"audit.{kind}"
    to_stdout = invoke(runner, "audit", "export", "--format", kind, "--operation", "update")

    result = invoke(
        runner, "audit", "export", "--format", kind, "--operation", "update", "-o", str(target)
    )

    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert target.read_bytes() == to_stdout.stdout_bytes
    count = database.scalar("SELECT count(*) FROM user_audit WHERE operation = 'update'")
    assert result.stderr == f"{count} entries written to {target}.\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == [target.name]
    # It holds personal data: readable by its owner only, like the temporary file it was.
    assert target.stat().st_mode & 0o777 == 0o600


def test_export_replaces_an_existing_file_only_when_complete(runner, history, tmp_path):
    target = tmp_path / "audit.csv"
    target.write_text("yesterday's export\n")
    result = invoke(runner, "audit", "export", "--output", str(target))
    assert result.exit_code == 0
    assert target.read_bytes().startswith(b"id,timestamp,")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--since", "never"], "Error: --since must be an ISO 8601 date"),
        (["--operation", "rename"], "Error: --operation must be one of create, update"),
        (["--field", "password"], "Error: --field must be one of name, email, deleted_at"),
        (["--user-id", "abc"], "Error: --user-id must be a positive integer"),
        (["--actor", "0"], "Error: --actor is not a valid staff id"),
        (
            ["--since", "2026-02-01", "--until", "2026-01-01"],
            "Error: --until must be later than since",
        ),
    ],
)
def test_a_bad_filter_is_one_line_and_writes_nothing(runner, history, tmp_path, options, message):
    target = tmp_path / "audit.csv"

    result = invoke(runner, "audit", "export", "--output", str(target), *options)

    assert result.exit_code == 2
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_a_failure_halfway_leaves_no_file_behind(runner, history, tmp_path, monkeypatch):
    def failing_lines(audit_filter, **options):
        chunks = audit_export.csv_lines(audit_filter, batch_size=2, **options)
        yield from itertools.islice(chunks, 3)
        # A lost connection ends the export's statement where it fails.
        chunks.close()
        raise OperationalError("SELECT ...", {}, Exception("server closed the connection"))

    monkeypatch.setitem(audit_commands._FORMATS, "csv", failing_lines)
    target = tmp_path / "audit.csv"
    target.write_text("yesterday's export\n")

    result = invoke(runner, "audit", "export", "--output", str(target))

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: Cannot use the database in DATABASE_URL: server closed the connection\n"
    )
    assert [path.name for path in tmp_path.iterdir()] == ["audit.csv"]
    assert target.read_text() == "yesterday's export\n"


def test_export_into_a_missing_directory_is_refused_clearly(runner, tmp_path):
    result = invoke(runner, "audit", "export", "--output", str(tmp_path / "nowhere" / "a.csv"))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Cannot write to ")
    assert result.stderr.count("\n") == 1


def test_an_unknown_format_is_a_usage_error(runner):
    result = invoke(runner, "audit", "export", "--format", "xlsx")
    assert result.exit_code == 2
    assert "xlsx" in result.stderr


# --- progress on a terminal, quiet in pipes ------------------------------------------


def test_seed_shows_progress_on_a_terminal_and_stays_quiet_in_pipes(test_database_url):
    # As deployed: the command's sealer links what it wrote before it exits.
    sealing = {"AUDIT_SEALER": "thread"}
    status, stdout, stderr = run_flask(
        test_database_url, "demo", "seed", "--users", "30", "--changes", "60", "--seed", "1",
        stderr_on_a_terminal=True, environment=sealing,
    )  # fmt: skip
    assert status == 0, stderr
    assert "Seeding" in stderr
    assert "100%" in stderr
    assert stdout.decode().startswith("Seeded 30 profiles")

    status, stdout, stderr = run_flask(
        test_database_url, "demo", "seed", "--users", "5", "--seed", "2", "--yes",
        stderr_on_a_terminal=False, environment=sealing,
    )  # fmt: skip
    assert status == 0, stderr
    assert stderr == ""
    assert stdout.decode().count("\n") == 1

    # The chain the subprocesses wrote verifies from outside too.
    status, stdout, stderr = run_flask(
        test_database_url, "audit", "verify", stderr_on_a_terminal=False
    )
    assert status == 0, stderr
    assert stdout.decode().startswith("OK: 95 entries verified")
    assert "0 entries waiting for their link" in stdout.decode()


def test_export_shows_progress_on_a_terminal_and_stays_quiet_in_pipes(
    runner, history, test_database_url, tmp_path
):
    expected = invoke(runner, "audit", "export", "--format", "ndjson").stdout_bytes

    status, stdout, stderr = run_flask(
        test_database_url, "audit", "export", "--format", "ndjson", stderr_on_a_terminal=True
    )
    assert status == 0, stderr
    assert "Exporting" in stderr
    assert "100%" in stderr
    assert stdout == expected

    status, stdout, stderr = run_flask(
        test_database_url, "audit", "export", "--format", "ndjson", stderr_on_a_terminal=False
    )
    assert status == 0, stderr
    assert stderr == ""
    assert stdout == expected


def test_export_into_a_directory_is_named_after_the_filter(
    app, signed_in, runner, history, tmp_path
):
    result = invoke(
        runner,
        "audit",
        "export",
        "--long",
        "--excel",
        "--operation",
        "update",
        "--since",
        "2026-01-01",
        "--until",
        "2999-12-31",
        "-o",
        str(tmp_path),
    )

    assert result.exit_code == 0, result.output
    target = tmp_path / "audit_update_2026-01-01_2999-12-31_long-excel.csv"
    assert [path.name for path in tmp_path.iterdir()] == [target.name]
    web = web_export(
        app,
        signed_in,
        "csv",
        "operation=update&since=2026-01-01&until=2999-12-31&form=long&excel=1",
    )
    assert target.read_bytes() == web
    assert target.read_bytes().startswith(b"\xef\xbb\xbfentry,timestamp,")
    assert result.stderr.endswith(f"rows written to {target}.\n")


def test_long_and_excel_are_forms_of_csv_only(runner, history):
    result = invoke(runner, "audit", "export", "--format", "ndjson", "--long")

    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --long and --excel are forms of CSV")
    assert result.stdout == ""


def test_a_write_failure_halfway_ends_the_export_and_leaves_no_file(
    runner, history, tmp_path, monkeypatch
):
    """The export's COPY is still open when the disk fills: it is ended, so the
    transaction can be rolled back (it used to wait for the COPY forever)."""

    def write_then_fail(chunks, stream):
        stream.write(next(chunks))  # the header
        stream.write(next(chunks))  # the first 2 entries: the COPY goes on
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(audit_commands, "_write_chunks", write_then_fail)
    monkeypatch.setitem(
        audit_commands._FORMATS, "csv", functools.partial(audit_export.csv_lines, batch_size=2)
    )
    target = tmp_path / "audit.csv"

    result = invoke(runner, "audit", "export", "--output", str(target))

    assert result.exit_code == 1
    assert result.stderr == f"Error: Cannot write {target}: No space left on device\n"
    assert list(tmp_path.iterdir()) == []


def test_export_of_one_request(runner, history, database):
    [newest] = database.rows(
        "SELECT request_id FROM user_audit WHERE request_id IS NOT NULL ORDER BY id DESC LIMIT 1"
    )
    result = invoke(
        runner, "audit", "export", "--format", "ndjson", "--request-id", newest["request_id"]
    )
    rows = [json.loads(line) for line in result.stdout_bytes.splitlines()]
    assert [row["request_id"] for row in rows] == [newest["request_id"]]
