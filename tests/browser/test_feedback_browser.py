"""What the dashboard tells people while and after it works: busy regions, the
search spinner and history, spoken news, focus after "Load more", Escape."""

from __future__ import annotations

import re

from playwright.sync_api import Page, Route, expect

from tests.support.profiles import numbered_profiles, post_profile


def test_the_search_is_busy_while_loading_and_typing_adds_no_history(page: Page, sign_in, client):
    post_profile(client, "Ada Lovelace", "ada@example.com")
    post_profile(client, "Grace Hopper", "grace@example.com")
    sign_in(page, "support")
    page.goto("/users")
    entries_before = page.evaluate("history.length")
    held: list[Route] = []
    page.route(re.compile(r"/users\?q="), lambda route: held.append(route))

    page.get_by_label("Search names and emails").fill("grace")
    results = page.locator("#results")
    expect(results).to_have_attribute("aria-busy", "true")
    expect(page.locator("#search-busy")).to_be_visible()
    expect(results).to_have_css("opacity", "0.55")  # dimmed
    expect(page.locator("#search-busy")).to_have_css("opacity", "1")
    for route in held:
        route.continue_()
    page.unroute(re.compile(r"/users\?q="))

    expect(page.locator("#profile-rows > tr")).to_have_count(1)
    expect(results).not_to_have_attribute("aria-busy", "true")
    expect(page.locator("#search-busy")).to_have_css("opacity", "0")
    expect(page).to_have_url(re.compile(r"/users\?q=grace$"))
    page.get_by_label("Search names and emails").press_sequentially(" h", delay=30)
    expect(page).to_have_url(re.compile(r"/users\?q=grace(\+|%20)h$"))
    # Typing replaced the history entry instead of adding one per search.
    assert page.evaluate("history.length") == entries_before
    page.go_back()
    expect(page).to_have_url(re.compile(r"/users$"))


def test_saves_are_announced_and_escape_closes_the_form(page: Page, sign_in, client):
    ada = post_profile(client, "Ada Lovelace", "ada@example.com")
    sign_in(page, "support")
    page.goto("/users")
    row = page.locator(f"#user-{ada}")
    row.get_by_role("link", name="Edit").click()
    page.locator(f"#edit-{ada}-name").fill("Ada King")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#announcer")).to_have_text("Saved")
    expect(row.get_by_role("link", name="Edit")).to_be_focused()

    row.get_by_role("link", name="Edit").click()
    expect(page.locator(f"#edit-{ada}-name")).to_be_focused()
    page.keyboard.press("Escape")
    expect(row.locator("form")).to_have_count(0)
    expect(row.get_by_role("link", name="Edit")).to_be_focused()

    page.get_by_role("link", name="New profile").click()
    expect(page.locator("#new-name")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#new-profile")).to_have_count(0)
    expect(page.get_by_role("link", name="New profile")).to_be_focused()


def test_a_new_filter_says_how_many_entries_it_found(page: Page, sign_in, client):
    numbered_profiles(client, 7)
    sign_in(page, "auditor")
    page.goto("/audit")
    page.locator("input[name='operation'][value='create']").check()
    expect(page.locator("#announcer")).to_have_text("7 entries")
