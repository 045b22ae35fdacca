"""Erasing a profile's personal data in a real browser: from the profile, through
the confirmation page, to the erased profile and its history."""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.sync_api import Page, expect

from webapp.services import users as user_service


def test_an_admin_erases_a_profile_and_sees_it_erased(
    page: Page, sign_in, make_user, cli, tmp_path: Path
):
    user_id = make_user("Ada Lovelace", "ada@example.com")
    with cli():
        user_service.update_user(user_id, {"name": "Ada King"}, reason="married")
    sign_in(page, "admin", "alice")

    page.goto(f"/users/{user_id}")
    page.get_by_role("link", name="Erase personal data").click()
    expect(page).to_have_url(re.compile(rf"/users/{user_id}/erase$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Erase this profile's personal data?")
    expect(page.locator(".erase-consequences")).to_contain_text("This cannot be undone.")
    reason = page.get_by_label("Reason for erasure (required)")
    expect(reason).to_be_focused()

    # Without a reason: asked again in place (htmx), nothing erased.
    page.get_by_role("button", name="Erase personal data for good").click()
    expect(page.locator(".field-errors")).to_have_text("Reason is required to erase a profile")
    expect(reason).to_be_focused()
    expect(page).to_have_url(re.compile(rf"/users/{user_id}/erase$"))

    reason.fill("Erasure request of 2 March (ticket 1234)")
    # Pictures of the question and of the result, to look at by eye (in SCREENSHOT_DIR if set).
    pictures = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    page.screenshot(path=str(pictures / "erase-confirmation.png"), full_page=True)
    page.get_by_role("button", name="Erase personal data for good").click()

    expect(page).to_have_url(re.compile(rf"/users/{user_id}$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Erased profile")
    expect(page.locator(".flashes")).to_contain_text(f"Personal data of profile #{user_id} erased")
    expect(page.locator(".erased-banner")).to_contain_text("personal data was erased")
    expect(page.locator(".page-actions")).to_have_count(0)
    history = page.locator("#history-list")
    expect(history.locator(".history-entry")).to_have_count(3)
    expect(history.locator(".history-entry").first.locator(".op")).to_have_text("erase")
    expect(history).to_contain_text("Erasure request of 2 March (ticket 1234)")
    expect(history).to_contain_text('"name": "[erased]"')
    expect(history).not_to_contain_text("Ada")
    page.screenshot(path=str(pictures / "erased-profile.png"), full_page=True)
