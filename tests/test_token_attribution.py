"""An admin cannot act as someone else unseen: every change made through an API
token names the token and who created it, on the timeline, in the API and in
exports; an owner's token names are unique."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from flask import Flask
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from tests.support.database import Database
from tests.support.pages import form_token
from tests.support.staff import StaffFactory
from webapp.audit.errors import UnattributedChangeError
from webapp.extensions import db
from webapp.models import Staff
from webapp.services import api_tokens
from webapp.services.errors import Conflict, ValidationFailed

TAG = re.compile(r"<[^>]+>")


@pytest.fixture
def impersonation(app: Flask, staff_factory: StaffFactory, database: Database) -> dict:
    """Admin ``mallory`` makes a token owned by ``sam`` and changes a profile with it."""
    mallory = staff_factory.account("admin", "mallory")
    sam = staff_factory.account("support", "sam")
    secret = staff_factory.token(sam, "sync", created_by=mallory)
    api = app.test_client()
    api.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    created = api.post("/api/v1/users", json={"name": "Ada", "email": "ada@example.com"})
    assert created.status_code == 201
    user_id = created.get_json()["id"]
    assert api.patch(f"/api/v1/users/{user_id}", json={"name": "Ada K"}).status_code == 200
    [token] = database.rows("SELECT * FROM api_tokens")
    return {"mallory": mallory, "sam": sam, "token": token, "user_id": user_id}


def test_the_token_records_who_created_it(impersonation):
    token = impersonation["token"]
    assert token["staff_id"] == impersonation["sam"].id
    assert token["created_by_id"] == impersonation["mallory"].id
    assert token["created_by_label"] == "mallory"


def test_every_entry_made_through_a_token_carries_its_id(impersonation, database):
    entries = database.audit(impersonation["user_id"])
    assert len(entries) == 2
    for entry in entries:
        assert entry["actor_label"] == "sam"
        assert entry["token_id"] == impersonation["token"]["id"]


def test_the_api_names_the_token_and_its_creator(impersonation, client):
    expected = {
        "id": impersonation["token"]["id"],
        "name": "sync",
        "created_by": {"id": impersonation["mallory"].id, "label": "mallory"},
    }
    timeline = client.get(f"/api/v1/audit?user_id={impersonation['user_id']}").get_json()
    history = client.get(f"/api/v1/users/{impersonation['user_id']}/history").get_json()
    for items in (timeline["items"], history["items"]):
        assert [item["actor"]["label"] for item in items] == ["sam", "sam"]
        assert [item["actor"]["token"] for item in items] == [expected, expected]


def test_the_timeline_and_the_profile_page_say_via_token_created_by(impersonation, signed_in):
    auditor = signed_in("auditor")
    token_id = impersonation["token"]["id"]
    for path in ("/audit", f"/users/{impersonation['user_id']}"):
        page = " ".join(TAG.sub("", auditor.get(path).get_data(as_text=True)).split())
        assert page.count("by sam") >= 2
        assert page.count(f"via token sync (#{token_id}), created by mallory") >= 2


def test_exports_name_the_token_and_its_creator(impersonation, signed_in):
    auditor = signed_in("auditor")
    rows = list(
        csv.DictReader(io.StringIO(auditor.get("/audit/export.csv").get_data(as_text=True)))
    )
    assert [(r["actor"], r["channel_detail"], r["token_created_by"]) for r in rows] == [
        ("sam", "sync", "mallory")
    ] * 2
    assert {r["token_id"] for r in rows} == {str(impersonation["token"]["id"])}

    lines = auditor.get("/audit/export.ndjson").get_data(as_text=True).splitlines()
    tokens = [json.loads(line)["actor"]["token"] for line in lines]
    assert [t["created_by"]["label"] for t in tokens] == ["mallory", "mallory"]


def test_entries_of_other_channels_have_no_token(app, client, signed_in, database):
    browser = signed_in("support")
    response = browser.post(
        "/users/new",
        data={"csrf_token": form_token(browser, "/users/new"), "name": "Web", "email": "w@x.org"},
    )
    assert response.status_code == 302
    [entry] = database.audit()
    assert (entry["channel"], entry["token_id"]) == ("web", None)
    [item] = client.get("/api/v1/audit").get_json()["items"]
    assert item["actor"]["token"] is None


def test_a_token_created_on_the_command_line_names_the_os_user(runner, staff_factory, database):
    staff_factory.account("support", "sam")
    result = runner.invoke(args=["token", "create", "sam", "--name", "cron"])
    assert result.exit_code == 0, result.output
    [token] = database.rows("SELECT * FROM api_tokens")
    assert token["created_by_id"] is None
    assert token["created_by_label"].startswith("cli:")


def test_a_token_needs_someone_to_create_it(app, staff_factory, database):
    sam = staff_factory.account("support", "sam")
    with app.app_context(), pytest.raises(UnattributedChangeError):
        api_tokens.create_token(db.session.get(Staff, sam.id), "orphan")
    assert database.rows("SELECT * FROM api_tokens") == []


@pytest.mark.parametrize("again", ["Nightly", "nightly", "NIGHTLY", "  nightly "])
def test_an_owners_token_names_are_unique_whatever_the_case(app, staff_factory, again):
    sam = staff_factory.account("support", "sam")
    staff_factory.token(sam, "Nightly")
    with pytest.raises(Conflict, match="already has a token named") as refused:
        staff_factory.token(sam, again)
    assert "name" in refused.value.errors


def test_a_revoked_tokens_name_stays_taken(app, staff_factory, database):
    """Entries made through the revoked token still name it: a new token of the
    same owner and name would make them ambiguous."""
    sam = staff_factory.account("support", "sam")
    staff_factory.token(sam, "nightly")
    with app.app_context():
        api_tokens.revoke_token(database.rows("SELECT id FROM api_tokens")[0]["id"])
    with pytest.raises(Conflict):
        staff_factory.token(sam, "nightly")


def test_another_owner_may_use_the_same_name(app, staff_factory, database):
    staff_factory.token(staff_factory.account("support", "sam"), "nightly")
    staff_factory.token(staff_factory.account("support", "kim"), "nightly")
    assert len(database.rows("SELECT * FROM api_tokens")) == 2


def test_the_database_refuses_a_duplicate_name_that_got_past_the_check(
    staff_factory, engine, database
):
    sam = staff_factory.account("support", "sam")
    staff_factory.token(sam, "nightly")
    before = database.rows("SELECT * FROM api_tokens")
    with (
        engine.connect() as connection,
        pytest.raises(IntegrityError, match="uq_api_tokens_staff_id_lower_name"),
    ):
        connection.execute(
            text(
                "INSERT INTO api_tokens (staff_id, name, token_hash, prefix) "
                "VALUES (:staff, 'NIGHTLY', repeat('a', 64), 'pa_x')"
            ),
            {"staff": sam.id},
        )
    assert database.rows("SELECT * FROM api_tokens") == before


@pytest.mark.parametrize("name", ["\u3164", "\u200b", "\u2800\u2800", "\ufeff"])
def test_an_invisible_token_name_is_refused(app, staff_factory, name):
    with pytest.raises(ValidationFailed):
        staff_factory.token(staff_factory.account("support", "sam"), name)
