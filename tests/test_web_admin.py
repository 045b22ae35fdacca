"""Dashboard pages by role: staff accounts, API tokens, the security event log,
and CSRF protection on every form."""

from __future__ import annotations

import html
import re
from itertools import product

import pytest

from tests.support.pages import CSRF_META, form_token, page_token, sign_in, text_of
from tests.support.staff import PASSWORD
from webapp.audit.context import Actor, Origin, acting_as
from webapp.services import api_tokens
from webapp.services import staff as staff_service

SECRET_BOX = re.compile(r'id="new-token-secret"[^>]*>(pa_[A-Za-z0-9_-]+)</code>')
NEW_PASSWORD = "another long passphrase"


def accounts(database):
    """Every account, with how many of its dashboard sessions are still open."""
    return database.rows(
        "SELECT id, username, role, active, password_hash, (SELECT count(*) FROM staff_sessions s "
        "WHERE s.staff_id = staff.id AND s.ended_at IS NULL) AS open_sessions "
        "FROM staff ORDER BY id"
    )


@pytest.fixture
def admin(signed_in):
    return signed_in("admin", "root")


@pytest.fixture
def target(app, staff_factory):
    """A support account with an API token, for the admin pages to act on."""
    account = staff_factory.account("support", "target")
    secret = staff_factory.token(account, "target-script")
    inactive = staff_factory.account("auditor", "gone")
    with app.app_context(), acting_as(Actor(None, "ops"), Origin("cli")):
        [token] = api_tokens.list_tokens(account.id)
        staff_service.deactivate(inactive.id)
    return {
        "staff_id": account.id,
        "token_id": token.id,
        "secret": secret,
        "inactive_id": inactive.id,
    }


# --- who may see and do what ------------------------------------------------

EVERYONE = {"admin", "support", "auditor"}
PAGES = [
    ("/", EVERYONE),
    ("/admin/staff", {"admin"}),
    ("/admin/tokens", {"admin"}),
    ("/security-events", {"admin", "auditor"}),
    ("/admin/staff/{staff_id}/deactivate", {"admin"}),
    ("/admin/tokens/{token_id}/revoke", {"admin"}),
]
ACTIONS = [
    (
        "/admin/staff",
        {"username": "newbie", "role": "support", "password": PASSWORD, "confirm": PASSWORD},
        302,
    ),
    ("/admin/staff/{staff_id}/role", {"role": "auditor"}, 302),
    ("/admin/staff/{staff_id}/deactivate", {}, 302),
    ("/admin/staff/{inactive_id}/reactivate", {}, 302),
    (
        "/admin/staff/{staff_id}/password",
        {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        302,
    ),
    ("/admin/tokens", {"owner": "{staff_id}", "name": "new-script"}, 303),
    ("/admin/tokens/{token_id}/revoke", {}, 302),
]


@pytest.mark.parametrize(
    ("role", "page"),
    list(product(["admin", "support", "auditor", None], PAGES)),
    ids=lambda v: str(v) if not isinstance(v, tuple) else v[0],
)
def test_each_role_on_each_page(signed_in, database, target, role, page):
    template, allowed = page
    path = template.format(**target)
    browser = signed_in(role)
    response = browser.get(path)
    if role is None:
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login?next=")
    elif role in allowed:
        assert response.status_code == 200
        assert response.mimetype == "text/html"
        assert response.headers["Cache-Control"] == "no-store"
    else:
        assert response.status_code == 403
        assert "403 Forbidden" in text_of(response)
        # The page says which role is needed, and whom to ask.
        needed = "the admin role" if allowed == {"admin"} else "the admin role or the auditor role"
        assert f"This needs {needed};" in text_of(response)
        assert f"you are signed in with the {role} role" in text_of(response)
        assert "ask an admin to change your role" in text_of(response)
        [event] = database.rows("SELECT * FROM security_events WHERE event = 'forbidden'")
        assert event["details"]["path"] == path
        assert event["username"] == browser.staff.username


@pytest.mark.parametrize(
    ("role", "action"),
    list(product(["admin", "support", "auditor", None], ACTIONS)),
    ids=lambda v: str(v) if not isinstance(v, tuple) else v[0],
)
def test_each_role_on_each_action(signed_in, database, target, role, action):
    template, data, success = action
    browser = signed_in(role)
    token = page_token(browser) if role else form_token(browser)
    path = template.format(**target)
    form = {key: value.format(**target) for key, value in data.items()}
    before = [accounts(database), database.rows("SELECT * FROM api_tokens ORDER BY id")]

    response = browser.post(path, data={"csrf_token": token, **form})
    after = [accounts(database), database.rows("SELECT * FROM api_tokens ORDER BY id")]
    if role == "admin":
        assert response.status_code == success
        assert after != before
    elif role is None:
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login")
        assert after == before
    else:
        assert response.status_code == 403
        assert after == before
        assert "forbidden" in database.security_event_names()


def test_the_home_page_links_only_to_what_the_role_may_use(signed_in):
    expected = {
        "admin": {"/admin/staff", "/admin/tokens", "/security-events"},
        "auditor": {"/security-events"},
        "support": set(),
    }
    for role, links in expected.items():
        page = signed_in(role).get("/").get_data(as_text=True)
        shown = {
            path
            for path in ("/admin/staff", "/admin/tokens", "/security-events")
            if f'href="{path}"' in page
        }
        assert shown == links, role
        assert f">{role}</span>" in page


def test_every_page_carries_the_csrf_token_for_htmx(admin):
    for path in ("/", "/admin/staff", "/admin/tokens", "/security-events"):
        page = admin.get(path).get_data(as_text=True)
        token = CSRF_META.search(page).group(1)
        assert f"""hx-headers='{{"X-CSRFToken": "{token}"}}'""" in page
        assert 'action="/logout"' in page
        assert "<script>" not in page  # nothing inline: the CSP would block it


# --- staff accounts -------------------------------------------------------------


def create_staff(browser, **fields):
    data = {"username": "bob", "role": "support", "password": PASSWORD, "confirm": PASSWORD}
    data.update(fields)
    return browser.post("/admin/staff", data={"csrf_token": page_token(browser), **data})


def test_admin_creates_an_account(app, admin, database):
    response = create_staff(admin, username="bob", role="auditor")
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/staff"

    listing = text_of(admin.get("/admin/staff"))
    assert "Account bob created with the role auditor." in listing
    assert "bob" in listing
    [bob] = [row for row in accounts(database) if row["username"] == "bob"]
    assert (bob["role"], bob["active"]) == ("auditor", True)
    [created] = database.rows("SELECT * FROM security_events WHERE event = 'staff_created'")
    assert created["actor_label"] == "root"
    assert PASSWORD not in repr(created)
    sign_in(app.test_client(), "bob", PASSWORD)


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"confirm": "something else entirely"}, 400, "does not match the password"),
        ({"password": "short", "confirm": "short"}, 400, "must be 12 to 1024 characters"),
        ({"username": "no spaces allowed"}, 400, "letters, digits, dots, dashes or underscores"),
        ({"username": ""}, 400, "This field is required."),
        ({"role": "superuser"}, 400, "Not a valid choice"),
        ({"username": "ROOT"}, 409, "is already taken"),
    ],
)
def test_a_refused_account_is_explained_next_to_the_field(admin, database, fields, status, message):
    before = accounts(database)
    response = create_staff(admin, **fields)
    assert response.status_code == status
    page = text_of(response)
    assert message in page
    assert "The account was not created" in page
    assert 'class="field-errors"' in response.get_data(as_text=True)
    assert accounts(database) == before


def test_every_problem_with_a_new_account_is_shown_at_once(admin, database):
    before = accounts(database)
    response = create_staff(admin, username="two words", password="short", confirm="other")
    assert response.status_code == 400
    page = text_of(response)
    assert "letters, digits, dots, dashes or underscores" in page
    assert "must be 12 to 1024 characters" in page
    assert "does not match the password" in page
    assert accounts(database) == before


def test_admin_changes_a_role_and_ends_that_accounts_sessions(admin, database, signed_in):
    victim = signed_in("support", "target")
    response = admin.post(
        f"/admin/staff/{victim.staff.id}/role",
        data={"csrf_token": page_token(admin), "role": "auditor"},
    )
    assert response.status_code == 302
    assert "target is now auditor; its sessions have ended." in text_of(admin.get("/admin/staff"))
    [row] = [row for row in accounts(database) if row["id"] == victim.staff.id]
    assert (row["role"], row["open_sessions"]) == ("auditor", 0)
    assert victim.get("/").status_code == 302
    [event] = database.rows("SELECT * FROM security_events WHERE event = 'role_changed'")
    assert event["details"] == {"from": "support", "to": "auditor"}


def test_a_bad_role_is_shown_in_the_accounts_row(admin, database, target):
    before = accounts(database)
    response = admin.post(
        f"/admin/staff/{target['staff_id']}/role",
        data={"csrf_token": page_token(admin), "role": "owner"},
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert re.search(
        r'<details class="manage" open>\s*<summary>Manage<span class="visually-hidden"> target',
        page,
    )
    assert "Not a valid choice" in page
    assert accounts(database) == before


def test_admin_deactivates_an_account(app, admin, database, target, signed_in):
    victim = signed_in("support", "victim")
    response = admin.post(
        f"/admin/staff/{victim.staff.id}/deactivate", data={"csrf_token": page_token(admin)}
    )
    assert response.status_code == 302
    assert "victim is deactivated" in text_of(admin.get("/admin/staff"))
    assert victim.get("/").status_code == 302
    [row] = [row for row in accounts(database) if row["id"] == victim.staff.id]
    assert row["active"] is False


def test_admin_sets_a_password_and_ends_that_accounts_sessions(app, admin, signed_in):
    victim = signed_in("support", "victim")
    response = admin.post(
        f"/admin/staff/{victim.staff.id}/password",
        data={"csrf_token": page_token(admin), "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert response.status_code == 302
    assert "Password of victim changed" in text_of(admin.get("/admin/staff"))
    assert victim.get("/").status_code == 302
    sign_in(app.test_client(), "victim", NEW_PASSWORD)


def test_a_refused_password_is_shown_in_the_accounts_row(admin, database, target):
    before = accounts(database)
    response = admin.post(
        f"/admin/staff/{target['staff_id']}/password",
        data={"csrf_token": page_token(admin), "password": "tiny", "confirm": "tiny"},
    )
    assert response.status_code == 400
    assert "must be 12 to 1024 characters" in text_of(response)
    assert accounts(database) == before


def test_an_admin_changing_their_own_password_stays_signed_in(app, admin, database):
    response = admin.post(
        f"/admin/staff/{admin.staff.id}/password",
        data={"csrf_token": page_token(admin), "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert response.status_code == 302
    assert admin.get("/").status_code == 200
    sign_in(app.test_client(), "root", NEW_PASSWORD)


@pytest.mark.parametrize(("action", "data"), [("role", {"role": "support"}), ("deactivate", {})])
def test_an_admin_cannot_lock_themselves_out(admin, database, action, data):
    before = accounts(database)
    response = admin.post(
        f"/admin/staff/{admin.staff.id}/{action}", data={"csrf_token": page_token(admin), **data}
    )
    assert response.status_code == 409
    assert "ask another admin" in text_of(response)
    assert accounts(database) == before
    assert admin.get("/admin/staff").status_code == 200


@pytest.mark.parametrize("staff_id", ["999", str(2**63)])
@pytest.mark.parametrize("action", ["role", "deactivate", "password"])
def test_an_unknown_account_is_404(admin, action, staff_id):
    data = {"role": "support", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    response = admin.post(
        f"/admin/staff/{staff_id}/{action}", data={"csrf_token": page_token(admin), **data}
    )
    assert response.status_code == 404
    assert "There is no staff account" in text_of(response)


# --- API tokens -------------------------------------------------------------------


def create_token(browser, **fields):
    return browser.post("/admin/tokens", data={"csrf_token": page_token(browser), **fields})


def test_a_new_token_is_shown_once_and_works(app, admin, target, database):
    response = create_token(admin, owner=str(target["staff_id"]), name="nightly import")
    carried = app.session_interface.get_signing_serializer(app).loads(
        admin.get_cookie("session").value
    )
    # Post/redirect/get: a reload of the page showing the token creates nothing.
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/tokens"
    assert "pa_" not in response.get_data(as_text=True)
    shown = admin.get("/admin/tokens")
    assert shown.headers["Cache-Control"] == "no-store"
    page = shown.get_data(as_text=True)
    assert "Copy it now, it will not be shown again." in page
    assert 'data-copy="new-token-secret"' in page
    secret = SECRET_BOX.search(page).group(1)
    # The session cookie carried it across the redirect only sealed.
    assert "token_to_show" in carried
    assert secret not in repr(carried)
    assert secret[3:] not in repr(carried)

    listing = admin.get("/admin/tokens").get_data(as_text=True)
    assert secret not in listing
    assert "nightly import" in listing
    assert secret[:10] in listing
    assert secret not in repr(database.rows("SELECT * FROM api_tokens"))
    assert secret not in repr(database.rows("SELECT * FROM security_events"))

    api = app.test_client()
    used = api.get("/api/v1/users", headers={"Authorization": f"Bearer {secret}"})
    assert used.status_code == 200


def test_reloading_after_creating_a_token_creates_no_second_one(admin, target, database):
    create_token(admin, owner=str(target["staff_id"]), name="once")
    first = admin.get("/admin/tokens").get_data(as_text=True)
    again = admin.get("/admin/tokens").get_data(as_text=True)
    assert SECRET_BOX.search(first)
    assert "new-token-secret" not in again
    assert database.scalar("SELECT count(*) FROM api_tokens WHERE name = 'once'") == 1


def test_revoking_and_deactivating_ask_first(admin, target, database):
    tokens = admin.get("/admin/tokens").get_data(as_text=True)
    assert f'href="/admin/tokens/{target["token_id"]}/revoke"' in tokens
    question = text_of(admin.get(f"/admin/tokens/{target['token_id']}/revoke"))
    assert "Revoke the token <bdi>target-script</bdi>?" in question
    assert "Scripts that use it are refused from their next request on." in question
    staff = admin.get("/admin/staff").get_data(as_text=True)
    assert f'href="/admin/staff/{target["staff_id"]}/deactivate"' in staff
    question = text_of(admin.get(f"/admin/staff/{target['staff_id']}/deactivate"))
    assert "Deactivate <bdi>target</bdi>?" in question
    assert "An admin can reactivate it later" in question
    # Asking changed nothing.
    assert database.scalar("SELECT active FROM staff WHERE username = 'target'") is True
    assert database.scalar("SELECT revoked_at FROM api_tokens") is None


def test_a_deactivated_account_can_be_reactivated(app, admin, target, database):
    staff_id = target["staff_id"]
    admin.post(f"/admin/staff/{staff_id}/deactivate", data={"csrf_token": page_token(admin)})
    listing = admin.get("/admin/staff").get_data(as_text=True)
    assert f'action="/admin/staff/{staff_id}/reactivate"' in listing
    api = app.test_client()
    bearer = {"Authorization": f"Bearer {target['secret']}"}
    assert api.get("/api/v1/users", headers=bearer).status_code == 401

    response = admin.post(
        f"/admin/staff/{staff_id}/reactivate", data={"csrf_token": page_token(admin)}
    )
    assert response.status_code == 302
    page = text_of(admin.get("/admin/staff"))
    assert "target is active again and can sign in." in page
    assert "Its 1 API token that was not revoked work again" in page
    assert database.scalar("SELECT active FROM staff WHERE id = :id", id=staff_id) is True
    [event] = database.rows("SELECT * FROM security_events WHERE event = 'staff_reactivated'")
    assert (event["staff_id"], event["actor_label"]) == (staff_id, "root")
    sign_in(app.test_client(), "target", PASSWORD)
    assert api.get("/api/v1/users", headers=bearer).status_code == 200

    again = admin.post(
        f"/admin/staff/{staff_id}/reactivate", data={"csrf_token": page_token(admin)}
    )
    assert again.status_code == 302
    assert "target is already active." in text_of(admin.get("/admin/staff"))
    assert database.security_event_names().count("staff_reactivated") == 1


def test_a_token_made_for_another_account_records_the_admin_who_made_it(admin, target, database):
    assert create_token(admin, owner=str(target["staff_id"]), name="on behalf").status_code == 303
    [token] = database.rows("SELECT * FROM api_tokens WHERE name = 'on behalf'")
    root = database.rows("SELECT id FROM staff WHERE username = 'root'")[0]["id"]
    assert (token["staff_id"], token["created_by_id"]) == (target["staff_id"], root)
    assert token["created_by_label"] == "root"
    row = text_of(admin.get("/admin/tokens")).split(f'id="token-{token["id"]}"', 1)[1]
    assert '<td data-label="Created by">root</td>' in row.split("</tr>", 1)[0]


def test_a_token_name_the_owner_already_used_is_refused_next_to_the_field(admin, target, database):
    before = database.rows("SELECT * FROM api_tokens ORDER BY id")
    response = create_token(admin, owner=str(target["staff_id"]), name="TARGET-script")
    assert response.status_code == 409
    page = text_of(response)
    assert "target already has a token named TARGET-script" in page
    assert 'id="token-name-errors"' in response.get_data(as_text=True)
    assert database.rows("SELECT * FROM api_tokens ORDER BY id") == before


def test_a_revoked_token_stops_working(app, admin, target, database):
    api = app.test_client()
    bearer = {"Authorization": f"Bearer {target['secret']}"}
    assert api.get("/api/v1/users", headers=bearer).status_code == 200

    response = admin.post(
        f"/admin/tokens/{target['token_id']}/revoke", data={"csrf_token": page_token(admin)}
    )
    assert response.status_code == 302
    listing = text_of(admin.get("/admin/tokens"))
    assert "Token target-script" in listing
    assert ">revoked</span>" in listing
    assert api.get("/api/v1/users", headers=bearer).status_code == 401
    assert "token_revoked" in database.security_event_names()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": ""}, "This field is required."),
        ({"name": "x" * 101}, "must be 1 to 100 printable characters"),
        ({"expires_in_days": "soon"}, "must be a whole number from 1 to 3650"),
        ({"expires_in_days": "0"}, "must be a whole number from 1 to 3650"),
        ({"owner": "not a number"}, "Invalid Choice"),
        ({"owner": "999"}, "Not a valid choice"),
    ],
)
def test_a_refused_token_is_explained_next_to_the_field(admin, target, database, fields, message):
    before = database.rows("SELECT * FROM api_tokens ORDER BY id")
    data = {"owner": str(target["staff_id"]), "name": "script", **fields}
    response = create_token(admin, **data)
    assert response.status_code == 400
    assert message in text_of(response)
    assert "The token was not created" in text_of(response)
    assert "new-token-secret" not in response.get_data(as_text=True)
    assert database.rows("SELECT * FROM api_tokens ORDER BY id") == before


def test_every_problem_with_a_new_token_is_shown_at_once(admin, target):
    response = create_token(admin, owner="999", name="", expires_in_days="soon")
    assert response.status_code == 400
    page = text_of(response)
    for message in ("Not a valid choice", "This field is required.", "a whole number"):
        assert message in page


def test_a_deactivated_account_is_not_offered_as_owner(app, admin, target):
    with app.app_context(), acting_as(Actor(None, "ops"), Origin("cli")):
        staff_service.deactivate(target["staff_id"])
    page = admin.get("/admin/tokens").get_data(as_text=True)
    assert f'<option value="{target["staff_id"]}"' not in page
    assert ">account deactivated</span>" in page
    assert create_token(admin, owner=str(target["staff_id"]), name="x").status_code == 400


def test_revoking_an_unknown_token_is_404(admin):
    response = admin.post("/admin/tokens/999/revoke", data={"csrf_token": page_token(admin)})
    assert response.status_code == 404


def test_user_data_is_escaped(admin, target):
    create_token(admin, owner=str(target["staff_id"]), name="<script>alert(1)</script>")
    page = admin.get("/admin/tokens").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# --- CSRF ---------------------------------------------------------------------------


def test_a_post_without_csrf_token_is_refused_and_changes_nothing(admin, database):
    before = accounts(database)
    data = {"username": "bob", "role": "admin", "password": PASSWORD, "confirm": PASSWORD}
    plain = admin.post("/admin/staff", data=data)
    assert plain.status_code == 400
    assert "The form was stale or not sent from this site" in text_of(plain)
    # htmx would paste an error page into the spot it updates: it is told to
    # load the page it was on again instead, which then says why.
    htmx = admin.post(
        "/admin/staff",
        data=data,
        headers={"HX-Request": "true", "HX-Current-URL": "http://localhost/admin/staff?x=1"},
    )
    assert htmx.status_code == 400
    assert htmx.headers["HX-Redirect"] == "/admin/staff?x=1"
    assert htmx.get_data() == b""
    assert "open too long to send changes from" in text_of(admin.get("/admin/staff"))
    assert accounts(database) == before
    failures = database.rows("SELECT * FROM security_events WHERE event = 'csrf_failed'")
    # The same refusal from the same address and account within minutes: one
    # event, counted twice.
    assert len(failures) == 1
    assert (
        database.scalar(
            "SELECT count FROM security_event_repeats WHERE id = :id", id=failures[0]["repeat_id"]
        )
        == 2
    )
    assert failures[0]["username"] == "root"
    assert failures[0]["details"]["path"] == "/admin/staff"
    assert failures[0]["remote_addr"] == "127.0.0.1"
    assert failures[0]["request_id"] == plain.headers["X-Request-ID"]


def test_a_csrf_token_of_another_session_is_refused(admin, database, signed_in):
    other = signed_in("admin", "other")
    before = accounts(database)
    response = create_staff(admin, username="carol", csrf_token=page_token(other))
    assert response.status_code == 400
    assert accounts(database) == before
    assert "csrf_failed" in database.security_event_names()


def test_an_htmx_style_header_token_is_accepted(admin, database):
    token = page_token(admin, "/admin/staff")
    response = admin.post(
        "/admin/staff",
        data={"username": "bob", "role": "support", "password": PASSWORD, "confirm": PASSWORD},
        headers={"HX-Request": "true", "X-CSRFToken": token},
    )
    assert response.status_code == 302
    assert "bob" in [row["username"] for row in accounts(database)]
    assert "csrf_failed" not in database.security_event_names()


def test_logout_without_csrf_token_is_refused(admin):
    assert admin.post("/logout", headers={"HX-Request": "true"}).status_code == 400
    assert admin.get("/").status_code == 200


# --- security events ------------------------------------------------------------------


def test_security_events_newest_first_with_older_pages(app, signed_in, database):
    auditor = signed_in("auditor", "audrey")
    for attempt in range(3):
        auditor_less = app.test_client()
        auditor_less.post(
            "/login",
            data={
                "csrf_token": form_token(auditor_less),
                "username": f"ghost{attempt}",
                "password": "nope",
            },
        )
    # login_succeeded (audrey), then three failures: four events.
    first = auditor.get("/security-events?limit=3")
    assert first.status_code == 200
    page = listed_events(first)
    assert page.index("ghost2") < page.index("ghost1") < page.index("ghost0")
    assert "audrey" in text_of(first)  # signed in, at the top
    assert "Signed in" not in page
    older = re.search(r'href="([^"]+)" rel="next">Older events', first.get_data(as_text=True))
    second = auditor.get(html.unescape(older.group(1)))
    assert second.status_code == 200
    rest = listed_events(second)
    assert 'title="login_succeeded">Signed in<' in rest
    assert "ghost" not in rest
    assert "Older events" not in text_of(second)
    assert "Newest events" in text_of(second)


def listed_events(response) -> str:
    """The security events page's table of events, without its filter form."""
    return text_of(response).split("<tbody>", 1)[1].split("</tbody>", 1)[0]


@pytest.mark.parametrize("query", ["cursor=garbage", "cursor=" + "A" * 300, "limit=0", "limit=x"])
def test_a_bad_cursor_or_limit_is_a_400_page(signed_in, query):
    response = signed_in("auditor").get(f"/security-events?{query}")
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    expected = "link to older events is not valid" if "cursor" in query else "limit must be"
    assert expected in text_of(response)


def test_security_events_escape_what_strangers_typed(app, signed_in):
    stranger = app.test_client()
    stranger.post(
        "/login",
        data={
            "csrf_token": form_token(stranger),
            "username": "<img src=x onerror=alert(1)>",
            "password": "nope",
        },
    )
    page = signed_in("admin").get("/security-events").get_data(as_text=True)
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
