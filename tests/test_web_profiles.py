"""Profile pages for support staff: list and search, inline create and edit,
stale edits, soft delete and restore, a profile's history, and who may do what."""

from __future__ import annotations

import html
import re
from itertools import product

import pytest

from tests.support.pages import HTMX, form_token, htmx_post, page_token, plain_post, text_of
from webapp.services import users as user_service


@pytest.fixture
def support(signed_in):
    return signed_in("support", "sam")


def post_edit(browser, user_id, post=htmx_post, **fields):
    """Submit the edit form of profile ``user_id`` as htmx (or ``post``) sends it."""
    return post(browser, f"/users/{user_id}/edit", fields)


def version_of(database, user_id):
    return database.user(user_id)["version"]


# --- who may see and do what ------------------------------------------------

EVERYONE = {"admin", "support", "auditor"}
WRITERS = {"admin", "support"}
PAGES = [
    ("/users", EVERYONE),
    ("/users/{id}", EVERYONE),
    ("/users/new", WRITERS),
    ("/users/{id}/edit", WRITERS),
    ("/users/{id}/delete", WRITERS),
    ("/users/{id}/restore", WRITERS),
    ("/users/{id}/erase", {"admin"}),
]
ROLES = ["admin", "support", "auditor", None]


def role_and_path(value: object) -> str:
    """A test id: the role, or the path of a page or action."""
    return value[0] if isinstance(value, tuple) else str(value)


ACTIONS = [
    ("/users/new", {"name": "Newbie", "email": "newbie@example.com"}),
    ("/users/{id}/edit", {"name": "Renamed", "email": "ada@example.com", "expected_version": "1"}),
    ("/users/{id}/delete", {"expected_version": "1"}),
]


@pytest.mark.parametrize(("role", "page"), list(product(ROLES, PAGES)), ids=role_and_path)
def test_each_role_on_each_page(signed_in, make_user, database, role, page):
    user_id = make_user("Ada", "ada@example.com")
    path, allowed = page
    browser = signed_in(role)
    response = browser.get(path.format(id=user_id))
    if role is None:
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login?next=")
    elif role in allowed:
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
    else:
        assert response.status_code == 403
        [event] = database.rows("SELECT * FROM security_events WHERE event = 'forbidden'")
        assert event["details"]["path"] == path.format(id=user_id)


@pytest.mark.parametrize(("role", "action"), list(product(ROLES, ACTIONS)), ids=role_and_path)
def test_each_role_on_each_action(signed_in, make_user, database, role, action):
    user_id = make_user("Ada", "ada@example.com")
    path, data = action
    browser = signed_in(role)
    token = page_token(browser) if role else form_token(browser)
    before = database.fingerprint()
    response = browser.post(path.format(id=user_id), data={"csrf_token": token, **data})
    if role in WRITERS:
        assert response.status_code == 302
        assert database.fingerprint() != before
    else:
        assert response.status_code == (403 if role else 302)
        assert database.fingerprint() == before


def test_restore_needs_write_permission(cli, signed_in, make_user, database, app):
    user_id = make_user("Ada", "ada@example.com")
    with cli():
        user_service.delete_user(user_id)
    auditor = signed_in("auditor")
    before = database.fingerprint()
    response = plain_post(auditor, f"/users/{user_id}/restore", {"expected_version": "2"})
    assert response.status_code == 403
    assert database.fingerprint() == before


def test_auditors_see_no_edit_buttons(signed_in, make_user):
    user_id = make_user("Ada", "ada@example.com")
    auditor = signed_in("auditor")
    for path in ("/users", f"/users/{user_id}"):
        page = auditor.get(path).get_data(as_text=True)
        assert "/edit" not in page
        assert "/delete" not in page
        assert "New profile" not in page
    writer = signed_in("support")
    page = writer.get("/users").get_data(as_text=True)
    assert f"/users/{user_id}/edit" in page
    assert "New profile" in page


# --- the list ---------------------------------------------------------------------


def test_search_matches_name_or_email(support, make_user):
    make_user("Ada Lovelace", "ada@example.com")
    make_user("Grace Hopper", "grace@navy.example")
    make_user("Alan Turing", "alan@example.org")
    page = text_of(support.get("/users?q=navy"))
    assert "Grace Hopper" in page
    assert "Ada Lovelace" not in page
    page = text_of(support.get("/users?q=LOVE"))
    assert "Ada Lovelace" in page
    assert "Grace Hopper" not in page
    page = text_of(support.get("/users?q=%25"))
    assert "Nothing matches “%”" in page


def test_empty_states_differ(support, make_user):
    assert "No profiles yet." in text_of(support.get("/users"))
    make_user("Ada", "ada@example.com")
    page = text_of(support.get("/users?q=zzz"))
    assert "Nothing matches “zzz”" in page
    assert "No profiles yet." not in page


def test_deleted_profiles_only_when_asked(cli, support, make_user, app):
    make_user("Ada", "ada@example.com")
    gone = make_user("Bob Gone", "bob@example.com")
    with cli():
        user_service.delete_user(gone)
    assert "Bob Gone" not in text_of(support.get("/users"))
    page = text_of(support.get("/users?deleted=1"))
    assert "Bob Gone" in page
    assert "Deleted" in page
    assert 'name="deleted" value="1" checked' in page


def test_load_more_pages_with_a_cursor(support, make_user):
    for number in range(30):
        make_user(f"Person {number:02}", f"p{number:02}@example.com")
    first = text_of(support.get("/users?q=person"))
    assert "Person 00" in first
    assert "Person 24" in first
    assert "Person 25" not in first
    next_url = re.search(r'href="(/users\?[^"]*cursor=[^"]+)" rel="next"', first).group(1)
    assert "q=person" in next_url
    # Plain link: a whole page of the later profiles.
    plain = support.get(next_url)
    assert "<html" in plain.get_data(as_text=True)
    assert "Person 25" in text_of(plain)
    assert "Person 00" not in text_of(plain)
    # htmx: only the rows to append, and no further "load more".
    more = support.get(next_url, headers=HTMX)
    body = text_of(more)
    assert "<html" not in body
    assert body.lstrip().startswith("<tr")
    assert "Person 29" in body
    assert "Person 24" not in body
    assert "Load more" not in body
    assert '<tr id="load-more" hx-swap-oob="delete">' in body
    assert "5 more profiles shown." in body


def test_a_damaged_cursor_is_a_400(support):
    assert support.get("/users?cursor=nonsense").status_code == 400


def test_a_too_long_search_is_refused_in_place(support):
    response = support.get("/users?q=" + "x" * 300, headers=HTMX)
    assert response.status_code == 400
    assert "at most 255 characters" in text_of(response)


def test_htmx_gets_the_results_fragment_and_history_restore_the_page(support, make_user):
    make_user("Ada", "ada@example.com")
    fragment = support.get("/users?q=ada", headers=HTMX)
    body = fragment.get_data(as_text=True)
    assert "<html" not in body
    assert 'id="results"' in body
    assert 'hx-swap-oob="true"' in body  # the announced count
    assert "1 profile matching" in text_of(fragment)
    assert "HX-Request" in fragment.headers["Vary"]
    restore = support.get("/users?q=ada", headers={**HTMX, "HX-History-Restore-Request": "true"})
    assert "<html" in restore.get_data(as_text=True)
    assert "HX-Request" in restore.headers["Vary"]
    page = support.get("/users?q=ada")
    assert "<html" in page.get_data(as_text=True)
    assert "HX-Request" in page.headers["Vary"]


def test_the_search_field_is_wired_for_htmx(support):
    page = support.get("/users").get_data(as_text=True)
    assert "data-search" in page
    assert 'hx-trigger="input changed delay:300ms, search"' in page
    assert 'hx-push-url="true"' in page
    assert 'aria-live="polite"' in page


def test_user_data_is_escaped(support, make_user):
    user_id = make_user("<script>alert(1)</script>", "x@example.com")
    for path in ("/users", f"/users/{user_id}", f"/users/{user_id}/edit"):
        body = support.get(path).get_data(as_text=True)
        assert "<script>alert(1)</script>" not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


# --- create ----------------------------------------------------------------------


def test_create_inline_returns_the_new_row(support, database):
    form = support.get("/users/new", headers=HTMX)
    assert form.get_data(as_text=True).lstrip().startswith("<tr")
    assert 'hx-post="/users/new"' in form.get_data(as_text=True)
    response = htmx_post(
        support,
        "/users/new",
        {"name": "Ada", "email": "ada@example.com", "reason": "ticket 42"},
    )
    assert response.status_code == 201
    body = response.get_data(as_text=True)
    [user] = database.rows("SELECT * FROM users")
    assert body.lstrip().startswith(f'<tr id="user-{user["id"]}"')
    assert "<html" not in body
    [entry] = database.audit()
    assert entry["operation"] == "create"
    assert entry["actor_label"] == "sam"
    assert entry["channel"] == "web"
    assert entry["reason"] == "ticket 42"


def test_create_without_javascript_redirects_to_the_profile(support, database):
    assert "<html" in support.get("/users/new").get_data(as_text=True)
    response = plain_post(support, "/users/new", {"name": "Ada", "email": "ada@example.com"})
    assert response.status_code == 302
    [user] = database.rows("SELECT * FROM users")
    assert response.headers["Location"] == f"/users/{user['id']}"
    assert "Profile of Ada created." in text_of(support.get(response.headers["Location"]))
    [entry] = database.audit()
    assert entry["channel"] == "web"
    assert entry["reason"] is None


@pytest.mark.parametrize("post", [htmx_post, plain_post], ids=["htmx", "plain"])
def test_field_errors_are_shown_next_to_the_fields(support, database, post):
    before = database.fingerprint()
    response = post(support, "/users/new", {"name": "  ", "email": "not-an-email"})
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert 'id="new-name" ' in body
    name_input = re.search(r'<input[^>]*id="new-name"[^>]*>', body).group(0)
    assert 'aria-invalid="true"' in name_input
    assert 'aria-describedby="new-name-errors"' in name_input
    assert 'id="new-name-errors"' in body
    assert "must not be blank" in body
    assert 'id="new-email-errors"' in body
    assert "is not a valid email address" in body
    assert ("<html" in body) is (post is plain_post)
    assert database.fingerprint() == before


@pytest.mark.parametrize("post", [htmx_post, plain_post], ids=["htmx", "plain"])
def test_a_duplicate_email_is_a_409_in_place(support, make_user, database, post):
    holder = make_user("Ada <Lovelace>", "ada@example.com")
    before = database.fingerprint()
    response = post(support, "/users/new", {"name": "Other", "email": "ADA@example.com"})
    assert response.status_code == 409
    body = text_of(response)
    # The message names the profile that has the email, and leads to it.
    assert f"is already used by the active profile Ada <Lovelace> (#{holder})" in re.sub(
        r"<a [^>]*>|</a>", "", body
    )
    assert f'<a href="/users/{holder}">Ada &lt;Lovelace&gt;</a>' in response.get_data(as_text=True)
    assert 'id="new-email-errors"' in body
    assert database.fingerprint() == before


# --- edit ------------------------------------------------------------------------

#: The edit form of Ada's profile (version 1) as she sends it after marrying.
ADA_MARRIES = {
    "name": "Ada King",
    "email": "ada@example.com",
    "expected_version": "1",
    "reason": "married",
}


def test_edit_inline_replaces_the_form_with_the_saved_row(support, make_user, database):
    user_id = make_user("Ada", "ada@example.com")
    form = support.get(f"/users/{user_id}/edit", headers=HTMX).get_data(as_text=True)
    assert form.lstrip().startswith(f'<tr id="user-{user_id}"')
    assert 'name="expected_version" value="1"' in form
    response = post_edit(support, user_id, **ADA_MARRIES)
    assert response.status_code == 200
    body = text_of(response)
    assert body.lstrip().startswith(f'<tr id="user-{user_id}"')
    assert "Ada King" in body
    assert 'name="name"' not in body  # the row, not the form
    assert response.headers["HX-Trigger"] == '{"announce": "Saved"}'
    assert database.user(user_id)["version"] == 2
    entry = database.audit(user_id)[-1]
    assert entry["operation"] == "update"
    assert entry["changed_fields"] == ["name"]
    assert (entry["actor_label"], entry["channel"], entry["reason"]) == ("sam", "web", "married")


def test_edit_without_javascript(support, make_user, database):
    user_id = make_user("Ada", "ada@example.com")
    assert "<html" in support.get(f"/users/{user_id}/edit").get_data(as_text=True)
    new_email = {"name": "Ada", "email": "ada@lovelace.example", "expected_version": "1"}
    response = post_edit(support, user_id, post=plain_post, **new_email)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/users/{user_id}"
    assert database.user(user_id)["email"] == "ada@lovelace.example"


def test_cancel_puts_the_row_back(support, make_user):
    user_id = make_user("Ada", "ada@example.com")
    row = support.get(f"/users/{user_id}/row", headers=HTMX)
    assert row.get_data(as_text=True).lstrip().startswith(f'<tr id="user-{user_id}"')
    assert support.get(f"/users/{user_id}/row").status_code == 302


def test_edit_errors_change_nothing(support, make_user, database):
    user_id = make_user("Ada", "ada@example.com")
    make_user("Bob", "bob@example.com")
    before = database.fingerprint()
    bad = post_edit(support, user_id, name="", email="ada@example.com", expected_version="1")
    assert bad.status_code == 400
    assert f'id="edit-{user_id}-name-errors"' in bad.get_data(as_text=True)
    taken = post_edit(support, user_id, name="Ada", email="bob@example.com", expected_version="1")
    assert taken.status_code == 409
    assert "is already used by the active profile" in text_of(taken)
    no_version = post_edit(support, user_id, name="Ada", email="ada@example.com")
    assert no_version.status_code == 400
    assert database.fingerprint() == before


@pytest.mark.parametrize("post", [htmx_post, plain_post], ids=["htmx", "plain"])
def test_a_stale_edit_is_refused_and_shows_both_values(
    cli, support, make_user, database, app, post
):
    user_id = make_user("Ada", "ada@example.com")
    with cli():
        user_service.update_user(user_id, {"name": "Ada (their edit)"}, expected_version=1)
    before = database.fingerprint()
    mine = {"name": "Ada (my edit)", "email": "ada@example.com", "expected_version": "1"}
    response = post_edit(support, user_id, post=post, **mine)
    assert response.status_code == 409
    body = text_of(response)
    assert "Someone else saved this profile" in body
    assert "Ada (my edit)" in body
    assert "Ada (their edit)" in body
    assert "reload the current data" in body
    # Saving again is a deliberate overwrite at the version just shown.
    assert 'name="expected_version" value="2"' in body
    assert database.fingerprint() == before
    assert database.user(user_id)["name"] == "Ada (their edit)"


# --- delete and restore ----------------------------------------------------------


def test_delete_and_restore_inline(support, make_user, database):
    user_id = make_user("Ada", "ada@example.com")
    page = support.get("/users").get_data(as_text=True)
    assert f'hx-get="/users/{user_id}/delete"' in page
    # Delete asks first, in the row, for a reason, as editing does.
    question = support.get(f"/users/{user_id}/delete", headers=HTMX)
    body = text_of(question)
    assert body.lstrip().startswith(f'<tr id="user-{user_id}" class="form-row"')
    assert "Delete the profile of <bdi>Ada</bdi>?" in body
    assert 'name="reason"' in body
    assert f'hx-post="/users/{user_id}/delete"' in body
    assert database.user(user_id)["deleted_at"] is None

    deleted = htmx_post(
        support, f"/users/{user_id}/delete", {"expected_version": "1", "reason": "left us"}
    )
    assert deleted.status_code == 200
    assert deleted.headers["HX-Trigger"] == '{"announce": "Deleted"}'
    body = text_of(deleted)
    assert body.lstrip().startswith(f'<tr id="user-{user_id}" class="inactive"')
    assert "Deleted" in body
    assert f'hx-get="/users/{user_id}/restore"' in body
    assert database.user(user_id)["deleted_at"] is not None

    question = text_of(support.get(f"/users/{user_id}/restore", headers=HTMX))
    assert "Restore the profile of <bdi>Ada</bdi>?" in question
    assert 'name="reason"' in question
    restored = htmx_post(
        support, f"/users/{user_id}/restore", {"expected_version": "2", "reason": "came back"}
    )
    assert restored.status_code == 200
    assert restored.headers["HX-Trigger"] == '{"announce": "Restored"}'
    assert "Restore" not in text_of(restored)
    assert database.user(user_id)["deleted_at"] is None
    entries = database.audit(user_id)[1:]
    assert [(e["operation"], e["channel"], e["actor_label"], e["reason"]) for e in entries] == [
        ("delete", "web", "sam", "left us"),
        ("restore", "web", "sam", "came back"),
    ]


def test_restore_without_javascript_asks_for_a_reason(cli, support, make_user, database):
    user_id = make_user("Ada", "ada@example.com")
    with cli():
        user_service.delete_user(user_id)
    detail = support.get(f"/users/{user_id}").get_data(as_text=True)
    assert f'href="/users/{user_id}/restore"' in detail
    page = text_of(support.get(f"/users/{user_id}/restore"))
    assert "Restore this profile?" in page
    assert f'action="/users/{user_id}/restore"' in page
    assert 'name="reason"' in page
    response = plain_post(
        support, f"/users/{user_id}/restore", {"expected_version": "2", "reason": "back"}
    )
    assert response.status_code == 302
    assert database.audit(user_id)[-1]["reason"] == "back"


def test_a_refused_reason_asks_again_with_what_was_typed(support, make_user, database):
    user_id = make_user("Ada", "ada@example.com")
    before = database.fingerprint()
    response = htmx_post(
        support, f"/users/{user_id}/delete", {"expected_version": "1", "reason": "x" * 5000}
    )
    assert response.status_code == 400
    body = text_of(response)
    assert body.lstrip().startswith(f'<tr id="user-{user_id}" class="form-row"')
    assert "x" * 5000 + "</textarea>" in body
    assert database.fingerprint() == before


def test_delete_and_restore_without_javascript(support, make_user, database):
    user_id = make_user("Ada", "ada@example.com")
    confirm = support.get(f"/users/{user_id}/delete")
    assert "Delete this profile?" in text_of(confirm)
    response = plain_post(
        support, f"/users/{user_id}/delete", {"expected_version": "1", "reason": "left"}
    )
    assert response.status_code == 302
    page = text_of(support.get(f"/users/{user_id}"))
    assert "This profile is deleted" in page
    assert database.audit(user_id)[-1]["reason"] == "left"
    response = plain_post(support, f"/users/{user_id}/restore", {"expected_version": "2"})
    assert response.status_code == 302
    assert database.user(user_id)["deleted_at"] is None


@pytest.mark.parametrize("post", [htmx_post, plain_post], ids=["htmx", "plain"])
def test_restore_is_refused_when_the_email_is_taken(cli, support, make_user, database, app, post):
    user_id = make_user("Ada", "ada@example.com")
    with cli():
        user_service.delete_user(user_id)
    holder = make_user("Ada Again", "ada@example.com")
    before = database.fingerprint()
    response = post(support, f"/users/{user_id}/restore", {"expected_version": "2"})
    assert response.status_code == 409
    body = text_of(response)
    assert (
        "Not restored: ada@example.com is now used by another active profile: "
        f"Ada Again (#{holder}). Change that profile's email, or delete it, then restore this one."
    ) in re.sub(r"<a [^>]*>|</a>|<bdi>|</bdi>", "", body)
    assert f'<a href="/users/{holder}"><bdi>Ada Again</bdi></a>' in body
    assert ("<html" in response.get_data(as_text=True)) is (post is plain_post)
    assert database.fingerprint() == before


def test_a_stale_delete_changes_nothing(support, make_user, database):
    user_id = make_user("Ada", "ada@example.com")
    before = database.fingerprint()
    response = htmx_post(support, f"/users/{user_id}/delete", {"expected_version": "7"})
    assert response.status_code == 409
    assert (
        "Not deleted: someone changed this profile after you opened the page. "
        "It is shown as it is now; delete it again if you still mean to."
    ) in text_of(response)
    assert database.fingerprint() == before


def test_an_unknown_profile_is_404(support):
    assert support.get("/users/999").status_code == 404
    assert support.get("/users/999/edit").status_code == 404
    assert plain_post(support, "/users/999/delete", {"expected_version": "1"}).status_code == 404


# --- the profile page ---------------------------------------------------------


def test_the_profile_page_shows_its_history_newest_first(support, make_user, app, database):
    user_id = make_user("Ada", "ada@example.com")
    post_edit(support, user_id, **ADA_MARRIES)
    htmx_post(support, f"/users/{user_id}/delete", {"expected_version": "2"})
    page = support.get(f"/users/{user_id}")
    body = page.get_data(as_text=True)
    text = text_of(page)
    assert "This profile is deleted" in text
    assert list(re.findall(r'class="op op-(\w+)"', body))[-3:] == [
        "delete",
        "update",
        "create",
    ]
    entries = database.audit(user_id)
    for entry in entries:
        stamp = entry["timestamp"].isoformat().replace("+00:00", "Z")
        readable = entry["timestamp"].strftime("%Y-%m-%d %H:%M UTC")
        assert f'<time datetime="{stamp}" title="{stamp}" data-relative>{readable}</time>' in body
    assert "married" in text
    assert "service-admin" in text  # the creator, from the command line
    assert '<tr class="diff-changed" data-key="name">' in body
    # Who changed each field last: the name by sam, the email at creation.
    last = body.split('class="records last-changes"')[1].split("</table>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", last.split("<tbody>")[1], re.S)
    assert "sam" in rows[0]
    assert "update" in rows[0]
    assert "service-admin" in rows[1]
    assert "create" in rows[1]
    assert "sam" in rows[2]
    assert "delete" in rows[2]


def test_history_pages_with_older_entries(cli, support, make_user, app):
    user_id = make_user("Ada", "ada@example.com")
    with cli():
        for number in range(55):
            user_service.update_user(user_id, {"name": f"Ada {number}"})
    page = support.get(f"/users/{user_id}").get_data(as_text=True)
    older = re.search(r'href="(/users/\d+\?before=[^"]+)" rel="next"', page).group(1)
    fragment = support.get(html.unescape(older), headers=HTMX).get_data(as_text=True)
    assert "<html" not in fragment
    assert fragment.lstrip().startswith("<li")
    # Focus moves to the first of the older entries (htmx focuses [autofocus]).
    assert fragment.count("autofocus") == 1
    assert re.match(
        r'\s*<li class="history-entry" id="entry-\d+" tabindex="-1" autofocus>', fragment
    )
    assert "autofocus" not in page
    assert 'class="op op-create"' in fragment
    assert '<li id="history-more" hx-swap-oob="delete">' in fragment
    assert 'id="history-more" class' not in fragment  # the last page


def test_after_a_stale_edit_saving_again_keeps_their_other_changes(
    cli, support, make_user, database
):
    user_id = make_user("Ada", "ada@example.com")
    with cli():
        user_service.update_user(user_id, {"email": "ada@theirs.example"}, expected_version=1)
    stale = post_edit(
        support, user_id, name="Ada King", email="ada@example.com", expected_version="1"
    )
    assert stale.status_code == 409
    body = stale.get_data(as_text=True)
    # The email they changed is marked; the form takes it, since it was not edited here.
    assert re.search(r'<tr class="changed">\s*<th scope="row">Email', body)
    assert not re.search(r'<tr class="changed">\s*<th scope="row">Name', body)
    assert re.search(rf'<input[^>]*id="edit-{user_id}-email"[^>]*value="ada@theirs.example"', body)
    assert re.search(rf'<input[^>]*id="edit-{user_id}-name"[^>]*value="Ada King"', body)
    again = post_edit(
        support, user_id, name="Ada King", email="ada@theirs.example", expected_version="2"
    )
    assert again.status_code == 200
    saved = database.user(user_id)
    assert (saved["name"], saved["email"]) == ("Ada King", "ada@theirs.example")


def test_a_stale_edit_of_a_profile_deleted_meanwhile_says_so(cli, support, make_user, database):
    user_id = make_user("Ada", "ada@example.com")
    with cli():
        user_service.delete_user(user_id)
    before = database.fingerprint()
    response = post_edit(
        support, user_id, name="Ada King", email="ada@example.com", expected_version="1"
    )
    assert response.status_code == 409
    assert "The other change deleted this profile" in text_of(response)
    assert database.fingerprint() == before
