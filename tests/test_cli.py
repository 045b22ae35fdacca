"""``flask staff`` and ``flask token``: operators manage accounts and API tokens
from the command line, attributed to ``cli:<operating-system user>``."""

from __future__ import annotations

import logging
import os
import pwd

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import Engine, text

from tests.support.cli import ACTOR, OS_USER, ROOT, invoke, run_flask
from tests.support.pages import sign_in
from webapp.audit.context import current_actor, current_origin
from webapp.cli import operator_commands
from webapp.cli.operator_commands import os_user as real_os_user
from webapp.services import staff as staff_service
from webapp.services import users as users_service
from webapp.services.staff import InvalidCredentials

PASSWORD = "a long and secret passphrase"
NEW_PASSWORD = "another long secret passphrase"


pytestmark = pytest.mark.usefixtures("cli_os_user")


def create_account(
    runner: FlaskCliRunner, username: str, role: str = "support", password: str = PASSWORD
):
    result = invoke(
        runner, "staff", "create", username, "--role", role, "--password-stdin", input=password
    )
    assert result.exit_code == 0, result.output
    return result


def can_sign_in(app: Flask, username: str, password: str) -> bool:
    with app.app_context():
        try:
            staff_service.authenticate(username, password, remote_addr=None)
        except InvalidCredentials:
            return False
        return True


def make_token(runner: FlaskCliRunner, username: str, *extra: str) -> str:
    result = invoke(runner, "token", "create", username, "--name", "nightly export", *extra)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def api_status(app: Flask, token: str) -> int:
    response = app.test_client().get("/api/v1/users", headers={"Authorization": f"Bearer {token}"})
    return response.status_code


# --- staff --------------------------------------------------------------------


def test_create_with_password_from_stdin(app, runner, database):
    result = create_account(runner, "alice", "support")

    assert "alice" in result.stdout
    rows = database.rows("SELECT username, role, active FROM staff")
    assert rows == [{"username": "alice", "role": "support", "active": True}]
    assert can_sign_in(app, "alice", PASSWORD)


def test_create_takes_only_the_first_line_of_stdin(app, runner):
    create_account(runner, "alice", password=f"  {PASSWORD}  \nsecond line\n")

    assert can_sign_in(app, "alice", f"  {PASSWORD}  ")


def test_create_with_hidden_prompt_and_confirmation(app, runner):
    result = invoke(
        runner, "staff", "create", "bob", "--role", "auditor", input=f"{PASSWORD}\n{PASSWORD}\n"
    )

    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert can_sign_in(app, "bob", PASSWORD)


def test_prompt_asks_again_after_a_short_or_mismatched_password(app, runner):
    answers = ["short", PASSWORD, "not the same passphrase", PASSWORD, PASSWORD]
    result = invoke(
        runner, "staff", "create", "bob", "--role", "auditor", input="\n".join(answers) + "\n"
    )

    assert result.exit_code == 0, result.output
    assert "must be 12 to 1024 characters" in result.stderr
    assert "differ" in result.stderr
    assert "short" not in result.output
    assert can_sign_in(app, "bob", PASSWORD)


def test_prompt_without_an_answer_creates_nothing(runner, database):
    result = invoke(runner, "staff", "create", "bob", "--role", "auditor", input="")

    assert result.exit_code != 0
    assert database.rows("SELECT * FROM staff") == []


def test_duplicate_username_in_any_case_is_refused(runner, database):
    create_account(runner, "Alice")

    result = invoke(
        runner, "staff", "create", "alice", "--role", "admin", "--password-stdin", input=PASSWORD
    )

    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: The username alice is already taken."
    assert result.stdout == ""
    assert database.scalar("SELECT count(*) FROM staff") == 1


def test_bad_role_is_refused(runner, database):
    result = invoke(
        runner, "staff", "create", "carol", "--role", "root", "--password-stdin", input=PASSWORD
    )

    assert result.exit_code != 0
    assert "'root' is not one of 'admin', 'support', 'auditor'" in result.stderr
    assert database.rows("SELECT * FROM staff") == []


def test_bad_username_is_refused(runner, database):
    result = invoke(
        runner,
        "staff",
        "create",
        "no spaces",
        "--role",
        "admin",
        "--password-stdin",
        input=PASSWORD,
    )

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: username must be 1 to 64 letters")
    assert database.rows("SELECT * FROM staff") == []


def test_short_password_is_refused(runner, database):
    result = invoke(
        runner, "staff", "create", "carol", "--role", "admin", "--password-stdin", input="short\n"
    )

    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: password must be 12 to 1024 characters"
    assert "short" not in result.stdout
    assert database.rows("SELECT * FROM staff") == []


def test_empty_stdin_is_refused(runner, database):
    result = invoke(
        runner, "staff", "create", "carol", "--role", "admin", "--password-stdin", input=""
    )

    assert result.exit_code == 1
    assert "first line of standard input" in result.stderr
    assert database.rows("SELECT * FROM staff") == []


def test_list_shows_aligned_columns(runner, staff_factory, engine):
    create_account(runner, "alice", "admin")
    create_account(runner, "bob-the-auditor", "auditor")
    invoke(runner, "staff", "deactivate", "bob-the-auditor")
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE staff SET last_login_at = '2026-03-04T05:06:07Z' WHERE username = 'alice'")
        )

    result = invoke(runner, "staff", "list")

    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["USERNAME", "ROLE", "ACTIVE", "CREATED", "LAST", "SIGN-IN"]
    assert [line.split()[:3] for line in lines] == [
        ["alice", "admin", "yes"],
        ["bob-the-auditor", "auditor", "no"],
    ]
    assert lines[0].split()[4] == "2026-03-04T05:06:07Z"
    assert lines[1].split()[4] == "never"
    # Every column starts at the same offset on every line.
    for title in ("ROLE", "ACTIVE", "CREATED"):
        column = header.index(title)
        assert all(line[column - 2 : column] == "  " and line[column] != " " for line in lines)


def test_list_of_nothing(runner):
    result = invoke(runner, "staff", "list")

    assert result.exit_code == 0
    assert result.stdout == ""
    assert "No staff accounts" in result.stderr


def test_set_role(runner, database):
    create_account(runner, "alice", "support")

    result = invoke(runner, "staff", "set-role", "ALICE", "auditor")

    assert result.exit_code == 0, result.output
    assert database.scalar("SELECT role FROM staff") == "auditor"
    again = invoke(runner, "staff", "set-role", "alice", "auditor")
    assert again.exit_code == 0
    assert "already" in again.stdout
    events = database.rows("SELECT details FROM security_events WHERE event = 'role_changed'")
    assert events == [{"details": {"from": "support", "to": "auditor"}}]


def test_set_role_refuses_a_bad_role(runner, database):
    create_account(runner, "alice", "support")

    result = invoke(runner, "staff", "set-role", "alice", "superuser")

    assert result.exit_code != 0
    assert "superuser" in result.stderr
    assert database.scalar("SELECT role FROM staff") == "support"


@pytest.mark.parametrize(
    "args",
    [
        ("staff", "set-role", "nobody", "admin"),
        ("staff", "deactivate", "nobody"),
        ("staff", "set-password", "nobody", "--password-stdin"),
        ("token", "create", "nobody", "--name", "x"),
    ],
)
def test_unknown_username_is_a_clear_error(runner, args):
    result = invoke(runner, *args, input=PASSWORD)

    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: There is no staff account named 'nobody'."


def test_deactivate(app, runner, database):
    create_account(runner, "alice")
    token = make_token(runner, "alice")

    result = invoke(runner, "staff", "deactivate", "alice")

    assert result.exit_code == 0, result.output
    assert database.scalar("SELECT active FROM staff") is False
    assert not can_sign_in(app, "alice", PASSWORD)
    assert api_status(app, token) == 401
    again = invoke(runner, "staff", "deactivate", "alice")
    assert again.exit_code == 0
    assert "already" in again.stdout


def test_set_password(app, runner, database):
    create_account(runner, "alice")
    browser = sign_in(app.test_client(), "alice", PASSWORD)

    result = invoke(
        runner, "staff", "set-password", "alice", "--password-stdin", input=NEW_PASSWORD + "\n"
    )

    assert result.exit_code == 0, result.output
    assert not can_sign_in(app, "alice", PASSWORD)
    assert can_sign_in(app, "alice", NEW_PASSWORD)
    # Sessions signed in with the old password end, on the server.
    assert browser.get("/").status_code == 302
    assert database.scalar("SELECT end_reason FROM staff_sessions") == "password_changed"


def test_set_password_with_prompt(app, runner):
    create_account(runner, "alice")

    result = invoke(
        runner, "staff", "set-password", "alice", input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n"
    )

    assert result.exit_code == 0, result.output
    assert can_sign_in(app, "alice", NEW_PASSWORD)


def test_set_password_refuses_a_short_one(app, runner):
    create_account(runner, "alice")

    result = invoke(runner, "staff", "set-password", "alice", "--password-stdin", input="tiny")

    assert result.exit_code == 1
    assert "password must be 12 to 1024 characters" in result.stderr
    assert can_sign_in(app, "alice", PASSWORD)


# --- tokens -------------------------------------------------------------------


def test_token_create_prints_only_a_working_token(app, runner, database):
    create_account(runner, "alice", "support")

    result = invoke(runner, "token", "create", "alice", "--name", "nightly export")

    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert result.stdout == token + "\n"
    assert token.startswith("pa_")
    assert "shown only now" in result.stderr
    assert "never expires" in result.stderr
    assert token not in result.stderr
    assert api_status(app, token) == 200
    stored = database.rows("SELECT name, expires_at FROM api_tokens")
    assert stored == [{"name": "nightly export", "expires_at": None}]


def test_token_create_with_bad_input(runner, database):
    create_account(runner, "alice")

    no_name = invoke(runner, "token", "create", "alice", "--name", "  ")
    zero_days = invoke(runner, "token", "create", "alice", "--name", "x", "--expires-in-days", "0")
    not_a_number = invoke(
        runner, "token", "create", "alice", "--name", "x", "--expires-in-days", "soon"
    )

    assert no_name.exit_code == 1
    assert "name must be 1 to 100 printable characters" in no_name.stderr
    assert zero_days.exit_code == 1
    assert "expires_in_days must be a whole number" in zero_days.stderr
    assert not_a_number.exit_code != 0
    assert "not a valid integer" in not_a_number.stderr
    assert database.rows("SELECT * FROM api_tokens") == []


def test_token_for_a_deactivated_account_is_refused(runner, database):
    create_account(runner, "alice")
    invoke(runner, "staff", "deactivate", "alice")

    result = invoke(runner, "token", "create", "alice", "--name", "x")

    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: alice is deactivated; it cannot get new tokens."
    assert result.stdout == ""


def test_token_list_never_shows_the_token(app, runner):
    create_account(runner, "alice")
    token = make_token(runner, "alice", "--expires-in-days", "30")
    api_status(app, token)

    result = invoke(runner, "token", "list")

    assert result.exit_code == 0, result.output
    assert token not in result.output
    header, line = result.stdout.splitlines()
    assert header.split() == [
        "ID", "OWNER", "NAME", "PREFIX", "STATUS", "CREATED", "CREATED", "BY", "EXPIRES", "LAST",
        "USED"
    ]  # fmt: skip
    assert line.startswith("1   alice  nightly export  " + token[:10] + "…  active  ")
    assert f"  {ACTOR}  " in line  # who created it
    assert "never" not in line  # it expires, and it has been used


def test_token_list_of_nothing(runner):
    result = invoke(runner, "token", "list")

    assert result.exit_code == 0
    assert "No API tokens" in result.stderr


def test_revoked_token_gets_401(app, runner, database):
    create_account(runner, "alice")
    token = make_token(runner, "alice")
    assert api_status(app, token) == 200

    result = invoke(runner, "token", "revoke", "1")

    assert result.exit_code == 0, result.output
    assert "revoked" in result.stdout
    assert api_status(app, token) == 401
    assert "revoked" in invoke(runner, "token", "list").stdout
    again = invoke(runner, "token", "revoke", "1")
    assert again.exit_code == 0
    assert "already revoked" in again.stdout
    assert (
        database.scalar("SELECT count(*) FROM security_events WHERE event = 'token_revoked'") == 1
    )


@pytest.mark.parametrize("token_id", ["99", "0", "99999999999999999999"])
def test_revoking_an_unknown_token(runner, token_id):
    result = invoke(runner, "token", "revoke", token_id)

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: There is no API token with id")


def test_expired_token_gets_401(app, runner, engine: Engine):
    create_account(runner, "alice")
    token = make_token(runner, "alice", "--expires-in-days", "1")
    assert api_status(app, token) == 200

    with engine.begin() as connection:
        connection.execute(text("UPDATE api_tokens SET expires_at = now() - interval '1 minute'"))

    assert api_status(app, token) == 401
    assert "expired" in invoke(runner, "token", "list").stdout


# --- attribution and secrecy ----------------------------------------------------


def test_security_events_name_the_cli_user(app, runner, database):
    create_account(runner, "alice", "support")
    invoke(runner, "staff", "set-role", "alice", "auditor")
    invoke(runner, "staff", "set-password", "alice", "--password-stdin", input=NEW_PASSWORD)
    make_token(runner, "alice")
    invoke(runner, "token", "revoke", "1")
    invoke(runner, "staff", "deactivate", "alice")

    rows = database.rows("SELECT event, username, actor_label FROM security_events ORDER BY id")

    assert [row["event"] for row in rows] == [
        "staff_created",
        "role_changed",
        "password_changed",
        "token_created",
        "token_revoked",
        "staff_deactivated",
    ]
    assert {(row["username"], row["actor_label"]) for row in rows} == {("alice", ACTOR)}


def test_os_user_falls_back_to_the_uid(monkeypatch):
    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    monkeypatch.setattr(os, "geteuid", lambda: 10001)

    assert real_os_user() == "10001"


def test_the_actor_is_the_effective_user_not_what_the_environment_says(
    runner, database, monkeypatch
):
    """``USER=alice flask ...`` (or sudo, which keeps the caller's LOGNAME) must
    not make a command act as someone else: the name comes from the effective uid."""
    asked: list[int] = []

    def passwd_entry(uid: int) -> pwd.struct_passwd:
        asked.append(uid)
        return pwd.struct_passwd(("svc-deploy", "x", uid, uid, "", "/", "/bin/sh"))

    monkeypatch.setattr(pwd, "getpwuid", passwd_entry)
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    for variable in ("USER", "LOGNAME", "LNAME", "USERNAME"):
        monkeypatch.setenv(variable, "alice")
    monkeypatch.setattr(operator_commands, "os_user", real_os_user)

    assert operator_commands.os_user() == "svc-deploy"
    assert set(asked) == {4242}
    create_account(runner, "grace")
    [event] = database.rows("SELECT actor_label FROM security_events")
    assert event["actor_label"] == "cli:svc-deploy"


def test_profile_changes_from_the_cli_are_attributed(app, database):
    with app.app_context(), operator_commands.acting_from_cli():
        assert current_actor().label == ACTOR
        assert current_origin().channel == "cli"
        user_id = users_service.create_user({"name": "Ada", "email": "ada@example.com"}).id

    [entry] = database.audit(user_id)
    assert (entry["actor_id"], entry["actor_label"]) == (None, ACTOR)
    assert (entry["channel"], entry["channel_detail"]) == ("cli", OS_USER)


def test_passwords_and_tokens_stay_out_of_events_output_and_logs(runner, database, caplog):
    caplog.set_level(logging.DEBUG)
    outputs = [
        create_account(runner, "alice").output,
        invoke(
            runner, "staff", "create", "bob", "--role", "admin", input=f"{PASSWORD}\n" * 2
        ).output,
        invoke(
            runner, "staff", "set-password", "alice", "--password-stdin", input=NEW_PASSWORD
        ).output,
        invoke(runner, "staff", "set-password", "bob", input=f"{NEW_PASSWORD}\n" * 2).output,
        invoke(runner, "staff", "create", "eve", "--role", "admin", input="short-pw\n").output,
    ]
    token = make_token(runner, "alice")
    outputs.append(invoke(runner, "token", "list").output)

    events = repr(database.rows("SELECT * FROM security_events"))
    staff_rows = repr(database.rows("SELECT * FROM staff"))
    logs = caplog.text + repr([record.__dict__ for record in caplog.records])
    for secret in (PASSWORD, NEW_PASSWORD, "short-pw"):
        assert secret not in events
        assert secret not in staff_rows
        assert secret not in logs
        assert all(secret not in output for output in outputs)
    assert token not in events
    assert token not in logs
    assert token not in outputs[-1]


def test_stats(runner):
    result = invoke(runner, "stats")

    assert result.exit_code == 0
    assert result.stdout == "profiles: 0 (0 active)\naudit entries: 0\n"


# --- the real `flask` command ---------------------------------------------------


def test_flask_token_create_prints_only_the_token(app, staff_factory, test_database_url):
    staff_factory.account("admin", "admin")

    args = ("token", "create", "admin", "--name", "script")
    status, stdout, stderr = run_flask(test_database_url, *args)

    assert status == 0, stderr
    token = stdout.decode().strip()
    assert stdout.decode() == token + "\n"
    assert api_status(app, token) == 200


def test_flask_without_database_url_is_a_one_line_error():
    if (ROOT / ".env").exists():
        pytest.skip("a .env file may set DATABASE_URL")

    status, _, stderr = run_flask(None, "staff", "list")

    assert status == 1
    assert "Traceback" not in stderr
    assert stderr.startswith("Error: DATABASE_URL is not set.")
    assert len(stderr.strip().splitlines()) == 1


def test_the_last_active_admin_cannot_be_demoted_or_deactivated(runner):
    create_account(runner, "root", "admin")

    demoted = invoke(runner, "staff", "set-role", "root", "support")
    deactivated = invoke(runner, "staff", "deactivate", "root")

    assert demoted.exit_code == deactivated.exit_code == 1
    assert "last active admin" in demoted.stderr
    create_account(runner, "second", "admin")
    assert invoke(runner, "staff", "deactivate", "root").exit_code == 0
