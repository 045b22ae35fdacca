"""What the dashboard tells people while and after it works: busy regions, the
search spinner and history, spoken news, focus after "Load more", Escape."""

from __future__ import annotations

import re

from playwright.sync_api import Page, Route, expect


def make_profiles(client, names: list[str]) -> list[int]:
    ids = []
    for number, name in enumerate(names):
        response = client.post(
            "/api/v1/users", json={"name": name, "email": f"p{number}@example.com"}
        )
        assert response.status_code == 201
        ids.append(response.get_json()["id"])
    return ids


def test_the_search_is_busy_while_loading_and_typing_adds_no_history(page: Page, sign_in, client):
    make_profiles(client, ["Ada Lovelace", "Grace Hopper"])
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
    [ada] = make_profiles(client, ["Ada Lovelace"])
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


def test_timeline_news_is_spoken_and_load_more_focuses_the_first_new_entry(
    page: Page, sign_in, client
):
    make_profiles(client, [f"Person {number}" for number in range(7)])
    sign_in(page, "auditor")
    page.goto("/audit?limit=3")
    entries = page.locator("li.entry")
    expect(entries).to_have_count(3)
    page.get_by_role("link", name="Load more").click()
    expect(entries).to_have_count(6)
    expect(entries.nth(3)).to_be_focused()
    expect(page.locator("#announcer")).to_have_text("3 more entries")

    page.locator("input[name='operation'][value='create']").check()
    expect(page.locator("#announcer")).to_have_text("7 entries")
