"""Concurrent writers: the version column decides, and only the winner is audited.

* Two sessions that loaded the same version both save: the second is refused
  with ``StaleVersion`` (SQLAlchemy's ``StaleDataError``, mapped by the
  service), whether it saves after the first committed or while blocked on the
  first one's row lock, and it leaves no audit entry.
* Two sessions create profiles with the same email at once: the unique index
  refuses the second with ``DuplicateEmail`` and no entry.
* Over HTTP, simultaneous PATCHes with the same ``If-Match``: exactly one wins.
* Many clients doing read-modify-write cycles with ``If-Match`` and retrying
  when refused: every success is exactly one audit entry based on what that
  client read, and no success is lost.
* In the dashboard, several people saving the same loaded version at once:
  one save goes through, every other one gets the stale-edit refusal.

Threads wait on barriers and events (and, for lock waits, on
``pg_stat_activity``), so each interleaving is forced rather than hoped for.
"""

from __future__ import annotations

import contextvars
import html
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from tests.support.pages import HTMX, page_token
from tests.support.profiles import post_profile
from tests.support.staff import client_like
from webapp.audit import chain
from webapp.audit.context import change_context
from webapp.extensions import db
from webapp.models import User
from webapp.services import users
from webapp.services.errors import DuplicateEmail, ServiceError, StaleVersion

if TYPE_CHECKING:
    from tests.support.database import Database

T = TypeVar("T")
# Only there to turn a hang into a failure: generous, since a loaded 2-core
# machine can take many seconds for what normally takes one.
TIMEOUT = 60.0  # seconds any one wait may take before the test is declared stuck
STALE_PROBLEM = "urn:profile-audit:problem:stale-version"


def _run_concurrently(*tasks: Callable[[], T]) -> list[T]:
    """Run each task in its own thread; return their results, re-raising any error.

    Each thread starts from a copy of the caller's context variables, so what
    the test has bound there (the audit context) holds in the threads too.
    """
    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        futures = [pool.submit(contextvars.copy_context().run, task) for task in tasks]
        return [future.result(timeout=TIMEOUT) for future in futures]


def _wait_until_a_session_waits_for_a_lock(engine: Engine) -> None:
    """Block until some connection to the test database is waiting on a lock."""
    deadline = time.monotonic() + TIMEOUT
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            if connection.execute(query).scalar():
                return
        time.sleep(0.005)
    raise AssertionError("the second writer never waited for the first one's lock")


def _refusal_summary(error: ServiceError) -> dict[str, Any]:
    """What a refusal says, read while its session is still open."""
    current = getattr(error, "current", None)
    return {"current": None if current is None else (current.name, current.version)}


# -- two sessions, one profile -------------------------------------------------


def _saved_at_version_1_after(
    winner_went: threading.Event,
    user_id: int,
    both_loaded: threading.Barrier,
    changes: dict[str, object],
) -> dict[str, Any]:
    """The loser's side: load version 1 beside the winner, let the winner go
    first, then save version 1, which must be refused as stale."""
    assert users.get_user(user_id).version == 1
    both_loaded.wait()
    assert winner_went.wait(TIMEOUT)
    with pytest.raises(StaleVersion) as raised:
        users.update_user(user_id, changes, expected_version=1, reason="second")
    return _refusal_summary(raised.value)


@pytest.mark.usefixtures("app_context")  # binds who is acting, where the app needs it
def test_second_save_of_the_same_loaded_version_is_stale_and_not_audited(
    app: Flask, database: Database
) -> None:
    with app.app_context():  # a session of its own, as each thread below has
        user_id = users.create_user({"name": "Ada", "email": "ada@example.com"}).id
    both_loaded = threading.Barrier(2, timeout=TIMEOUT)
    winner_committed = threading.Event()

    def winner() -> int:
        with app.app_context():
            assert users.get_user(user_id).version == 1
            both_loaded.wait()
            user = users.update_user(user_id, {"name": "Winner"}, reason="first")
            winner_committed.set()
            return user.version

    def loser() -> dict[str, Any]:
        with app.app_context():
            # This session still holds version 1, so the service's own version
            # check passes: only the UPDATE ... WHERE version = 1 can catch it.
            changes = {"name": "Loser", "email": "loser@example.com"}
            summary = _saved_at_version_1_after(winner_committed, user_id, both_loaded, changes)
            # The session is usable again and sees the winner's row.
            summary["reloaded"] = (users.get_user(user_id).name, users.get_user(user_id).version)
            return summary

    winner_version, refused = _run_concurrently(winner, loser)

    assert winner_version == 2
    assert refused["current"] == ("Winner", 2)
    assert refused["reloaded"] == ("Winner", 2)
    row = database.user(user_id)
    assert (row["name"], row["email"], row["version"]) == ("Winner", "ada@example.com", 2)
    entries = database.audit(user_id)
    assert [(e["operation"], e["version"], e["reason"]) for e in entries] == [
        ("create", 1, None),
        ("update", 2, "first"),
    ]
    assert entries[1]["previous_data"] == entries[0]["new_data"]
    assert entries[1]["new_data"] == {
        "name": "Winner",
        "email": "ada@example.com",
        "deleted_at": None,
    }


@pytest.mark.usefixtures("app_context")  # binds who is acting, where the app needs it
def test_a_save_blocked_on_the_winners_row_lock_is_stale_and_not_audited(
    app: Flask, engine: Engine, database: Database
) -> None:
    with app.app_context():  # a session of its own, as each thread below has
        user_id = users.create_user({"name": "Ada", "email": "ada@example.com"}).id
    both_loaded = threading.Barrier(2, timeout=TIMEOUT)
    winner_flushed = threading.Event()
    loser_blocked = threading.Event()

    def winner() -> None:
        with app.app_context():
            user = db.session.get(User, user_id)
            assert user is not None
            assert user.version == 1
            both_loaded.wait()
            with change_context(reason="first"):
                user.name = "Winner"
                db.session.flush()  # row updated and locked, entry written, not committed
                winner_flushed.set()
                assert loser_blocked.wait(TIMEOUT)
                db.session.commit()

    def loser() -> dict[str, Any]:
        with app.app_context():
            changes = {"name": "Loser"}
            return _saved_at_version_1_after(winner_flushed, user_id, both_loaded, changes)

    def release_winner_once_loser_waits() -> None:
        assert winner_flushed.wait(TIMEOUT)
        _wait_until_a_session_waits_for_a_lock(engine)
        loser_blocked.set()

    _, refused, _ = _run_concurrently(winner, loser, release_winner_once_loser_waits)

    assert refused["current"] == ("Winner", 2)
    assert database.user(user_id)["name"] == "Winner"
    assert database.user(user_id)["version"] == 2
    entries = database.audit(user_id)
    assert [(e["operation"], e["version"], e["reason"]) for e in entries] == [
        ("create", 1, None),
        ("update", 2, "first"),
    ]
    assert all(e["new_data"]["name"] != "Loser" for e in entries)


@pytest.mark.usefixtures("app_context")  # binds who is acting, where the app needs it
def test_simultaneous_creates_with_one_email_leave_one_profile_and_one_entry(
    app: Flask, engine: Engine, database: Database
) -> None:
    winner_flushed = threading.Event()
    loser_blocked = threading.Event()

    def winner() -> int:
        with app.app_context():
            user = User(name="Winner", email="ada@example.com")
            db.session.add(user)
            db.session.flush()  # the index entry exists but is not committed yet
            winner_flushed.set()
            assert loser_blocked.wait(TIMEOUT)
            db.session.commit()
            return user.id

    def loser() -> type[ServiceError]:
        assert winner_flushed.wait(TIMEOUT)
        with app.app_context():
            # The service's own check cannot see the uncommitted profile; the
            # unique index makes the INSERT wait, then refuses it.
            with pytest.raises(DuplicateEmail) as raised:
                users.create_user({"name": "Loser", "email": "ADA@example.com"})
            return type(raised.value)

    def release_winner_once_loser_waits() -> None:
        assert winner_flushed.wait(TIMEOUT)
        _wait_until_a_session_waits_for_a_lock(engine)
        loser_blocked.set()

    winner_id, refusal, _ = _run_concurrently(winner, loser, release_winner_once_loser_waits)

    assert refusal is DuplicateEmail
    profiles = database.rows("SELECT id, name, email, version FROM users")
    assert profiles == [
        {"id": winner_id, "name": "Winner", "email": "ada@example.com", "version": 1}
    ]
    entries = database.audit()
    assert [(e["user_id"], e["operation"], e["version"]) for e in entries] == [
        (winner_id, "create", 1)
    ]


# -- over HTTP -----------------------------------------------------------------


WRITERS = 8


@pytest.mark.parametrize("attempt", range(3))
def test_only_one_of_simultaneous_patches_with_the_same_if_match_wins(
    app: Flask, client: FlaskClient, database: Database, attempt: int
) -> None:
    user_id = post_profile(client, "Ada", "ada@example.com")
    start = threading.Barrier(WRITERS, timeout=TIMEOUT)

    def writer(index: int) -> Callable[[], tuple[int, int, dict[str, Any], str | None]]:
        def send() -> tuple[int, int, dict[str, Any], str | None]:
            own_client = client_like(app, client)
            start.wait()
            response = own_client.patch(
                f"/api/v1/users/{user_id}",
                json={"name": f"Writer {index}"},
                headers={"If-Match": '"1"'},
            )
            return index, response.status_code, response.get_json(), response.headers.get("ETag")

        return send

    results = _run_concurrently(*(writer(i) for i in range(WRITERS)))

    winners = [r for r in results if r[1] == 200]
    assert len(winners) == 1, [(r[0], r[1]) for r in results]
    [(winner, _, body, etag)] = winners
    winner_name = f"Writer {winner}"
    assert body["name"] == winner_name
    assert body["version"] == 2
    assert etag == '"2"'
    for _, status, problem, _ in results:
        if status == 200:
            continue
        # Whether refused by the If-Match check or at the UPDATE's version
        # check, a request that named a version gets 412.
        assert status == 412
        assert problem["type"] == STALE_PROBLEM
        assert problem["current"]["name"] == winner_name
        assert problem["current"]["version"] == 2

    row = database.user(user_id)
    assert (row["name"], row["version"]) == (winner_name, 2)
    entries = database.audit(user_id)
    assert [(e["operation"], e["version"]) for e in entries] == [("create", 1), ("update", 2)]
    assert entries[1]["previous_data"] == entries[0]["new_data"]
    assert entries[1]["new_data"]["name"] == winner_name


@dataclass(frozen=True)
class Success:
    """A PATCH that was answered 200."""

    profile: int
    name: str
    based_on_version: int
    based_on_name: str
    version: int


CLIENTS = 6
WRITES_PER_CLIENT = 4
MAX_ATTEMPTS = 200


def test_read_modify_write_cycles_lose_no_update(
    app: Flask, client: FlaskClient, database: Database
) -> None:
    profiles = [
        post_profile(client, "First", "first@example.com"),
        post_profile(client, "Second", "second@example.com"),
    ]
    start = threading.Barrier(CLIENTS, timeout=TIMEOUT)

    def client_task(number: int) -> Callable[[], tuple[list[Success], int]]:
        def run() -> tuple[list[Success], int]:
            own_client = client_like(app, client)
            successes: list[Success] = []
            refusals = 0
            start.wait()
            for i in range(WRITES_PER_CLIENT):
                profile = profiles[(number + i) % len(profiles)]
                name = f"client {number} write {i}"
                for _ in range(MAX_ATTEMPTS):
                    read = own_client.get(f"/api/v1/users/{profile}")
                    assert read.status_code == 200
                    seen = read.get_json()
                    assert read.headers["ETag"] == f'"{seen["version"]}"'
                    written = own_client.patch(
                        f"/api/v1/users/{profile}",
                        json={"name": name},
                        headers={"If-Match": read.headers["ETag"]},
                    )
                    if written.status_code == 200:
                        body = written.get_json()
                        assert body["name"] == name
                        assert written.headers["ETag"] == f'"{body["version"]}"'
                        successes.append(
                            Success(profile, name, seen["version"], seen["name"], body["version"])
                        )
                        break
                    assert written.status_code == 412, written.get_json()
                    assert written.get_json()["type"] == STALE_PROBLEM
                    refusals += 1
                else:
                    raise AssertionError(f"{name} never got through in {MAX_ATTEMPTS} tries")
            return successes, refusals

        return run

    results = _run_concurrently(*(client_task(n) for n in range(CLIENTS)))
    successes = [s for client_successes, _ in results for s in client_successes]
    assert len(successes) == CLIENTS * WRITES_PER_CLIENT

    total_entries = 0
    for profile in profiles:
        mine = sorted((s for s in successes if s.profile == profile), key=lambda s: s.version)
        entries = database.audit(profile)
        total_entries += len(entries)
        # Every 200 is exactly one entry, and every entry after the create is a 200.
        assert len(entries) == 1 + len(mine)
        assert [e["version"] for e in entries] == list(range(1, len(entries) + 1))
        assert [e["operation"] for e in entries] == ["create"] + ["update"] * len(mine)
        assert [s.version for s in mine] == list(range(2, len(entries) + 1))
        for success in mine:
            entry = entries[success.version - 1]
            before = entries[success.version - 2]
            # Each accepted write is based on exactly the state its client read.
            assert success.based_on_version == success.version - 1
            assert before["new_data"]["name"] == success.based_on_name
            assert entry["previous_data"] == before["new_data"]
            assert entry["new_data"]["name"] == success.name
        row = database.user(profile)
        assert row["version"] == len(entries)
        assert row["name"] == (mine[-1].name if mine else entries[0]["new_data"]["name"])
        assert entries[-1]["new_data"]["name"] == row["name"]

    assert total_entries == len(profiles) + len(successes)
    assert len(database.audit()) == total_entries


EDITORS = 6


def test_simultaneous_html_edits_of_one_loaded_version_let_exactly_one_through(
    client: FlaskClient, signed_in: Callable[..., FlaskClient], database: Database
) -> None:
    """The dashboard's stale-edit refusal under real concurrency: six people
    opened the same version of a profile and press save at the same moment."""
    profile = post_profile(client, "Shared", "shared@example.com")
    editors = [signed_in("support", f"editor{n}") for n in range(EDITORS)]
    tokens = [page_token(editor, f"/users/{profile}/edit") for editor in editors]
    start = threading.Barrier(EDITORS, timeout=TIMEOUT)

    def save(number: int) -> Callable[[], tuple[int, str]]:
        def run() -> tuple[int, str]:
            start.wait()
            answer = editors[number].post(
                f"/users/{profile}/edit",
                data={
                    "csrf_token": tokens[number],
                    "name": f"Edit by {number}",
                    "email": "shared@example.com",
                    "expected_version": "1",
                },
                headers={**HTMX, "X-CSRFToken": tokens[number]},
            )
            return answer.status_code, html.unescape(answer.get_data(as_text=True))

        return run

    answers = _run_concurrently(*(save(n) for n in range(EDITORS)))
    saved = [n for n, (status, _) in enumerate(answers) if status == 200]
    refused = [body for status, body in answers if status == 409]
    assert len(saved) == 1, [status for status, _ in answers]
    assert len(refused) == EDITORS - 1
    assert all("Someone else saved this profile" in body for body in refused)
    [winner] = saved
    entries = database.audit(profile)
    assert [(e["operation"], e["version"]) for e in entries] == [("create", 1), ("update", 2)]
    assert entries[1]["new_data"]["name"] == f"Edit by {winner}"
    assert entries[1]["actor_label"] == f"editor{winner}"
    assert database.user(profile)["version"] == 2


def test_a_save_never_waits_for_the_chain_head(
    client: FlaskClient, engine: Engine, database: Database, link_chain: Callable[[], int]
) -> None:
    """Links are appended after COMMIT: while a sealer holds the chain's head
    in an open transaction, saves still commit (before, every save queued for it)."""
    answers: list[int] = []
    with engine.begin() as sealer:
        sealer.execute(text("SELECT 1 FROM audit_chain_head WHERE id = 1 FOR UPDATE"))
        saving = threading.Thread(
            target=lambda: answers.append(
                client.post(
                    "/api/v1/users", json={"name": "Unblocked", "email": "u@example.com"}
                ).status_code
            )
        )
        saving.start()
        saving.join(TIMEOUT)
        assert answers == [201], "the save waited for the chain's head"
        # A second sealer steps aside instead of queueing behind the first.
        with engine.begin() as other_sealer:
            assert chain.link_pending(other_sealer, b"any key") is None
    assert link_chain() == 1
    assert database.scalar("SELECT seq FROM audit_chain_head") == 1
