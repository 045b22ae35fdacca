"""The audit timeline in a real browser: filters in the URL, history, infinite scroll."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.support.database import rewrite_history
from tests.support.profiles import numbered_profiles, update_profile


@pytest.fixture
def timeline(page: Page, sign_in, client) -> Page:
    """An auditor on the timeline, with six profiles created and two renamed."""
    ids = numbered_profiles(client, 6)
    for user_id in ids[:2]:
        update_profile(client, user_id, name="Renamed")
    sign_in(page, "auditor")
    page.goto("/audit")
    expect(page.locator("li.entry")).to_have_count(8)
    return page


def test_filter_changes_results_and_url(timeline: Page):
    page = timeline
    page.get_by_label("update", exact=True).check()
    page.wait_for_url(re.compile(r"operation=update"))
    expect(page.locator("li.entry")).to_have_count(2)
    expect(page.locator("li.entry .op")).to_have_text(["update", "update"])
    # the export links follow the filter
    expect(page.get_by_role("link", name="CSV")).to_have_attribute(
        "href", re.compile(r"/audit/export\.csv\?operation=update$")
    )
    csv = page.request.get(page.get_by_role("link", name="CSV").get_attribute("href"))
    assert csv.status == 200
    assert len(csv.text().strip().splitlines()) == 1 + 2

    page.get_by_label("User").fill("Person 5")
    page.get_by_label("update", exact=True).uncheck()
    page.wait_for_url(re.compile(r"user=Person(%20|\+)5"))
    expect(page.locator("li.entry")).to_have_count(1)

    # a reload (or a permalink) shows the same filter and results
    page.reload()
    expect(page.locator("li.entry")).to_have_count(1)
    expect(page.get_by_label("User")).to_have_value("Person 5")
    expect(page.get_by_label("update", exact=True)).not_to_be_checked()


def test_back_button_restores_the_previous_filter(page: Page, sign_in, client):
    numbered_profiles(client, 3)
    sign_in(page, "auditor")
    page.goto("/audit?operation=create")
    expect(page.locator("li.entry")).to_have_count(3)
    page.get_by_label("User").fill("Person 1")
    page.get_by_role("button", name="Apply filter").click()
    page.wait_for_url(re.compile(r"user=Person(%20|\+)1"))
    expect(page.locator("li.entry")).to_have_count(1)

    page.go_back()
    page.wait_for_url(re.compile(r"/audit\?operation=create$"))
    expect(page.locator("li.entry")).to_have_count(3)
    expect(page.get_by_label("User")).to_have_value("")
    expect(page.get_by_label("create", exact=True)).to_be_checked()

    page.go_forward()
    page.wait_for_url(re.compile(r"user=Person(%20|\+)1"))
    expect(page.locator("li.entry")).to_have_count(1)
    expect(page.get_by_label("User")).to_have_value("Person 1")


def test_bad_filter_shows_the_message_in_place(timeline: Page):
    page = timeline
    page.get_by_label("Actor").fill("x" * 101)
    page.get_by_role("button", name="Apply filter").click()
    expect(page.get_by_role("alert")).to_contain_text("at most 100 characters")
    expect(page.locator("li.entry")).to_have_count(0)


def test_load_more_and_infinite_scroll_append(page: Page, sign_in, client):
    numbered_profiles(client, 12)
    sign_in(page, "auditor")
    page.goto("/audit?limit=3")
    entries = page.locator("li.entry")
    expect(entries).to_have_count(3)
    page.get_by_role("link", name="Load more").click()
    expect(entries).to_have_count(6)
    # The first new entry takes the focus, and the news is spoken.
    expect(entries.nth(3)).to_be_focused()
    expect(page.locator("#announcer")).to_have_text("3 more entries")
    # scrolling to the end fetches the rest
    for _ in range(10):
        page.mouse.wheel(0, 10_000)
        page.wait_for_timeout(150)
    expect(entries).to_have_count(12)
    expect(page.get_by_role("link", name="Load more")).to_have_count(0)
    names = entries.locator(".entry-user").all_inner_texts()
    assert len(set(names)) == 12
    # appending does not change the address: reloading starts from the newest
    assert "cursor" not in page.url


def test_the_activity_chart_arrives_after_the_entries(timeline: Page):
    chart = timeline.locator("figure.activity svg.activity-chart")
    expect(chart).to_have_count(1)
    timeline.locator("#activity-toggle summary").click()
    expect(chart).to_be_visible()
    expect(timeline.locator("#activity a", has_text="Activity chart")).to_have_count(0)
    expect(timeline.locator("figure.activity [data-total='create']")).not_to_have_text("0")


def test_filter_by_operation_and_date_shows_the_changed_field(timeline: Page, engine):
    # The creates happened "last month"; only today's renames stay in range.
    rewrite_history(
        engine,
        "UPDATE user_audit SET timestamp = timestamp - interval '40 days' "
        "WHERE operation = 'create'",
    )
    page = timeline
    page.get_by_role("link", name="Today").click()
    page.wait_for_url(re.compile(r"since="))
    expect(page.locator("li.entry")).to_have_count(2)
    page.get_by_label("update", exact=True).check()
    page.wait_for_url(re.compile(r"operation=update"))
    entry = page.locator("li.entry").first
    changed = entry.locator("tr.diff-changed[data-key='name']")
    expect(changed).to_have_count(1)
    # Changed characters are marked inside the value: Person 1 -> Renamed.
    expect(changed).to_contain_text("Renamed")
    expect(changed.locator("del").first).to_be_visible()
    expect(changed.locator("ins").first).to_be_visible()
    expect(entry.locator("tr.diff-changed[data-key='email']")).to_have_count(0)


# --- the top of the page: the first entry above the fold ----------------------


def _first_entry_top(page: Page) -> float:
    return page.locator("li.entry").first.bounding_box()["y"]


@pytest.mark.parametrize(("width", "height", "limit"), [(1366, 900, 500), (390, 844, 700)])
def test_the_first_entry_shows_above_the_fold(timeline: Page, width, height, limit):
    page = timeline
    page.set_viewport_size({"width": width, "height": height})
    # As a real page: a filter with chips, the integrity banner, the chart loaded.
    page.goto("/audit?operation=create&operation=update&since=2020-01-01")
    expect(page.locator("#chain-status")).to_be_visible()
    expect(page.locator("figure.activity svg.activity-chart")).to_have_count(1)
    expect(page.locator(".filter-chips .chip")).to_have_count(3)
    assert _first_entry_top(page) < limit
    drawer = page.locator("#filter-drawer")
    if width < 761:
        # Phones: the filters wait in a drawer; opening it shows them all.
        expect(page.get_by_label("Actor")).to_be_hidden()
        drawer.locator("summary").click()
        expect(page.get_by_label("Actor")).to_be_visible()
    else:
        expect(page.get_by_label("Actor")).to_be_visible()
        expect(page.get_by_label("update", exact=True)).to_be_checked()


def test_a_chip_removes_its_filter(timeline: Page):
    page = timeline
    page.goto("/audit?operation=update&actor=nobody")
    expect(page.locator("li.entry")).to_have_count(0)
    # Nothing matches: the empty list offers to clear the filters.
    expect(page.get_by_role("link", name="Clear filters")).to_be_visible()
    page.get_by_role("link", name="Remove filter Actor: nobody").click()
    page.wait_for_url(re.compile(r"/audit\?operation=update$"))
    expect(page.locator("li.entry")).to_have_count(2)
    page.get_by_role("link", name="Remove filter Operation: update").click()
    page.wait_for_url(re.compile(r"/audit$"))
    expect(page.locator("li.entry")).to_have_count(8)
    expect(page.locator(".filter-chips")).to_have_count(0)


def test_the_chart_stays_as_the_reader_left_it(timeline: Page):
    page = timeline
    chart = page.locator("figure.activity svg.activity-chart")
    expect(chart).to_be_hidden()
    page.locator("#activity-toggle summary").click()
    expect(chart).to_be_visible()
    expect(page.locator("figure.activity .chart-axis")).to_contain_text(
        re.compile(r"busiest day: \d{4}-\d\d-\d\d \(8\)")
    )
    page.reload()
    expect(chart).to_be_visible()
    page.locator("#activity-toggle summary").click()
    page.goto("/audit?operation=create")
    expect(page.locator("li.entry")).to_have_count(6)
    expect(page.locator("figure.activity svg.activity-chart")).to_be_hidden()


def test_the_filter_puts_no_empty_fields_in_the_address(timeline: Page):
    page = timeline
    page.get_by_label("create", exact=True).check()
    page.wait_for_url(re.compile(r"operation=create"))
    expect(page.locator("li.entry")).to_have_count(6)
    assert page.url.endswith("/audit?operation=create"), page.url
    page.get_by_label("Actor").fill("")
    page.get_by_role("button", name="Apply filter").click()
    expect(page.locator("li.entry")).to_have_count(6)
    assert page.url.endswith("/audit?operation=create"), page.url


def test_back_from_an_entry_keeps_the_loaded_entries_and_the_place(page: Page, sign_in, client):
    numbered_profiles(client, 12)
    sign_in(page, "auditor")
    page.set_viewport_size({"width": 1366, "height": 600})
    page.goto("/audit?limit=3")
    entries = page.locator("li.entry")
    for count in (6, 9):
        page.get_by_role("link", name="Load more").click()
        expect(entries).to_have_count(count)
    eighth = entries.nth(7)
    eighth.scroll_into_view_if_needed()
    place = page.evaluate("window.scrollY")
    assert place > 500
    eighth.get_by_role("link", name="Profile as of this moment").click()
    page.wait_for_url(re.compile(r"/audit/as-of\?"))

    page.go_back()
    page.wait_for_url(re.compile(r"/audit\?limit=3$"))
    expect(entries).to_have_count(9)
    # Polled from outside the page: a predicate evaluated inside it would need
    # the 'unsafe-eval' the page's CSP refuses.
    for _ in range(50):
        if abs(page.evaluate("window.scrollY") - place) < 5:
            break
        page.wait_for_timeout(100)
    assert abs(page.evaluate("window.scrollY") - place) < 5
    # The list goes on from where it was.
    page.get_by_role("link", name="Load more").click()
    expect(entries).to_have_count(12)

    # A fresh visit starts from the newest again.
    page.goto("/audit?limit=3")
    expect(entries).to_have_count(3)
