"""Master keys: a wrong one refuses to start (server, ``make run``, commands),
the one being replaced is read during a rotation, and ``flask privacy
rotate-master-key`` re-wraps every data key without touching an entry."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import select

from tests.conftest import SUITE_KEYS
from tests.support.cli import ROOT, invoke, run_flask
from tests.support.database import rewrite_history
from tests.support.profiles import numbered_profiles, update_profile
from tests.support.staff import StaffFactory
from webapp import create_app
from webapp.audit.personal_data import ConfiguredMasterKeys, data_keys
from webapp.config import database_url, random_key
from webapp.extensions import db
from webapp.models import UserAudit
from webapp.services import master_keys
from webapp.services.master_keys import MasterKeysRefused, refuse_wrong_master_keys

OLD_KEY = SUITE_KEYS["PRIVACY_MASTER_KEY"]


@pytest.fixture
def make_app(test_database_url: str) -> Iterator:
    """Apps on the suite's database with master keys of the test's choosing."""
    made: list[Flask] = []

    def make(master: str, previous: str | None = None) -> Flask:
        application = create_app(
            {
                "TESTING": True,
                "SQLALCHEMY_DATABASE_URI": database_url(test_database_url),
                **SUITE_KEYS,
                "PRIVACY_MASTER_KEY": master,
                "PRIVACY_PREVIOUS_MASTER_KEY": previous,
            }
        )
        made.append(application)
        return application

    yield make
    for application in made:
        with application.app_context():
            db.engine.dispose()


def history_of(app: Flask, engine, user_ids: list[int]) -> dict[int, list]:
    """Each profile's entries as the API shows them (personal values decrypted)."""
    client = StaffFactory(app, engine).client("auditor")
    histories = {}
    for user_id in user_ids:
        answer = client.get(f"/api/v1/users/{user_id}/history")
        assert answer.status_code == 200, answer.get_data(as_text=True)
        histories[user_id] = [
            (entry["id"], entry["previous_data"], entry["new_data"])
            for entry in answer.get_json()["items"]
        ]
    return histories


def test_a_wrong_master_key_refuses_to_start_naming_the_setting_not_its_value(
    make_app, client, database
):
    numbered_profiles(client, 2)
    wrong = random_key()
    with pytest.raises(MasterKeysRefused) as refused:
        refuse_wrong_master_keys(make_app(wrong))
    message = str(refused.value)
    assert message.startswith("PRIVACY_MASTER_KEY does not open the data keys")
    assert ConfiguredMasterKeys(OLD_KEY).current_key_id in message  # the public id
    assert wrong not in message
    assert OLD_KEY not in message
    assert "\n" not in message


def test_the_right_master_key_starts_and_a_fresh_database_starts_with_any_key(make_app, client):
    # No data key yet: whatever key comes first wraps them all.
    refuse_wrong_master_keys(make_app(random_key()))
    numbered_profiles(client, 1)
    refuse_wrong_master_keys(make_app(OLD_KEY))


def import_wsgi(**environment: str) -> subprocess.CompletedProcess:
    """``import wsgi`` as gunicorn's master does (``preload_app``), in a process of its own."""
    return subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=ROOT,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_gunicorn_refuses_to_load_the_app_with_a_wrong_master_key(client, test_database_url):
    numbered_profiles(client, 1)
    wrong = random_key()
    done = import_wsgi(DATABASE_URL=test_database_url, PRIVACY_MASTER_KEY=wrong)
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "Refusing to start: PRIVACY_MASTER_KEY does not open the data keys in the database"
        )
    )
    assert "Traceback" not in done.stderr
    assert wrong not in done.stderr
    assert OLD_KEY not in done.stderr

    done = import_wsgi(DATABASE_URL=test_database_url, PRIVACY_MASTER_KEY=OLD_KEY)
    assert done.returncode == 0, done.stderr


def test_gunicorn_refuses_to_start_when_the_keys_cannot_be_checked(client):
    numbered_profiles(client, 1)
    done = import_wsgi(DATABASE_URL="postgresql://nobody@127.0.0.1:1/nothing")
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(
        "Refusing to start: PRIVACY_MASTER_KEY cannot be checked against the database in "
        "DATABASE_URL: "
    )


def test_commands_refuse_a_wrong_master_key_in_one_line(client, test_database_url, database):
    numbered_profiles(client, 1)
    before = database.fingerprint()
    wrong = random_key()
    for command in (["audit", "export", "--format", "ndjson"], ["privacy", "encrypt-trail"]):
        status, stdout, stderr = run_flask(
            test_database_url, *command, environment={"PRIVACY_MASTER_KEY": wrong}
        )
        assert status == 1
        assert stdout == b""
        [line] = stderr.strip().splitlines()
        assert line.startswith("Error: PRIVACY_MASTER_KEY does not open the data keys")
        assert wrong not in stderr
    assert database.fingerprint() == before


def test_the_previous_key_is_read_during_a_rotation_and_an_unknown_one_refused(
    make_app, client, engine
):
    ids = numbered_profiles(client, 2)
    new = random_key()
    during = make_app(new, previous=OLD_KEY)
    refuse_wrong_master_keys(during)
    assert history_of(during, engine, ids) == history_of(make_app(OLD_KEY), engine, ids)

    with pytest.raises(MasterKeysRefused) as refused:
        refuse_wrong_master_keys(make_app(new, previous=random_key()))
    assert "PRIVACY_PREVIOUS_MASTER_KEY" in str(refused.value)


def test_rotation_rewraps_every_key_and_keeps_every_value_readable_with_the_new_key_alone(
    make_app, client, engine, database, cli_os_user
):
    ids = numbered_profiles(client, 5)
    update_profile(client, ids[0], name="Renamed")
    before = history_of(make_app(OLD_KEY), engine, ids)
    assert before[ids[0]][0][2]["name"] == "Renamed"
    entries_before = database.raw_audit()
    new = random_key()
    new_id = ConfiguredMasterKeys(new).current_key_id

    result = invoke(
        make_app(new, previous=OLD_KEY).test_cli_runner(), "privacy", "rotate-master-key"
    )
    assert result.exit_code == 0, result.output
    assert f"5 data keys re-wrapped under master key {new_id}" in result.output
    assert "remove PRIVACY_PREVIOUS_MASTER_KEY" in result.output

    assert database.raw_audit() == entries_before  # no entry touched
    keys = database.rows("SELECT master_key_id FROM profile_data_keys")
    assert [row["master_key_id"] for row in keys] == [new_id] * 5
    events = database.security_events()
    assert events[-1]["event"] == "master_key_rotated"
    assert events[-1]["actor_label"] == f"cli:{cli_os_user}"
    assert events[-1]["details"]["rewrapped"] == 5
    assert events[-1]["details"]["master_key_id"] == new_id

    # With the new key alone, nothing held in memory: the API and the ORM read it all.
    data_keys.forget()
    after_app = make_app(new)
    refuse_wrong_master_keys(after_app)
    assert history_of(after_app, engine, ids) == before
    with after_app.app_context():
        names = {e.new_data["name"] for e in db.session.scalars(select(UserAudit))}
    assert names == {"Renamed"} | {f"Person {n}" for n in range(5)}
    # ...and the old key alone no longer opens them.
    with pytest.raises(MasterKeysRefused):
        refuse_wrong_master_keys(make_app(OLD_KEY))

    again = invoke(
        make_app(new, previous=OLD_KEY).test_cli_runner(), "privacy", "rotate-master-key"
    )
    assert again.exit_code == 0, again.output
    assert "Nothing to re-wrap: all 5 data keys are wrapped by master key" in again.output
    assert database.security_event_names().count("master_key_rotated") == 1


def test_rotation_goes_in_batches_and_leaves_erased_keys_erased(make_app, client, engine, database):
    ids = numbered_profiles(client, 7)
    # What erasure leaves of a data key (webapp.services.privacy).
    rewrite_history(
        engine,
        "UPDATE profile_data_keys SET wrapped_key = NULL, master_key_id = NULL, "
        f"erased_at = now() WHERE user_id = {ids[3]}",
    )
    new = random_key()
    rotating = make_app(new, previous=OLD_KEY)
    with rotating.app_context():
        result = master_keys.rotate_master_key(batch=4)
    assert (result.rewrapped_total, result.batches, result.erased) == (6, 2, 1)
    erased = database.rows("SELECT * FROM profile_data_keys WHERE user_id = :id", id=ids[3])
    assert erased[0]["wrapped_key"] is None
    assert erased[0]["master_key_id"] is None
    data_keys.forget()
    shown = history_of(make_app(new), engine, ids)
    assert shown == history_of(rotating, engine, ids)
    assert shown[ids[3]][-1][2]["name"] == "[erased]"
    assert shown[ids[4]][-1][2]["name"] == "Person 4"


def test_make_run_refuses_to_serve_with_a_wrong_master_key(client, test_database_url, tmp_path):
    numbered_profiles(client, 1)
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("webapp", "migrations", "templates", "static"):
        shutil.copytree(ROOT / name, clone / name, ignore=shutil.ignore_patterns("__pycache__"))
    wrong = random_key()
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url,
        "PRIVACY_MASTER_KEY": wrong,
        "PORT": "0",
    }
    done = subprocess.run(
        [sys.executable, "-m", "webapp.dev.server"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert "PRIVACY_MASTER_KEY does not open the data keys" in output
    assert "Profile Audit on" not in output
    assert wrong not in output
