"""Dashboard sign-in: the form, the session cookie, timeouts, rate limits and the
security events every outcome leaves behind."""

from __future__ import annotations

import html
import logging
import re
import threading
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import text

from tests.support.database import end_every_session
from tests.support.pages import form_token, page_token, post_sign_in
from tests.support.staff import PASSWORD
from webapp.audit.context import Actor, Origin, acting_as
from webapp.services import staff as staff_service
from webapp.services.sign_in_throttle import account_delay
from webapp.timestamps import utcnow

PAGE_ALERT = re.compile(r'<p class="alert alert-error" role="alert">([^<]*)</p>')
GENERIC_FAILURE = "Unknown username or wrong password."


def from_address(address):
    return {"environ_base": {"REMOTE_ADDR": address}}


def alert_text(response):
    found = PAGE_ALERT.search(response.get_data(as_text=True))
    return html.unescape(found.group(1)) if found else None


@pytest.fixture
def browser(app):
    return app.test_client()


@pytest.fixture
def as_cli(app):
    """Call services directly, as an admin at the command line would."""

    def run(service, *args):
        with app.app_context(), acting_as(Actor(None, "ops"), Origin("cli")):
            return service(*args)

    return run


# --- signing in -------------------------------------------------------------


def test_sign_in_starts_a_session_and_goes_home(staff_factory, browser, database):
    ada = staff_factory.account("support", "ada")
    assert browser.get("/").status_code == 302

    response = post_sign_in(browser, "ada")
    assert response.status_code == 302
    # Support staff start where they work: the profile search.
    assert response.headers["Location"] == "/users"
    home = browser.get("/")
    assert home.status_code == 200
    text = home.get_data(as_text=True)
    assert "Welcome, ada" in text
    assert ">support</span>" in text

    [event] = [row for row in database.security_events() if row["event"] == "login_succeeded"]
    assert (event["staff_id"], event["username"]) == (ada.id, "ada")
    assert event["remote_addr"] == "127.0.0.1"
    assert event["request_id"]
    assert database.scalar("SELECT last_login_at FROM staff WHERE id = :id", id=ada.id)


def test_session_cookie_flags(staff_factory, browser):
    staff_factory.account("support", "ada")
    response = post_sign_in(browser, "ada")
    [cookie] = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert "httponly" in flags
    assert "samesite=lax" in flags
    assert "secure" not in flags


def test_session_cookie_is_secure_over_https(staff_factory, browser):
    staff_factory.account("support", "ada")
    https = {"base_url": "https://localhost"}
    response = post_sign_in(browser, "ada", headers={"Referer": "https://localhost/login"}, **https)
    assert response.status_code == 302
    [cookie] = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert "secure" in {part.strip().lower() for part in cookie.split(";")[1:]}
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_sign_in_rotates_the_session(staff_factory, browser):
    staff_factory.account("support", "ada")
    old_token = form_token(browser)
    with browser.session_transaction() as session:
        session["planted"] = "by someone else"
    before = browser.get_cookie("session").value

    response = browser.post(
        "/login", data={"csrf_token": old_token, "username": "ada", "password": PASSWORD}
    )
    assert response.status_code == 302
    assert browser.get_cookie("session").value != before
    with browser.session_transaction() as session:
        assert "planted" not in session
    # The CSRF token of the anonymous session is dead too.
    refused = browser.post("/logout", data={"csrf_token": old_token})
    assert refused.status_code == 400
    assert browser.get("/").status_code == 200


def test_wrong_password_and_unknown_user_look_the_same(staff_factory, browser, database):
    staff_factory.account("support", "ada")
    wrong_password = post_sign_in(browser, "ada", "not the password at all")
    unknown_user = post_sign_in(browser, "nobody", "not the password at all")

    assert wrong_password.status_code == unknown_user.status_code == 401
    assert alert_text(wrong_password) == alert_text(unknown_user) == GENERIC_FAILURE
    assert browser.get("/").status_code == 302
    reasons = [row["details"]["reason"] for row in database.security_events()]
    assert reasons == ["wrong password", "unknown username"]


def test_a_deactivated_account_cannot_sign_in(staff_factory, browser, database, as_cli):
    ada = staff_factory.account("support", "ada")
    as_cli(staff_service.deactivate, ada.id)

    response = post_sign_in(browser, "ada")
    assert response.status_code == 401
    assert alert_text(response) == GENERIC_FAILURE
    assert browser.get("/").status_code == 302
    [failed] = [row for row in database.security_events() if row["event"] == "login_failed"]
    assert failed["details"] == {"reason": "account deactivated"}


def test_an_empty_form_is_refused_in_place(browser, database):
    response = browser.post(
        "/login", data={"csrf_token": form_token(browser), "username": "", "password": ""}
    )
    assert response.status_code == 400
    assert "This field is required." in response.get_data(as_text=True)
    assert database.security_event_names() == []


def test_signing_in_returns_to_the_page_asked_for(staff_factory, browser):
    staff_factory.account("auditor", "ada")
    bounced = browser.get("/security-events?limit=5")
    assert bounced.status_code == 302
    assert bounced.headers["Location"].startswith("/login?next=")

    login_page = browser.get(bounced.headers["Location"]).get_data(as_text=True)
    next_value = html.unescape(
        re.search(r'name="next" type="hidden" value="([^"]*)"', login_page)[1]
    )
    assert next_value == "/security-events?limit=5"
    response = post_sign_in(browser, "ada", next_path=next_value)
    assert response.headers["Location"] == "/security-events?limit=5"


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "//evil.example/path",
        "https://evil.example",
        "http://evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "https:evil.example",
        "javascript:alert(1)",
        "/\r\nLocation: https://evil.example",
        "evil.example",
        "",
    ],
)
def test_next_never_leaves_the_site(staff_factory, browser, target):
    staff_factory.account("support", "ada")
    response = post_sign_in(browser, "ada", next_path=target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/users"


def test_next_in_the_query_string_is_checked_too(staff_factory, browser):
    staff_factory.account("support", "ada")
    token = form_token(browser)
    response = browser.post(
        "/login?next=//evil.example",
        data={"csrf_token": token, "username": "ada", "password": PASSWORD},
    )
    assert response.headers["Location"] == "/users"


def test_the_sign_in_page_sends_a_signed_in_user_home(staff_factory, browser):
    staff_factory.account("support", "ada")
    post_sign_in(browser, "ada")
    response = browser.get("/login?next=https://evil.example")
    assert response.status_code == 302
    assert response.headers["Location"] == "/users"


# --- signing out and losing the session --------------------------------------


def test_logout_ends_the_session(staff_factory, browser, database):
    ada = staff_factory.account("support", "ada")
    post_sign_in(browser, "ada")
    token = page_token(browser)

    response = browser.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert "You have signed out." in browser.get("/login").get_data(as_text=True)
    assert browser.get("/").status_code == 302

    [logout] = [row for row in database.security_events() if row["event"] == "logout"]
    assert (logout["staff_id"], logout["username"]) == (ada.id, "ada")


def test_logout_needs_a_post_with_a_csrf_token(staff_factory, browser):
    staff_factory.account("support", "ada")
    post_sign_in(browser, "ada")
    assert browser.get("/logout").status_code == 405
    assert browser.post("/logout").status_code == 400
    assert browser.get("/").status_code == 200


def test_a_session_ends_at_once_when_the_account_is_deactivated(staff_factory, browser, as_cli):
    ada = staff_factory.account("support", "ada")
    post_sign_in(browser, "ada")
    assert browser.get("/").status_code == 200

    as_cli(staff_service.deactivate, ada.id)
    response = browser.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_a_session_ends_at_once_when_the_password_changes(staff_factory, browser, as_cli):
    ada = staff_factory.account("support", "ada")
    post_sign_in(browser, "ada")
    assert browser.get("/").status_code == 200

    as_cli(staff_service.set_password, ada.id, "a brand new passphrase")
    assert browser.get("/").status_code == 302
    assert post_sign_in(browser, "ada").status_code == 401
    assert post_sign_in(browser, "ada", "a brand new passphrase").status_code == 302
    assert browser.get("/").status_code == 200


def _session_times(database, **moments):
    """Move the times of the (only) session record, as if time had passed."""
    assignments = ", ".join(f"{column} = :{column}" for column in moments)
    with database.engine.begin() as connection:
        connection.execute(text(f"UPDATE staff_sessions SET {assignments}"), moments)


def _ago(**delta):
    return utcnow() - timedelta(**delta)


def replayed(app, cookie):
    """``/users`` asked for with a copy of a session cookie, from another client."""
    thief = app.test_client()
    thief.set_cookie("session", cookie)
    return thief.get("/users")


def test_an_idle_session_expires(app, staff_factory, browser, database):
    staff_factory.account("support", "ada")
    post_sign_in(browser, "ada")
    idle = app.config["SESSION_IDLE_MINUTES"]

    _session_times(database, last_seen_at=_ago(minutes=idle - 2))
    assert browser.get("/").status_code == 200
    # The request was seen: the idle time starts again.
    seen = database.scalar("SELECT last_seen_at FROM staff_sessions")
    assert utcnow() - seen < timedelta(minutes=1)

    _session_times(database, last_seen_at=_ago(minutes=idle + 1))
    response = browser.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert "Your session has expired" in browser.get("/login").get_data(as_text=True)
    assert browser.get("/").status_code == 302
    assert database.security_event_names().count("session_expired") == 1
    assert database.scalar("SELECT end_reason FROM staff_sessions") == "idle"


def test_a_session_expires_after_its_maximum_age_even_when_busy(
    app, staff_factory, browser, database
):
    staff_factory.account("support", "ada")
    post_sign_in(browser, "ada")
    cookie = browser.get_cookie("session").value
    max_hours = app.config["SESSION_MAX_HOURS"]
    # Busy all along: every replay of the cookie was seen, none extends the session.
    _session_times(database, created_at=_ago(hours=max_hours, minutes=-1))
    assert replayed(app, cookie).status_code == 200
    _session_times(database, created_at=_ago(hours=max_hours, minutes=1))
    for client_ in (browser, app.test_client()):
        client_.set_cookie("session", cookie)
        response = client_.get("/users")
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login")
    [expired] = [row for row in database.security_events() if row["event"] == "session_expired"]
    assert expired["details"] == {"why": "max age"}


@pytest.mark.parametrize(
    "forged",
    [
        {"session_token": "made-up"},
        {"session_token": ["not", "a", "string"]},
        {"session_token": "x" * 10_000},
        {},
    ],
)
def test_a_cookie_without_a_session_on_the_server_opens_nothing(
    app, staff_factory, browser, forged
):
    """Signed with the real key, naming a real account: without its session
    record on the server it is nobody."""
    ada = staff_factory.account("admin", "ada")
    with browser.session_transaction() as session:
        session.update({"_user_id": str(ada.id), "_fresh": True, **forged})
    response = browser.get("/users")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_a_session_token_opens_only_its_own_account(app, staff_factory, browser):
    staff_factory.account("support", "ada")
    grace = staff_factory.account("admin", "grace")
    post_sign_in(browser, "ada")
    with browser.session_transaction() as session:
        session["_user_id"] = str(grace.id)
    assert browser.get("/admin/staff").status_code == 302


# --- a copy of the cookie replayed after the session ended -------------------------


def test_a_copy_of_the_cookie_is_dead_after_sign_out(app, staff_factory, browser, database):
    staff_factory.account("admin", "ada")
    post_sign_in(browser, "ada")
    cookie = browser.get_cookie("session").value
    assert replayed(app, cookie).status_code == 200  # the copy works while the session does

    browser.post("/logout", data={"csrf_token": page_token(browser)})

    response = replayed(app, cookie)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    [ended] = database.rows("SELECT ended_at, end_reason FROM staff_sessions")
    assert ended["ended_at"] is not None
    assert ended["end_reason"] == "signed_out"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda staff_id: staff_service.set_password(staff_id, "a brand new passphrase"),
         "password_changed"),
        (lambda staff_id: staff_service.set_role(staff_id, "auditor"), "role_changed"),
        (staff_service.deactivate, "deactivated"),
    ],
)  # fmt: skip
def test_a_copy_of_the_cookie_is_dead_after_an_account_change(
    app, staff_factory, browser, database, as_cli, change, reason
):
    staff_factory.account("admin", "keeper")  # someone stays admin
    ada = staff_factory.account("admin", "ada")
    post_sign_in(browser, "ada")
    other_browser = app.test_client()
    post_sign_in(other_browser, "ada")
    cookie = browser.get_cookie("session").value

    as_cli(change, ada.id)

    for client_ in (browser, other_browser):
        assert client_.get("/users").status_code == 302
    response = replayed(app, cookie)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    reasons = database.rows("SELECT end_reason FROM staff_sessions ORDER BY id")
    assert reasons == [{"end_reason": reason}] * 2


# --- sign-in throttling -------------------------------------------------------


def throttled_why(database):
    return [
        row["details"]["why"]
        for row in database.security_events()
        if row["event"] == "login_throttled"
    ]


def test_failures_from_one_address_pause_that_address_on_that_account_only(
    app, staff_factory, browser, database
):
    staff_factory.account("support", "ada")
    staff_factory.account("support", "bob")
    limit = app.config["LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS"]
    attacker = from_address("192.0.2.7")
    for attempt in range(limit):
        assert (
            post_sign_in(browser, "ada", f"wrong password {attempt}", **attacker).status_code == 401
        )

    # From there, not even the right password is checked for that account...
    throttled = post_sign_in(browser, "ada", **attacker)
    assert throttled.status_code == 429
    window = app.config["LOGIN_FAILURE_WINDOW_SECONDS"]
    assert 0 < int(throttled.headers["Retry-After"]) <= window
    assert "Too many failed sign-in attempts. Try again in" in alert_text(throttled)
    assert browser.get("/").status_code == 302
    # ...but the address may still sign in to other accounts, and the owner,
    # elsewhere, is not affected at all.
    assert post_sign_in(app.test_client(), "bob", **attacker).status_code == 302
    assert post_sign_in(app.test_client(), "ada", **from_address("198.51.100.1")).status_code == 302
    assert database.security_event_names() == ["login_failed"] * limit + [
        "login_throttled",
        "login_succeeded",
        "login_succeeded",
    ]
    assert throttled_why(database) == ["account and address"]


def test_one_persons_typos_do_not_lock_out_their_office(app, staff_factory, database):
    """Everyone in an office shares one NAT address: one colleague mistyping
    until paused leaves everybody else signing in as usual."""
    for name in ("ada", "bob", "carol"):
        staff_factory.account("support", name)
    office = from_address("203.0.113.5")
    limit = app.config["LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS"]
    for attempt in range(limit + 1):
        post_sign_in(app.test_client(), "ada", f"typo {attempt}", **office)
    assert post_sign_in(app.test_client(), "bob", **office).status_code == 302
    assert post_sign_in(app.test_client(), "carol", **office).status_code == 302


def test_success_clears_the_failures_of_that_account_from_that_address(
    app, staff_factory, database
):
    staff_factory.account("support", "ada")
    limit = app.config["LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS"]
    home = from_address("192.0.2.44")
    for attempt in range(limit - 1):
        assert post_sign_in(app.test_client(), "ada", f"typo {attempt}", **home).status_code == 401
    assert post_sign_in(app.test_client(), "ada", **home).status_code == 302
    # The typos before the success no longer count: another full allowance.
    for attempt in range(limit - 1):
        assert post_sign_in(app.test_client(), "ada", f"again {attempt}", **home).status_code == 401
    assert post_sign_in(app.test_client(), "ada", **home).status_code == 302


def test_an_address_failing_on_many_accounts_is_paused(
    app, staff_factory, browser, database, monkeypatch
):
    monkeypatch.setitem(app.config, "LOGIN_FAILURES_PER_ADDRESS", 8)
    staff_factory.account("support", "ada")
    sprayer = from_address("192.0.2.9")
    for attempt in range(8):
        assert post_sign_in(browser, f"guess{attempt}", "whatever", **sprayer).status_code == 401

    assert post_sign_in(browser, "ada", **sprayer).status_code == 429
    assert post_sign_in(app.test_client(), "ada", **from_address("198.51.100.1")).status_code == 302
    assert throttled_why(database) == ["address"]


def test_the_account_delay_grows_with_each_failure_and_never_locks(app):
    with app.app_context():
        delays = [account_delay(failures) for failures in range(8, 19)]
    # Defaults: free up to 10 failures, then doubling, at most 60 s.
    assert delays == [0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60]
    with app.app_context():
        assert account_delay(10**6) == 60


def test_an_attack_from_many_addresses_slows_the_account_but_spares_its_owner(
    app, staff_factory, database, monkeypatch
):
    staff_factory.account("support", "ada")
    usual = from_address("10.9.9.9")
    assert post_sign_in(app.test_client(), "ada", **usual).status_code == 302  # ada's usual address
    # Twelve failures from three addresses, none of them at its own limit.
    monkeypatch.setitem(app.config, "LOGIN_ACCOUNT_DELAY_AFTER", 100)
    for attempt in range(12):
        bot = from_address(f"198.51.100.{attempt % 3 + 1}")
        assert post_sign_in(app.test_client(), "ada", f"guess {attempt}", **bot).status_code == 401
    # Past six failures each try waits 1, 2, 4... s: after twelve, 60 s (the most).
    monkeypatch.setitem(app.config, "LOGIN_ACCOUNT_DELAY_AFTER", 6)

    refused = post_sign_in(app.test_client(), "ada", **from_address("10.1.1.1"))
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert throttled_why(database) == ["account"]
    # Where the owner signed in before, the delay does not apply.
    assert post_sign_in(app.test_client(), "ada", **usual).status_code == 302
    # Anywhere else the account is slowed, never locked: once the delay has
    # passed, the right password gets in.
    with database.engine.begin() as connection:
        connection.execute(
            text("UPDATE sign_in_attempts SET attempted_at = attempted_at - interval '61 s'")
        )
    assert post_sign_in(app.test_client(), "ada", **from_address("10.1.1.2")).status_code == 302


def _login_form(client):
    """What a browser posts to /login, with the CSRF token of ``client``'s session."""
    return {"csrf_token": form_token(client), "username": "ada"}


def _count_events(database, event):
    """How many times ``event`` happened: its rows, with their counted repeats."""
    return database.scalar(
        "SELECT coalesce(sum(coalesce(r.count, 1)), 0) FROM security_events e "
        "LEFT JOIN security_event_repeats r ON r.id = e.repeat_id WHERE e.event = :event",
        event=event,
    )


def test_a_parallel_burst_gets_no_more_guesses_than_the_limit_and_spares_the_owner(
    app, staff_factory, database
):
    """48 wrong passwords at the same instant for one account from one address,
    the attack going on: only the limit's worth is checked, the right password
    from the attacking address is refused while it holds, and the owner signs
    in from elsewhere meanwhile."""
    staff_factory.account("support", "ada")
    limit = app.config["LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS"]
    attacker = {"REMOTE_ADDR": "203.0.113.66"}
    attackers = 48
    clients = [app.test_client() for _ in range(attackers)]
    forms = [_login_form(client) for client in clients]
    start = threading.Barrier(attackers + 1)
    stop = threading.Event()
    statuses: list[int] = []

    def attack(client, form, number):
        start.wait(timeout=120)
        attempt = 0
        while True:
            response = client.post(
                "/login",
                data={**form, "password": f"guess {number}.{attempt}"},
                environ_base=attacker,
            )
            statuses.append(response.status_code)
            if stop.is_set():
                return
            attempt += 1
            time.sleep(0.05)  # keep hammering, leaving the 2 cores some air

    threads = [
        threading.Thread(target=attack, args=(client, form, number), daemon=True)
        for number, (client, form) in enumerate(zip(clients, forms, strict=True))
    ]
    for thread in threads:
        thread.start()
    start.wait(timeout=120)
    try:
        deadline = time.monotonic() + 120
        while _count_events(database, "login_failed") < limit:
            assert time.monotonic() < deadline, "the burst never got its guesses checked"
            time.sleep(0.05)

        # The attack goes on. The right password from its address is refused...
        right = post_sign_in(app.test_client(), "ada", environ_base=attacker)
        assert right.status_code == 429
        # ...and the owner signs in from another address.
        owner = app.test_client()
        assert post_sign_in(owner, "ada", **from_address("198.51.100.23")).status_code == 302
        assert owner.get("/").status_code == 200
        assert all(thread.is_alive() for thread in threads)  # the attack still runs
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)

    assert len(statuses) > attackers
    assert set(statuses) <= {401, 429}, sorted(set(statuses))
    assert statuses.count(401) == limit
    assert _count_events(database, "login_failed") == limit
    assert _count_events(database, "login_throttled") == statuses.count(429) + 1
    assert _count_events(database, "login_succeeded") == 1


def test_a_parallel_spray_over_many_accounts_gets_no_more_guesses_than_the_address_limit(
    app, database, monkeypatch
):
    monkeypatch.setitem(app.config, "LOGIN_FAILURES_PER_ADDRESS", 8)
    sprayers = 40
    clients = [app.test_client() for _ in range(sprayers)]
    tokens = [form_token(client) for client in clients]
    start = threading.Barrier(sprayers)
    statuses: list[int] = []

    def spray(client, token, number):
        start.wait(timeout=120)
        form = {"csrf_token": token, "username": f"user{number}", "password": "Winter2026!"}
        response = client.post("/login", data=form, environ_base={"REMOTE_ADDR": "192.0.2.99"})
        statuses.append(response.status_code)

    threads = [
        threading.Thread(target=spray, args=(client, token, number), daemon=True)
        for number, (client, token) in enumerate(zip(clients, tokens, strict=True))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(statuses) == sprayers
    assert sorted(statuses) == [401] * 8 + [429] * (sprayers - 8)
    assert _count_events(database, "login_failed") == 8


# --- what is recorded ---------------------------------------------------------


def test_every_outcome_is_a_security_event_and_no_password_is_kept(
    app, staff_factory, browser, database, caplog, as_cli
):
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-but-secret-passphrase"
    staff_factory.account("support", "ada")
    post_sign_in(browser, "ada", wrong)
    post_sign_in(browser, "ghost", wrong)
    post_sign_in(browser, "ada")
    browser.post("/logout", data={"csrf_token": page_token(browser)})
    post_sign_in(browser, "ada")
    with database.engine.begin() as connection:
        connection.execute(
            text("UPDATE staff_sessions SET last_seen_at = :then WHERE ended_at IS NULL"),
            {"then": _ago(days=1)},
        )
    browser.get("/")

    rows = database.security_events()
    assert [row["event"] for row in rows] == [
        "login_failed",
        "login_failed",
        "login_succeeded",
        "logout",
        "login_succeeded",
        "session_expired",
    ]
    assert all(row["remote_addr"] == "127.0.0.1" and row["request_id"] for row in rows)
    for secret in (wrong, PASSWORD):
        assert secret not in repr(rows)
        assert secret not in caplog.text
    assert "security event login_failed" in caplog.text


# --- live updates (htmx) when the session is gone ------------------------------


def _next_of(location):
    parts = urlsplit(location)
    assert parts.path == "/login", location
    return parse_qs(parts.query).get("next", [None])[0]


@pytest.fixture
def ended_session(staff_factory, browser, database) -> str:
    """Ada signed in and her page's form token kept, then her session ended on the server."""
    staff_factory.account("support", "ada")
    post_sign_in(browser, "ada")
    token = page_token(browser)
    end_every_session(database.engine)
    return token


def _htmx(page_url):
    return {"HX-Request": "true", "HX-Current-URL": f"http://localhost{page_url}"}


def test_a_live_search_after_the_session_ended_sends_htmx_to_sign_in(browser, ended_session):

    response = browser.get("/users?q=ada", headers=_htmx("/users?q=ad"))
    # Not a redirect htmx would follow and paste into the results: a whole
    # page load of the sign-in form, back to the page the person is on.
    assert response.status_code == 401
    assert response.get_data() == b""
    assert _next_of(response.headers["HX-Redirect"]) == "/users?q=ad"
    login = browser.get(response.headers["HX-Redirect"]).get_data(as_text=True)
    assert "Your session has ended. Sign in again to continue where you were" in login
    # Signing in goes back there.
    back = post_sign_in(browser, "ada", next_path="/users?q=ad")
    assert back.headers["Location"] == "/users?q=ad"


def test_an_inline_save_after_the_session_ended_sends_htmx_to_sign_in(browser, ended_session):
    response = browser.post(
        "/users/1/edit",
        data={"name": "Ada", "email": "ada@example.com", "expected_version": "1"},
        headers={**_htmx("/users?deleted=1"), "X-CSRFToken": ended_session},
    )
    assert response.status_code == 401
    assert _next_of(response.headers["HX-Redirect"]) == "/users?deleted=1"


def test_an_idle_session_tells_htmx_to_sign_in(app, staff_factory, browser, database):
    staff_factory.account("support", "ada")
    post_sign_in(browser, "ada")
    _session_times(database, last_seen_at=_ago(minutes=app.config["SESSION_IDLE_MINUTES"] + 1))

    response = browser.get("/users?q=x", headers=_htmx("/users"))
    assert response.status_code == 401
    assert _next_of(response.headers["HX-Redirect"]) == "/users"
    assert "Your session has expired" in browser.get("/login").get_data(as_text=True)
    assert database.security_event_names().count("session_expired") == 1


def test_a_save_after_signing_out_in_another_tab_sends_htmx_to_sign_in(
    staff_factory, browser, database
):
    """Signing out in another tab took the form token out of the shared cookie too."""
    staff_factory.account("support", "ada")
    post_sign_in(browser, "ada")
    stale_token = page_token(browser)
    browser.post("/logout", data={"csrf_token": stale_token})

    response = browser.post(
        "/users/1/edit",
        data={"name": "Ada"},
        headers={**_htmx("/users/1"), "X-CSRFToken": stale_token},
    )
    assert response.status_code == 401
    assert _next_of(response.headers["HX-Redirect"]) == "/users/1"
    assert "csrf_failed" in database.security_event_names()


@pytest.mark.parametrize(
    "current_url",
    [
        "https://evil.example/users",
        "http://localhost//evil.example/x",
        "http://localhost/\\evil.example",
        "not a url",
        "",
    ],
)
def test_the_page_to_return_to_must_be_a_page_of_this_site(browser, ended_session, current_url):
    response = browser.get(
        "/users?q=a", headers={"HX-Request": "true", "HX-Current-URL": current_url}
    )
    assert response.status_code == 401
    assert _next_of(response.headers["HX-Redirect"]) is None


@pytest.mark.parametrize(
    ("referrer", "expected"),
    [("http://localhost/users/1/edit", "/users/1/edit"), ("https://evil.example/x", None)],
)
def test_a_plain_save_after_the_session_ended_returns_to_its_page(
    browser, ended_session, referrer, expected
):
    response = browser.post(
        "/users/1/edit",
        data={"csrf_token": ended_session, "name": "Ada"},
        headers={"Referer": referrer},
    )
    assert response.status_code == 302
    assert _next_of(response.headers["Location"]) == expected


@pytest.mark.parametrize(
    ("role", "landing"), [("support", "/users"), ("auditor", "/"), ("admin", "/")]
)
def test_each_role_lands_where_it_works(staff_factory, browser, role, landing):
    staff_factory.account(role, "ada")
    assert post_sign_in(browser, "ada").headers["Location"] == landing
