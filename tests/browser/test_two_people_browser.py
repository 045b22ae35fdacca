"""Two people at once: a stale edit between two browsers, and what an auditor sees."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect


@pytest.fixture
def second_page(browser: Browser, live_server: str) -> Iterator[Page]:
    """Another person's browser: its own context, so its own session cookie."""
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def _create_profile(page: Page, name: str, email: str) -> str:
    page.goto("/users")
    page.get_by_role("link", name="New profile").click()
    page.locator("#new-name").fill(name)
    page.locator("#new-email").fill(email)
    page.get_by_role("button", name="Create profile").click()
    row = page.locator("#profile-rows > tr").filter(has_text=email)
    expect(row).to_have_count(1)
    return row.get_attribute("id").removeprefix("user-")


def test_a_stale_edit_between_two_browsers_overwrites_nothing(
    page: Page, second_page: Page, sign_in, database
):
    sign_in(page, "support", "first")
    sign_in(second_page, "support", "second")
    user_id = _create_profile(page, "Ada Lovelace", "ada@example.com")

    # Both open the same profile for editing at version 1.
    page.goto("/users")
    page.locator(f"#user-{user_id}").get_by_role("link", name="Edit").click()
    second_page.goto("/users")
    second_page.locator(f"#user-{user_id}").get_by_role("link", name="Edit").click()

    second_page.locator(f"#edit-{user_id}-name").fill("Saved by second")
    second_page.get_by_role("button", name="Save").click()
    expect(second_page.locator(f"#user-{user_id}")).to_contain_text("Saved by second")

    page.locator(f"#edit-{user_id}-name").fill("Saved by first")
    page.get_by_role("button", name="Save").click()
    notice = page.locator(".stale-notice")
    expect(notice).to_contain_text("Someone else saved this profile")
    expect(notice).to_contain_text("Saved by second")

    assert database.user(int(user_id))["name"] == "Saved by second"
    entries = database.audit(int(user_id))
    assert [(e["operation"], e["actor_label"]) for e in entries] == [
        ("create", "first"),
        ("update", "second"),
    ]


def test_an_auditor_sees_no_edit_controls(page: Page, second_page: Page, sign_in):
    sign_in(second_page, "support")
    user_id = _create_profile(second_page, "Grace Hopper", "grace@example.com")

    sign_in(page, "auditor")
    page.goto("/users")
    row = page.locator(f"#user-{user_id}")
    expect(row).to_contain_text("Grace Hopper")
    expect(page.get_by_role("link", name="New profile")).to_have_count(0)
    expect(row.get_by_role("link", name="Edit")).to_have_count(0)
    expect(row.get_by_role("button", name="Delete")).to_have_count(0)
    expect(row.get_by_role("link", name="Delete")).to_have_count(0)

    page.goto(f"/users/{user_id}")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Grace Hopper")
    expect(page.get_by_role("link", name="Edit")).to_have_count(0)
    # The server refuses the write even when the request is forged with a
    # valid CSRF token from the auditor's own session.
    token = page.locator("meta[name=csrf-token]").get_attribute("content")
    response = page.request.post(
        f"/users/{user_id}/edit",
        form={"name": "Forged", "email": "grace@example.com", "expected_version": "1"},
        headers={"X-CSRFToken": token},
    )
    assert response.status == 403
