"""The profiles list in a real browser: search as you type, inline forms, stale
edits, delete and restore, keyboard access."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from webapp.services import users as user_service


def rows(page: Page):
    return page.locator("#profile-rows > tr")


def test_search_as_you_type_and_back(page: Page, sign_in, make_user):
    make_user("Ada Lovelace", "ada@example.com")
    make_user("Grace Hopper", "grace@navy.example")
    sign_in(page, "support")
    page.goto("/users")
    expect(rows(page)).to_have_count(2)

    page.get_by_label("Search names and emails").press_sequentially("grace", delay=20)
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_contain_text("Grace Hopper")
    expect(page).to_have_url(re.compile(r"/users\?q=grace$"))
    expect(page.locator("#result-count")).to_contain_text("1 profile matching")

    page.get_by_label("Search names and emails").fill("lovelace")
    expect(rows(page).first).to_contain_text("Ada Lovelace")
    expect(page).to_have_url(re.compile(r"q=lovelace$"))


def test_back_button_restores_the_search(page: Page, sign_in, make_user):
    """Typing replaces the history entry; Back from a profile returns to the search.

    htmx restores the page from the server; its settle event then has no request target.
    """
    make_user("Ada Lovelace", "ada@example.com")
    make_user("Grace Hopper", "grace@navy.example")
    sign_in(page, "support")
    page.goto("/users")
    search = page.get_by_label("Search names and emails")
    search.fill("gra")
    expect(page).to_have_url(re.compile(r"q=gra$"))
    search.fill("grace")
    expect(page).to_have_url(re.compile(r"q=grace$"))
    expect(rows(page)).to_have_count(1)
    rows(page).first.get_by_role("link", name="Grace Hopper", exact=True).click()
    expect(page).to_have_url(re.compile(r"/users/\d+$"))

    page.go_back()
    expect(page).to_have_url(re.compile(r"q=grace$"))
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_contain_text("Grace Hopper")
    expect(page.get_by_label("Search names and emails")).to_have_value("grace")
    page.go_back()
    expect(page).to_have_url(re.compile(r"/users$"))


def test_slash_focuses_the_search(page: Page, sign_in):
    sign_in(page, "auditor")
    page.goto("/users")
    page.locator("h1").click()
    page.keyboard.press("/")
    expect(page.get_by_label("Search names and emails")).to_be_focused()


def test_inline_create_shows_errors_then_the_new_row(page: Page, sign_in, make_user, database):
    ada = make_user("Ada Lovelace", "ada@example.com")
    sign_in(page, "support")
    page.goto("/users")
    page.get_by_role("link", name="New profile").click()
    form_row = page.locator("#new-profile")
    expect(page.locator("#new-name")).to_be_focused()
    expect(page.get_by_role("link", name="New profile")).to_be_hidden()  # one form at a time
    form_row.get_by_label("Name").fill("Ada Twin")
    form_row.get_by_label("Email").fill("ADA@example.com")
    form_row.get_by_role("button", name="Create profile").click()
    error = page.locator("#new-email-errors")
    expect(error).to_contain_text("is already used by the active profile Ada Lovelace")
    expect(error.get_by_role("link", name="Ada Lovelace")).to_have_attribute(
        "href", f"/users/{ada}"
    )
    expect(page.locator("#new-email")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#new-email")).to_be_focused()
    assert page.url.endswith("/users")  # no page load

    page.locator("#new-email").fill("twin@example.com")
    page.locator("#new-reason").fill("ticket 7")
    page.get_by_role("button", name="Create profile").click()
    expect(page.locator("#new-profile")).to_have_count(0)
    expect(rows(page).first).to_contain_text("twin@example.com")
    expect(page.get_by_role("link", name="New profile")).to_be_visible()
    entry = database.audit()[-1]
    assert (entry["operation"], entry["channel"], entry["reason"]) == ("create", "web", "ticket 7")


def test_inline_edit_replaces_the_form_with_the_row(page: Page, sign_in, make_user, database):
    user_id = make_user("Ada Lovelace", "ada@example.com")
    sign_in(page, "support")
    page.goto("/users")
    row = page.locator(f"#user-{user_id}")
    row.get_by_role("link", name="Edit").click()
    expect(page.locator(f"#edit-{user_id}-name")).to_have_value("Ada Lovelace")
    page.locator(f"#edit-{user_id}-name").fill("Ada King")
    page.get_by_role("button", name="Save").click()
    expect(row.get_by_role("link", name="Ada King", exact=True)).to_be_visible()
    expect(page.locator(f"#edit-{user_id}-name")).to_have_count(0)
    assert database.user(user_id)["name"] == "Ada King"


def test_a_stale_edit_shows_both_values(page: Page, sign_in, make_user, cli, database):
    user_id = make_user("Ada Lovelace", "ada@example.com")
    sign_in(page, "support")
    page.goto("/users")
    page.locator(f"#user-{user_id}").get_by_role("link", name="Edit").click()
    page.locator(f"#edit-{user_id}-name").fill("Mine")
    with cli():
        user_service.update_user(user_id, {"name": "Theirs"})
    page.get_by_role("button", name="Save").click()
    notice = page.locator(".stale-notice")
    expect(notice).to_contain_text("Someone else saved this profile")
    expect(notice).to_contain_text("Mine")
    expect(notice).to_contain_text("Theirs")
    assert database.user(user_id)["name"] == "Theirs"

    notice.get_by_role("link", name="reload the current data").click()
    expect(page.locator(f"#edit-{user_id}-name")).to_have_value("Theirs")
    expect(page.locator(".stale-notice")).to_have_count(0)


def test_delete_and_restore_ask_for_a_reason_in_the_row(page: Page, sign_in, make_user, database):
    user_id = make_user("Ada Lovelace", "ada@example.com")
    sign_in(page, "support")
    page.goto("/users")
    row = page.locator(f"#user-{user_id}")
    row.get_by_role("link", name="Delete").click()
    expect(row).to_contain_text("Delete the profile of Ada Lovelace?")
    reason = row.get_by_label("Reason for change (optional)")
    expect(reason).to_be_focused()
    reason.fill("duplicate account")
    row.get_by_role("button", name="Delete profile").click()
    expect(row.get_by_role("link", name="Restore")).to_be_visible()
    expect(row).to_contain_text("Deleted")
    expect(page.locator("#announcer")).to_have_text("Deleted")
    assert database.user(user_id)["deleted_at"] is not None
    assert database.audit(user_id)[-1]["reason"] == "duplicate account"

    row.get_by_role("link", name="Restore").click()
    row.get_by_label("Reason for change (optional)").fill("deleted by mistake")
    row.get_by_role("button", name="Restore profile").click()
    expect(row.get_by_role("link", name="Edit")).to_be_visible()
    expect(page.locator("#announcer")).to_have_text("Restored")
    assert database.user(user_id)["deleted_at"] is None
    assert database.audit(user_id)[-1]["reason"] == "deleted by mistake"


def test_a_refused_restore_is_explained_in_the_row(page: Page, sign_in, make_user, cli):
    user_id = make_user("Ada Lovelace", "ada@example.com")
    with cli():
        user_service.delete_user(user_id)
    holder = make_user("Ada Again", "ada@example.com")
    sign_in(page, "support")
    page.goto("/users?deleted=1")
    row = page.locator(f"#user-{user_id}")
    row.get_by_role("link", name="Restore").click()
    row.get_by_role("button", name="Restore profile").click()
    alert = row.get_by_role("alert")
    expect(alert).to_contain_text("Not restored: ada@example.com is now used by another active")
    alert.get_by_role("link", name="Ada Again").click()
    expect(page).to_have_url(re.compile(rf"/users/{holder}$"))


def test_load_more_appends_rows(page: Page, sign_in, make_user):
    for number in range(30):
        make_user(f"Person {number:02}", f"p{number:02}@example.com")
    sign_in(page, "auditor")
    page.goto("/users")
    expect(rows(page)).to_have_count(26)  # 25 profiles and the "load more" row
    page.get_by_role("link", name="Load more").click()
    expect(rows(page)).to_have_count(30)
    expect(page.get_by_role("link", name="Load more")).to_have_count(0)
    expect(page.locator("#result-count")).to_have_text("5 more profiles shown.")
    expect(rows(page).last.locator(".relative-time")).to_have_count(1)
    expect(rows(page).nth(25).get_by_role("link", name="Person 25")).to_be_focused()


def test_profile_page_history_and_older_entries(page: Page, sign_in, make_user, cli):
    user_id = make_user("Ada", "ada@example.com")
    with cli():
        for number in range(55):
            user_service.update_user(user_id, {"name": f"Ada {number}"}, reason=f"step {number}")
    sign_in(page, "auditor")
    page.goto(f"/users/{user_id}")
    entries = page.locator(".history-entry")
    expect(entries).to_have_count(50)
    expect(entries.first).to_contain_text("step 54")
    expect(page.get_by_role("link", name="Edit")).to_have_count(0)
    page.get_by_role("link", name="Older entries").click()
    expect(entries).to_have_count(56)
    expect(entries.last.locator(".op")).to_have_text("create")
    expect(page.get_by_role("link", name="Older entries")).to_have_count(0)


def test_the_first_profile_replaces_the_empty_state(page: Page, sign_in):
    sign_in(page, "support")
    page.goto("/users")
    expect(page.get_by_text("No profiles yet.")).to_be_visible()
    page.get_by_role("link", name="New profile").click()
    page.locator("#new-name").fill("Ada")
    page.locator("#new-email").fill("ada@example.com")
    page.get_by_role("button", name="Create profile").click()
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_contain_text("ada@example.com")
    expect(page.get_by_text("No profiles yet.")).to_be_hidden()


def test_show_deleted_toggle_updates_the_list_and_the_url(page: Page, sign_in, make_user, cli):
    make_user("Ada Lovelace", "ada@example.com")
    gone = make_user("Bob Gone", "bob@example.com")
    with cli():
        user_service.delete_user(gone)
    sign_in(page, "auditor")
    page.goto("/users")
    expect(rows(page)).to_have_count(1)
    page.get_by_label("Show deleted").check()
    expect(rows(page)).to_have_count(2)
    expect(page).to_have_url(re.compile(r"deleted=1"))
    expect(page.locator(f"#user-{gone}")).to_contain_text("Deleted")
    # Auditors read; they get no buttons to change anything.
    expect(page.get_by_role("button", name=re.compile("Restore"))).to_have_count(0)
