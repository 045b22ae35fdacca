"""Admin pages in a real browser: a new API token shown once, copied, and
readable on a phone."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect


def create_token(page: Page, name: str) -> str:
    page.goto("/admin/tokens")
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-token-secret")
    expect(secret).to_be_visible()
    return secret.inner_text().strip()


def test_reloading_after_creating_a_token_creates_no_second_one(page: Page, sign_in, database):
    sign_in(page, "admin")
    secret = create_token(page, "nightly-import")
    assert secret.startswith("pa_")
    expect(page).to_have_url(re.compile(r"/admin/tokens$"))

    page.reload()
    expect(page.locator("h1")).to_have_text("API tokens")
    expect(page.locator("#new-token-secret")).to_have_count(0)
    assert secret not in page.content()
    page.go_back()
    assert secret not in page.content()
    assert database.scalar("SELECT count(*) FROM api_tokens") == 1


def test_the_copy_button_copies_the_token_and_says_so(page: Page, sign_in, live_server):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
    sign_in(page, "admin")
    secret = create_token(page, "nightly-import")
    page.get_by_role("button", name="Copy the token").click()
    expect(page.locator("[data-copy-status]")).to_have_text("Copied to the clipboard.")
    expect(page.locator("#announcer")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == secret


def test_the_token_wraps_on_a_phone(page: Page, sign_in):
    sign_in(page, "admin")
    page.set_viewport_size({"width": 390, "height": 844})
    create_token(page, "nightly-import")
    box = page.locator("#new-token-secret").bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= 390
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # Wrapped onto more than one line rather than cut off.
    assert box["height"] > 40


def test_revoking_asks_first(page: Page, sign_in, database):
    sign_in(page, "admin")
    create_token(page, "nightly-import")
    page.get_by_role("link", name="Revoke nightly-import").click()
    expect(page.locator("h1")).to_have_text("Revoke the token nightly-import?")
    assert database.scalar("SELECT revoked_at FROM api_tokens") is None
    page.get_by_role("button", name="Revoke the token").click()
    expect(page).to_have_url(re.compile(r"/admin/tokens$"))
    expect(page.locator(".flash")).to_contain_text("is revoked")
    assert database.scalar("SELECT revoked_at FROM api_tokens") is not None
