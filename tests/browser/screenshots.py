"""Screenshots of the main pages for people to look at: ``make screenshots``.

Not part of the suite (the file name does not start with ``test_``); run
through pytest for the live server, database and browser fixtures.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Page, expect

from tests.support.database import end_every_session
from webapp.audit.context import Actor, Origin, acting_as
from webapp.services import users

OUTPUT = Path(os.environ.get("SCREENSHOT_DIR", "screenshots"))
SIZES = {"desktop": (1366, 900), "phone": (390, 844)}


@pytest.fixture
def sample_profiles(app: Flask, staff_factory) -> int:
    """A few profiles with some history; returns the id of the busiest."""
    editor = staff_factory.account("support", "sam")
    with app.app_context(), acting_as(Actor(editor.id, editor.username), Origin("web")):
        for name, email in [
            ("Grace Hopper", "grace@example.com"),
            ("Alan Turing", "alan@example.com"),
            ("Katherine Johnson", "katherine@example.com"),
        ]:
            users.create_user({"name": name, "email": email}, reason="onboarding")
        grace = users.list_users(query="Grace").items[0]
        users.update_user(grace.id, {"name": "Grace Murray Hopper"}, reason="full name")
        ada = users.create_user({"name": "Ada Lovelace", "email": "ada@example.com"})
        users.update_user(ada.id, {"name": "Augusta Ada King"}, reason="legal name")
        users.update_user(ada.id, {"email": "ada.king@example.com"}, reason="new address")
        users.delete_user(ada.id, reason="duplicate account")
        users.restore_user(ada.id, reason="deleted by mistake")
        return ada.id


def _shoot(page: Page, name: str) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for label, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=OUTPUT / f"{name}-{label}.png", full_page=True)


def test_screenshots(page: Page, sign_in, sample_profiles: int) -> None:
    sign_in(page, "admin")

    page.goto("/users")
    _shoot(page, "profiles-list")

    page.locator(f"#user-{sample_profiles}").get_by_role("link", name="Edit").click()
    page.locator(f"#edit-{sample_profiles}-name").fill(" ")
    page.locator(f"#edit-{sample_profiles}-email").fill("not-an-email")
    page.get_by_role("button", name="Save").click()
    page.locator("[aria-invalid='true']").first.wait_for()
    _shoot(page, "edit-form-with-errors")

    page.goto(f"/users/{sample_profiles}")
    _shoot(page, "profile-history")

    page.goto(f"/audit?user_id={sample_profiles}&operation=update&operation=restore")
    _shoot(page, "timeline-filtered")

    # What shows before scrolling: the compact filter bar with its chips, the
    # integrity banner, the folded chart and the first entry.
    page.goto(f"/audit?user_id={sample_profiles}&operation=update&since=2020-01-01")
    page.locator("figure.activity").wait_for(state="attached")
    for label, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        page.reload()
        page.locator("figure.activity").wait_for(state="attached")
        page.screenshot(path=OUTPUT / f"timeline-top-{label}.png")

    # One entry's word diff: a word inserted in a name, a part of an email.
    page.goto("/audit?operation=update")
    for label, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        page.locator("li.entry").nth(1).screenshot(path=OUTPUT / f"word-diff-{label}.png")
        page.locator("li.entry").last.screenshot(path=OUTPUT / f"word-diff-name-{label}.png")

    assert len(list(OUTPUT.glob("*.png"))) >= 14


def test_screenshots_of_an_ended_session_and_a_new_token(
    page: Page, sign_in, sample_profiles: int, engine, staff_factory, live_server: str
) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
    support = sign_in(page, "support", "sam-at-the-desk")
    page.goto("/users")
    page.locator(f"#user-{sample_profiles}").get_by_role("link", name="Edit").click()
    page.locator(f"#edit-{sample_profiles}-name").fill("Ada King-Noel")
    page.locator(f"#edit-{sample_profiles}-reason").fill("ticket 4711")
    end_every_session(engine)  # the session ends on the server meanwhile
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash")).to_contain_text("Your session has ended")
    _shoot(page, "session-ended-sign-in")

    page.get_by_label("Username").fill(support.username)
    page.get_by_label("Password").fill(staff_factory.password)
    page.get_by_role("button", name="Sign in").click()
    page.locator(f"#user-{sample_profiles}").get_by_role("link", name="Edit").click()
    expect(page.locator("[data-draft-offer]")).to_be_visible()
    _shoot(page, "session-ended-edit-offered-back")

    page.get_by_role("button", name="Sign out").click()
    sign_in(page, "admin", "root")
    page.goto("/admin/tokens")
    page.get_by_label("Name").fill("nightly-import")
    page.get_by_label("Expires in (days)").fill("90")
    page.get_by_role("button", name="Create token").click()
    page.get_by_role("button", name="Copy the token").click()
    expect(page.locator("[data-copy-status]")).not_to_be_empty()
    _shoot(page, "token-created")
