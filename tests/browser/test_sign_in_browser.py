"""Signing in and out in a real browser, under the strict CSP, with htmx loaded."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect


def test_sign_in_and_out(page: Page, sign_in):
    admin = sign_in(page, "admin", "grace")

    expect(page.get_by_role("heading", level=1)).to_contain_text("grace")
    expect(page.locator(".account-name")).to_have_text(admin.username)
    # htmx is the vendored, pinned build, and it runs under the CSP.
    assert page.evaluate("window.htmx && window.htmx.version") == "2.0.11"

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/login"))
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login"))


def test_wrong_password_shows_the_message_in_place(page: Page, staff_factory):
    staff_factory.account("support", "sam")
    page.goto("/login")
    page.get_by_label("Username").fill("sam")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Unknown username or wrong password.")).to_be_visible()


def test_a_new_api_token_is_shown_once(page: Page, sign_in):
    sign_in(page, "admin")
    page.goto("/admin/tokens")
    page.get_by_label("Name").fill("nightly-import")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-token-secret").inner_text()
    assert secret.startswith("pa_")

    page.goto("/admin/tokens")
    assert secret not in page.content()
