"""Erasure and access through every face: ``flask privacy erase|export``, the
API's ``/erasure`` and ``/personal-data``, and the dashboard's confirmation page.

The services themselves (keys, ciphertext, what a dump holds) are tested in
``test_personal_data.py``; here, who may call them, what each face answers,
and that every refusal changes nothing.
"""

from __future__ import annotations

import json
import stat

import pytest

from tests.support.api import PROBLEM, assert_problem
from tests.support.cli import ACTOR, ROOT, invoke
from tests.support.pages import HTMX, body, htmx_post, page_token, plain_post, text_of
from tests.support.profiles import post_profile, update_profile
from webapp.audit.personal_data import ERASED
from webapp.models import OPERATIONS

ERASED_NAME = "Erased profile"
HIDDEN = ("Ada Lovelace", "Ada King", "ada@example.com")


@pytest.fixture
def ada(client) -> int:
    """A profile with a little history: created, renamed."""
    user_id = post_profile(client, "Ada Lovelace", "ada@example.com")
    update_profile(client, user_id, name="Ada King", reason="married")
    return user_id


def assert_erased(database, user_id: int, *, actor: str, reason: str) -> None:
    """The profile is anonymised and deleted, and its history shows only [erased]."""
    row = database.user(user_id)
    assert (row["name"], row["email"]) == (ERASED_NAME, f"erased-{user_id}@erased.invalid")
    assert row["erased_at"] is not None
    assert row["deleted_at"] is not None
    entries = database.audit(user_id)
    erase = entries[-1]
    assert (erase["operation"], erase["actor_label"], erase["reason"]) == ("erase", actor, reason)
    for entry in entries:
        for snapshot in (entry["previous_data"], entry["new_data"]):
            if snapshot is not None:
                assert (snapshot["name"], snapshot["email"]) == (ERASED, ERASED)


def personal_data_events(database) -> list[dict[str, object]]:
    return database.rows(
        "SELECT * FROM security_events WHERE event = 'personal_data_exported' ORDER BY id"
    )


# --- flask privacy erase ---------------------------------------------------------


@pytest.mark.usefixtures("cli_os_user")
def test_cli_erase_erases_and_says_so_in_one_line(runner, ada, database):
    result = invoke(runner, "privacy", "erase", str(ada), "--reason", "erasure request 1234")

    assert result.exit_code == 0, result.output
    assert result.output.count("\n") == 1
    assert result.output.startswith(f"Profile {ada} erased")
    assert_erased(database, ada, actor=ACTOR, reason="erasure request 1234")


@pytest.mark.usefixtures("cli_os_user")
@pytest.mark.parametrize(
    ("arguments", "exit_code", "message"),
    [
        (["--reason", "   "], 1, "reason is required to erase a profile"),
        (["--reason", "bad\x00reason"], 1, "reason must not contain control characters"),
        (["--reason", "x" * 1001], 1, "reason must be at most 1000 characters"),
        ([], 2, "Missing option '--reason'"),
    ],
    ids=["blank reason", "control character", "long reason", "no reason"],
)
def test_cli_erase_refuses_a_missing_or_bad_reason(
    runner, ada, database, arguments, exit_code, message
):
    before = database.fingerprint()
    result = invoke(runner, "privacy", "erase", str(ada), *arguments)
    assert result.exit_code == exit_code
    assert message in result.output
    assert database.fingerprint() == before


@pytest.mark.usefixtures("cli_os_user")
@pytest.mark.parametrize(
    ("user_id", "exit_code", "message"),
    [
        ("999", 1, "There is no profile with id 999."),
        ("abc", 2, "'abc' is not a valid integer"),
        ("0", 2, "0 is not in the range"),
    ],
)
def test_cli_erase_refuses_an_unknown_or_bad_id(runner, ada, database, user_id, exit_code, message):
    before = database.fingerprint()
    result = invoke(runner, "privacy", "erase", user_id, "--reason", "asked")
    assert result.exit_code == exit_code
    assert message in result.output
    assert database.fingerprint() == before


@pytest.mark.usefixtures("cli_os_user")
def test_cli_erase_refuses_an_erased_profile(runner, ada, database):
    assert invoke(runner, "privacy", "erase", str(ada), "--reason", "first").exit_code == 0
    before = database.fingerprint()

    again = invoke(runner, "privacy", "erase", str(ada), "--reason", "second")

    assert again.exit_code == 1
    assert again.output == f"Error: Profile {ada} is already erased.\n"
    assert database.fingerprint() == before


# --- flask privacy export --------------------------------------------------------


@pytest.mark.usefixtures("cli_os_user")
def test_cli_export_prints_everything_held_as_pretty_json(runner, ada, database):
    result = invoke(runner, "privacy", "export", str(ada))

    assert result.exit_code == 0, result.output
    assert result.output.startswith('{\n  "profile": {\n')  # indented, for reading
    document = json.loads(result.output)
    assert document["profile"]["name"] == "Ada King"
    assert document["profile"]["erased_at"] is None
    assert document["data_key"]["state"] == "held"
    assert [e["operation"] for e in document["history"]] == ["create", "update"]
    assert document["history"][0]["new_data"]["name"] == "Ada Lovelace"
    assert document["history"][1]["reason"] == "married"
    [event] = personal_data_events(database)
    assert event["details"] == {"user_id": ada}
    assert event["actor_label"] == ACTOR


@pytest.mark.usefixtures("cli_os_user")
def test_cli_export_to_a_file_only_its_owner_reads(runner, ada, tmp_path):
    target = tmp_path / "ada.json"

    result = invoke(runner, "privacy", "export", str(ada), "--output", str(target))

    assert result.exit_code == 0, result.output
    assert f"Personal data of profile {ada} (2 entries) written to {target}." in result.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    document = json.loads(target.read_text(encoding="utf-8"))
    assert document["profile"]["id"] == ada
    assert len(document["history"]) == 2


@pytest.mark.usefixtures("cli_os_user")
def test_cli_export_of_an_erased_profile_shows_erased(runner, ada):
    invoke(runner, "privacy", "erase", str(ada), "--reason", "asked")

    document = json.loads(invoke(runner, "privacy", "export", str(ada)).output)

    assert document["profile"]["name"] == ERASED_NAME
    assert document["profile"]["erased_at"] is not None
    assert document["data_key"]["state"] == "erased"
    assert [e["operation"] for e in document["history"]] == ["create", "update", "erase"]
    text = json.dumps(document)
    for value in HIDDEN:
        assert value not in text
    assert document["history"][0]["new_data"]["name"] == ERASED


@pytest.mark.usefixtures("cli_os_user")
def test_cli_export_refusals_write_and_record_nothing(runner, ada, database, tmp_path):
    unknown = invoke(runner, "privacy", "export", "999", "--output", str(tmp_path / "x.json"))
    assert unknown.exit_code == 1
    assert unknown.output == "Error: There is no profile with id 999.\n"
    unwritable = invoke(
        runner, "privacy", "export", str(ada), "--output", str(tmp_path / "missing" / "x.json")
    )
    assert unwritable.exit_code == 1
    assert f"Cannot write to {tmp_path / 'missing'}" in unwritable.output
    assert invoke(runner, "privacy", "export", "abc").exit_code == 2
    assert list(tmp_path.iterdir()) == []
    assert personal_data_events(database) == []


# --- POST /api/v1/users/{id}/erasure ---------------------------------------------


def test_api_erasure_answers_the_erased_profile(client, ada, database):
    response = client.post(f"/api/v1/users/{ada}/erasure", json={"reason": "ticket 1234"})

    assert response.status_code == 200, response.get_json()
    erased = response.get_json()
    assert erased["id"] == ada
    assert (erased["name"], erased["email"]) == (ERASED_NAME, f"erased-{ada}@erased.invalid")
    assert erased["deleted_at"] is not None
    assert response.headers["ETag"] == f'"{erased["version"]}"'
    assert_erased(database, ada, actor="test-admin", reason="ticket 1234")
    history = client.get(f"/api/v1/users/{ada}/history").get_json()["items"]
    assert history[0]["operation"] == "erase"
    assert history[0]["actor"]["channel"] == "api"
    assert {e["new_data"]["name"] for e in history} == {ERASED}


@pytest.mark.parametrize(
    ("role", "status"), [("admin", 200), ("support", 403), ("auditor", 403), (None, 401)]
)
def test_api_erasure_is_for_admins_only(staff_factory, ada, database, role, status):
    caller = staff_factory.client(role)
    before = database.fingerprint()

    response = caller.post(f"/api/v1/users/{ada}/erasure", json={"reason": "asked"})

    assert response.status_code == status
    if status == 200:
        assert database.user(ada)["erased_at"] is not None
        return
    assert response.mimetype == PROBLEM
    assert database.fingerprint() == before
    if status == 403:
        [event] = database.rows("SELECT * FROM security_events WHERE event = 'forbidden'")
        assert event["details"]["permission"] == "personal_data:erase"


@pytest.mark.parametrize(
    ("request_kwargs", "status", "errors"),
    [
        ({"json": {}}, 400, {"reason": ["is required to erase a profile"]}),
        ({"json": {"reason": "  \n "}}, 400, {"reason": ["is required to erase a profile"]}),
        ({"json": {"reason": None}}, 400, {"reason": ["is required to erase a profile"]}),
        ({"json": {"reason": 7}}, 400, None),
        ({"json": {"reason": "x" * 1001}}, 400, None),
        ({"json": {"reason": "ok", "name": "x"}}, 400, {"name": ["is not a known field"]}),
        ({"json": ["reason"]}, 400, None),
        ({"data": "{", "content_type": "application/json"}, 400, None),
        ({}, 415, None),
        ({"data": "reason=asked", "content_type": "application/x-www-form-urlencoded"}, 415, None),
        ({"data": "asked", "content_type": "text/plain"}, 415, None),
    ],
    ids=[
        "empty object",
        "blank reason",
        "null reason",
        "number reason",
        "long reason",
        "unknown field",
        "array",
        "broken JSON",
        "no body",
        "form body",
        "text body",
    ],
)
def test_api_erasure_refuses_bad_input(client, ada, database, request_kwargs, status, errors):
    before = database.fingerprint()

    response = client.post(f"/api/v1/users/{ada}/erasure", **request_kwargs)

    problem = assert_problem(response, status)
    if errors is not None:
        assert problem["errors"] == errors
    assert database.fingerprint() == before


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/users/999/erasure", 404),
        ("/api/v1/users/abc/erasure", 404),
        (f"/api/v1/users/{2**63}/erasure", 404),
    ],
    ids=["unknown id", "not a number", "beyond bigint"],
)
def test_api_erasure_of_no_profile_is_404(client, ada, database, path, status):
    before = database.fingerprint()
    assert_problem(client.post(path, json={"reason": "asked"}), status)
    assert database.fingerprint() == before


def test_api_erasure_of_an_erased_profile_is_409_and_so_is_any_change(client, ada, database):
    assert client.post(f"/api/v1/users/{ada}/erasure", json={"reason": "first"}).status_code == 200
    before = database.fingerprint()

    again = assert_problem(
        client.post(f"/api/v1/users/{ada}/erasure", json={"reason": "again"}), 409
    )
    restore = assert_problem(client.post(f"/api/v1/users/{ada}/restore"), 409)

    assert again["type"].endswith(":already-erased")
    assert again["detail"] == f"Profile {ada} is already erased."
    assert restore["type"].endswith(":already-erased")
    assert database.fingerprint() == before


def test_api_erasure_only_with_post(client, ada):
    response = client.get(f"/api/v1/users/{ada}/erasure")
    assert_problem(response, 405)
    assert {m.strip() for m in response.headers["Allow"].split(",")} == {"POST", "OPTIONS"}


# --- GET /api/v1/users/{id}/personal-data ----------------------------------------


@pytest.mark.parametrize(
    ("role", "status"), [("admin", 200), ("auditor", 200), ("support", 403), (None, 401)]
)
def test_api_personal_data_for_admins_and_auditors(staff_factory, ada, database, role, status):
    caller = staff_factory.client(role)

    response = caller.get(f"/api/v1/users/{ada}/personal-data")

    assert response.status_code == status
    assert response.headers["Cache-Control"] == "no-store"
    events = personal_data_events(database)
    if status != 200:
        assert response.mimetype == PROBLEM
        assert events == []
        return
    document = response.get_json()
    assert document["profile"]["email"] == "ada@example.com"
    assert [e["operation"] for e in document["history"]] == ["create", "update"]
    assert document["history"][1]["previous_data"]["name"] == "Ada Lovelace"
    # Each access is a security event, naming the caller and the profile.
    [event] = events
    assert event["details"] == {"user_id": ada}
    assert event["staff_id"] is None
    assert event["actor_label"] == caller.staff.username
    assert event["request_id"] == response.headers["X-Request-ID"]


def test_api_personal_data_after_erasure_holds_no_personal_value(client, ada):
    client.post(f"/api/v1/users/{ada}/erasure", json={"reason": "asked"})

    response = client.get(f"/api/v1/users/{ada}/personal-data")

    assert response.status_code == 200
    document = response.get_json()
    assert document["data_key"]["state"] == "erased"
    assert document["profile"]["erased_at"] is not None
    text = response.get_data(as_text=True)
    for value in HIDDEN:
        assert value not in text
    assert text.count(ERASED) >= 4


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/users/999/personal-data", 404),
        ("/api/v1/users/abc/personal-data", 404),
        (f"/api/v1/users/{2**63}/personal-data", 404),
        ("/api/v1/users/{id}/personal-data?format=csv", 400),
    ],
    ids=["unknown id", "not a number", "beyond bigint", "query parameter"],
)
def test_api_personal_data_refusals_record_no_access(client, ada, database, path, status):
    assert_problem(client.get(path.format(id=ada)), status)
    assert personal_data_events(database) == []


# --- the dashboard ---------------------------------------------------------------


def erase_link(user_id: int) -> str:
    return f'href="/users/{user_id}/erase"'


def test_only_admins_are_offered_the_erasure(signed_in, ada):
    assert erase_link(ada) in body(signed_in("admin").get(f"/users/{ada}"))
    for role in ("support", "auditor"):
        assert erase_link(ada) not in body(signed_in(role).get(f"/users/{ada}"))


@pytest.mark.parametrize("role", ["support", "auditor"])
def test_the_erase_page_is_forbidden_to_others(signed_in, ada, database, role):
    browser = signed_in(role)
    before = database.fingerprint()

    page = browser.get(f"/users/{ada}/erase")
    post = plain_post(browser, f"/users/{ada}/erase", {"reason": "asked"})

    assert (page.status_code, post.status_code) == (403, 403)
    assert database.fingerprint() == before
    # Refusals are kept (repeats from the same address counted, not listed).
    [event] = database.rows("SELECT * FROM security_events WHERE event = 'forbidden'")
    assert event["details"]["permission"] == "personal_data:erase"
    assert event["details"]["path"] == f"/users/{ada}/erase"


def test_signed_out_the_erase_page_asks_to_sign_in(signed_in, ada):
    response = signed_in(None).get(f"/users/{ada}/erase")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_the_confirmation_says_what_cannot_be_undone(signed_in, ada):
    page = text_of(signed_in("admin").get(f"/users/{ada}/erase"))

    assert "Erase this profile's personal data?" in page
    assert "Ada King" in page
    assert "This cannot be undone." in page
    assert "shows <code>[erased]</code>" in page
    assert "Its history stays" in page
    assert "seals and their chain still verify" in page
    assert 'name="reason"' in page
    assert "required" in page
    assert 'name="csrf_token"' in page


def test_erasing_from_the_dashboard_shows_the_erased_profile(signed_in, ada, database):
    admin = signed_in("admin", "alice")

    response = plain_post(admin, f"/users/{ada}/erase", {"reason": "request of 2 March"})

    assert response.status_code == 302
    assert response.headers["Location"] == f"/users/{ada}"
    assert_erased(database, ada, actor="alice", reason="request of 2 March")
    page = text_of(admin.get(f"/users/{ada}"))
    assert f"Personal data of profile #{ada} erased" in page
    assert '<span class="status status-erased">Erased</span>' in page
    assert "This profile's personal data was erased" in page
    for action in ("edit", "delete", "restore", "erase"):
        assert f'href="/users/{ada}/{action}"' not in page
    assert '<span class="op op-erase">erase</span>' in page
    assert "request of 2 March" in page
    assert f'"name": "{ERASED}"' in page
    for value in HIDDEN:
        assert value not in page


def test_the_list_marks_erased_profiles_without_actions(signed_in, client, ada):
    other = post_profile(client, "Grace Hopper", "grace@example.com")
    client.delete(f"/api/v1/users/{other}")
    client.post(f"/api/v1/users/{ada}/erasure", json={"reason": "asked"})

    page = body(signed_in("admin").get("/users?deleted=1"))

    row = page[page.index(f'id="user-{ada}"') :].split("</tr>", 1)[0]
    assert "status-erased" in row
    assert "/restore" not in row
    assert "/edit" not in row
    assert f'href="/users/{other}/restore"' in page  # a deleted one still can be


def test_a_missing_reason_is_asked_for_again_in_place(signed_in, ada, database):
    admin = signed_in("admin")
    before = database.fingerprint()

    response = htmx_post(admin, f"/users/{ada}/erase", {"reason": "   "})

    assert response.status_code == 400
    fragment = body(response)
    assert "<html" not in fragment
    assert fragment.lstrip().startswith('<div id="erase-panel">')
    assert 'aria-invalid="true"' in fragment
    assert "Reason is required to erase a profile" in fragment
    assert database.fingerprint() == before


def test_a_plain_post_without_reason_gets_the_whole_page(signed_in, ada, database):
    admin = signed_in("admin")
    before = database.fingerprint()

    response = plain_post(admin, f"/users/{ada}/erase", {})

    assert response.status_code == 400
    assert "<html" in body(response)
    assert "Reason is required to erase a profile" in text_of(response)
    assert database.fingerprint() == before


def test_the_htmx_erasure_sends_the_browser_to_the_profile(signed_in, ada, database):
    admin = signed_in("admin")

    fragment = admin.get(f"/users/{ada}/erase", headers=HTMX)
    assert "<html" not in body(fragment)
    assert 'id="erase-panel"' in body(fragment)
    response = htmx_post(admin, f"/users/{ada}/erase", {"reason": "asked"})

    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == f"/users/{ada}"
    assert database.user(ada)["erased_at"] is not None


def test_the_erasure_needs_the_csrf_token(signed_in, ada, database):
    admin = signed_in("admin")
    before = database.fingerprint()
    response = admin.post(f"/users/{ada}/erase", data={"reason": "asked"})
    assert response.status_code == 400
    assert database.fingerprint() == before


def test_an_erased_profile_is_not_erased_twice(signed_in, client, ada, database):
    admin = signed_in("admin")
    token = page_token(admin, f"/users/{ada}/erase")  # the page opened before someone else erased
    client.post(f"/api/v1/users/{ada}/erasure", json={"reason": "first"})
    before = database.fingerprint()

    page = text_of(admin.get(f"/users/{ada}/erase"))
    response = admin.post(f"/users/{ada}/erase", data={"csrf_token": token, "reason": "again"})

    assert "Personal data already erased" in page
    assert 'name="reason"' not in page
    assert response.status_code == 409
    assert "There is nothing left to erase." in text_of(response)
    assert database.fingerprint() == before


def test_an_erased_profile_offers_no_restore(signed_in, client, ada, database):
    client.post(f"/api/v1/users/{ada}/erasure", json={"reason": "asked"})
    admin = signed_in("admin")
    before = database.fingerprint()

    page = text_of(admin.get(f"/users/{ada}/restore"))
    refused = plain_post(admin, f"/users/{ada}/restore", {"expected_version": "3"})

    assert "personal data is erased: it can no longer be restored" in page
    assert 'name="reason"' not in page
    assert refused.status_code == 409
    assert f"Profile {ada} was erased; it can no longer be changed." in text_of(refused)
    assert database.fingerprint() == before


@pytest.mark.parametrize("path", ["/users/999/erase", "/users/abc/erase"])
def test_the_erase_page_of_no_profile_is_404(signed_in, path):
    assert signed_in("admin").get(path).status_code == 404


def test_the_timeline_lists_filters_and_charts_erasures(signed_in, client, ada):
    client.post(f"/api/v1/users/{ada}/erasure", json={"reason": "asked"})
    auditor = signed_in("auditor")

    timeline = body(auditor.get("/audit"))
    only_erasures = body(auditor.get("/audit?operation=erase"))
    chart = body(auditor.get("/audit/activity"))

    assert 'name="operation" value="erase"' in timeline
    assert '<span class="op op-erase">erase</span>' in timeline
    assert only_erasures.count('class="op op-erase"') == 2  # the checkbox and the entry
    assert 'class="op op-update"' not in only_erasures.split('id="entries"', 1)[1]
    assert 'class="bar bar-erase"' in chart
    assert 'data-total="erase">1<' in chart


def test_every_operation_has_its_colours():
    css = (ROOT / "static" / "app.css").read_text(encoding="utf-8")
    for operation in OPERATIONS:
        assert f".op-{operation} {{" in css
        assert f".bar-{operation}, .swatch-{operation} {{" in css
