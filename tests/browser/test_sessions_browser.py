"""An ended session in the middle of live updates: the person signs in again
and comes back to the page, with the edit they had not saved."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from tests.support.database import end_every_session
from webapp.audit.context import Actor, Origin, acting_as
from webapp.services import users as user_service


def _sign_in_again(page: Page, staff_factory: Any, username: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(staff_factory.password)
    page.get_by_role("button", name="Sign in").click()


def test_an_inline_edit_survives_an_ended_session(
    page: Page, sign_in, make_user, app, staff_factory, engine, database
):
    user_id = make_user("Ada Lovelace", "ada@example.com")
    staff = sign_in(page, "support")
    page.goto("/users?q=ada")
    row = page.locator(f"#user-{user_id}")
    row.get_by_role("link", name="Edit").click()
    page.locator(f"#edit-{user_id}-name").fill("Augusta Ada King")
    page.locator(f"#edit-{user_id}-email").fill("ada.king@example.com")
    page.locator(f"#edit-{user_id}-reason").fill("legal name")

    end_every_session(engine)
    page.get_by_role("button", name="Save").click()

    # The whole page is the sign-in page (no sign-in form inside the table),
    # and it says why.
    expect(page).to_have_url(re.compile(r"/login\?next="))
    expect(page.locator("form[action='/login']")).to_have_count(1)
    expect(page.locator("#profile-rows")).to_have_count(0)
    expect(page.locator(".flash")).to_contain_text("Your session has ended")
    assert database.user(user_id)["name"] == "Ada Lovelace"

    _sign_in_again(page, staff_factory, staff.username)
    expect(page).to_have_url(re.compile(r"/users\?q=ada$"))
    row.get_by_role("link", name="Edit").click()
    offer = row.locator("[data-draft-offer]")
    expect(offer).to_be_visible()
    expect(offer).to_contain_text("Augusta Ada King")
    expect(offer.get_by_role("button", name="Put my changes back")).to_be_focused()
    offer.get_by_role("button", name="Put my changes back").click()
    expect(offer).to_be_hidden()
    expect(page.locator(f"#edit-{user_id}-name")).to_have_value("Augusta Ada King")
    expect(page.locator(f"#edit-{user_id}-email")).to_have_value("ada.king@example.com")
    expect(page.locator(f"#edit-{user_id}-reason")).to_have_value("legal name")

    page.get_by_role("button", name="Save").click()
    expect(row.locator("form")).to_have_count(0)
    expect(row.get_by_role("rowheader")).to_have_text("Augusta Ada King")
    saved = database.user(user_id)
    assert (saved["name"], saved["email"]) == ("Augusta Ada King", "ada.king@example.com")
    assert database.audit(user_id)[-1]["reason"] == "legal name"
    # Saved: no longer offered.
    row.get_by_role("link", name="Edit").click()
    expect(page.locator(f"#edit-{user_id}-name")).to_have_value("Augusta Ada King")
    expect(row.locator("[data-draft-offer]")).to_be_hidden()


def test_a_restored_edit_of_a_profile_changed_meanwhile_overwrites_nothing(
    page: Page, sign_in, make_user, app, staff_factory, engine, database
):
    user_id = make_user("Ada Lovelace", "ada@example.com")
    staff = sign_in(page, "support")
    page.goto("/users")
    page.locator(f"#user-{user_id}").get_by_role("link", name="Edit").click()
    page.locator(f"#edit-{user_id}-name").fill("Ada King")
    end_every_session(engine)
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(r"/login"))
    admin = staff_factory.account("admin", "other-admin")
    with app.app_context(), acting_as(Actor(admin.id, admin.username), Origin("cli")):
        user_service.update_user(user_id, {"email": "ada@lovelace.example"})

    _sign_in_again(page, staff_factory, staff.username)
    page.locator(f"#user-{user_id}").get_by_role("link", name="Edit").click()
    page.get_by_role("button", name="Put my changes back").click()
    page.get_by_role("button", name="Save").click()
    # The edit started from version 1: saving shows both sides, writes nothing.
    expect(page.locator(".stale-notice")).to_contain_text("Someone else saved this profile")
    assert database.user(user_id)["email"] == "ada@lovelace.example"
    assert database.user(user_id)["name"] == "Ada Lovelace"


def test_a_discarded_edit_is_not_offered_again(
    page: Page, sign_in, make_user, app, staff_factory, engine
):
    user_id = make_user("Ada Lovelace", "ada@example.com")
    staff = sign_in(page, "support")
    page.goto("/users")
    row = page.locator(f"#user-{user_id}")
    row.get_by_role("link", name="Edit").click()
    page.locator(f"#edit-{user_id}-name").fill("Ada King")
    end_every_session(engine)
    page.get_by_role("button", name="Save").click()
    _sign_in_again(page, staff_factory, staff.username)
    row.get_by_role("link", name="Edit").click()
    row.get_by_role("button", name="Discard them").click()
    expect(page.locator(f"#edit-{user_id}-name")).to_be_focused()
    expect(page.locator(f"#edit-{user_id}-name")).to_have_value("Ada Lovelace")
    page.keyboard.press("Escape")
    row.get_by_role("link", name="Edit").click()
    expect(row.locator("[data-draft-offer]")).to_be_hidden()


def test_a_live_search_with_an_ended_session_goes_to_sign_in(
    page: Page, sign_in, make_user, app, staff_factory, engine
):
    make_user("Ada Lovelace", "ada@example.com")
    staff = sign_in(page, "support")
    page.goto("/users")
    end_every_session(engine)
    page.get_by_label("Search names and emails").press_sequentially("ada", delay=20)

    expect(page).to_have_url(re.compile(r"/login\?next="))
    # One sign-in form, the page's own: none pasted into the results.
    expect(page.locator("form[action='/login']")).to_have_count(1)
    expect(page.locator("#results")).to_have_count(0)
    expect(page.locator(".account-name")).to_have_count(0)
    _sign_in_again(page, staff_factory, staff.username)
    expect(page).to_have_url(re.compile(r"/users"))
    expect(page.get_by_label("Search names and emails")).to_be_visible()
