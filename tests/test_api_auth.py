"""API authentication, roles and attribution: tokens only, every endpoint checks
the role, and every audit entry says who, through what, from where."""

from __future__ import annotations

import logging
from itertools import product

import pytest
from sqlalchemy import text

from tests.support.api import PROBLEM
from tests.support.profiles import post_profile
from webapp import create_app
from webapp.audit.context import Actor, Origin, acting_as
from webapp.audit.errors import UnattributedChangeError
from webapp.extensions import db
from webapp.services import staff as staff_service
from webapp.services import users

# (method, path template, JSON body, permission-holding roles)
ENDPOINTS = [
    ("GET", "/api/v1/users", None, {"admin", "support", "auditor"}),
    ("POST", "/api/v1/users", {"name": "New", "email": "new@example.com"}, {"admin", "support"}),
    ("GET", "/api/v1/users/{id}", None, {"admin", "support", "auditor"}),
    (
        "PUT",
        "/api/v1/users/{id}",
        {"name": "Put", "email": "put@example.com"},
        {"admin", "support"},
    ),
    ("PATCH", "/api/v1/users/{id}", {"name": "Patched"}, {"admin", "support"}),
    ("DELETE", "/api/v1/users/{id}", None, {"admin", "support"}),
    ("POST", "/api/v1/users/{deleted_id}/restore", None, {"admin", "support"}),
    ("GET", "/api/v1/users/{id}/history", None, {"admin", "support", "auditor"}),
    ("POST", "/api/v1/users/{id}/erasure", {"reason": "asked"}, {"admin"}),
    ("GET", "/api/v1/users/{id}/personal-data", None, {"admin", "auditor"}),
    ("GET", "/api/v1/audit", None, {"admin", "auditor"}),
    ("GET", "/api/v1/security-events", None, {"admin", "auditor"}),
]


@pytest.fixture
def profiles(client):
    """An active and a deleted profile, made by the admin client."""
    active = post_profile(client, "Ada", "ada@example.com")
    gone = post_profile(client, "Gone", "gone@example.com")
    client.delete(f"/api/v1/users/{gone}")
    return {"id": active, "deleted_id": gone}


@pytest.mark.parametrize(
    ("role", "endpoint"),
    list(product(["admin", "support", "auditor"], ENDPOINTS)),
    ids=lambda v: v if isinstance(v, str) else f"{v[0]} {v[1]}",
)
def test_each_role_on_each_endpoint(staff_factory, database, profiles, role, endpoint):
    method, template, body, allowed = endpoint
    caller = staff_factory.client(role)
    before = database.fingerprint()

    response = caller.open(template.format(**profiles), method=method, json=body)

    if role in allowed:
        assert response.status_code < 400, response.get_json()
    else:
        assert response.status_code == 403
        assert response.mimetype == PROBLEM
        assert database.fingerprint() == before
        [event] = database.rows("SELECT * FROM security_events WHERE event = 'forbidden'")
        assert event["staff_id"] == caller.staff.id
        assert event["details"]["path"] == template.format(**profiles)


@pytest.mark.parametrize(("method", "template", "body", "_allowed"), ENDPOINTS)
def test_every_endpoint_needs_a_token(
    anonymous_client, database, profiles, method, template, body, _allowed
):
    before = database.fingerprint()
    response = anonymous_client.open(template.format(**profiles), method=method, json=body)
    assert response.status_code == 401
    assert response.mimetype == PROBLEM
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert database.fingerprint() == before


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Basic YWRtaW46cGFzc3dvcmQ=",
        "Bearer pa_wrong",
        "Bearer not-ours",
        "Token pa_x",
        "Bearer " + "x" * 5000,
    ],
)
def test_malformed_or_unknown_tokens_are_401(anonymous_client, header):
    response = anonymous_client.get("/api/v1/users", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.mimetype == PROBLEM


def test_token_lifecycle(app, staff_factory, database, engine):
    owner = staff_factory.account("support")
    secret = staff_factory.token(owner, "deploy-bot")
    api = app.test_client()
    auth = {"Authorization": f"Bearer {secret}"}

    assert api.get("/api/v1/users", headers=auth).status_code == 200
    [row] = database.rows("SELECT * FROM api_tokens")
    assert row["last_used_at"] is not None
    assert row["token_hash"] != secret
    assert secret not in str(row)

    # Expired.
    with engine.begin() as connection:
        connection.execute(text("UPDATE api_tokens SET expires_at = now() - interval '1 second'"))
    assert api.get("/api/v1/users", headers=auth).status_code == 401
    with engine.begin() as connection:
        connection.execute(text("UPDATE api_tokens SET expires_at = now() + interval '1 day'"))
    assert api.get("/api/v1/users", headers=auth).status_code == 200

    # Revoked.
    with app.app_context():
        from webapp.services.api_tokens import revoke_token

        revoke_token(row["id"])
    assert api.get("/api/v1/users", headers=auth).status_code == 401

    events = [e["event"] for e in database.rows("SELECT * FROM security_events ORDER BY id")]
    assert events.count("token_rejected") == 2
    assert "token_revoked" in events


def test_tokens_of_a_deactivated_account_stop_working(app, staff_factory):
    owner = staff_factory.account("support")
    secret = staff_factory.token(owner)
    api = app.test_client()
    with app.app_context():
        staff_service.deactivate(owner.id)
    response = api.get("/api/v1/users", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 401


def test_the_api_never_accepts_the_session_cookie(signed_in):
    browser = signed_in("admin")
    # The same cookie is a valid dashboard session...
    assert browser.get("/").status_code == 200
    # ...but never credentials for the JSON API, which skips CSRF checks.
    response = browser.post("/api/v1/users", json={"name": "Csrf", "email": "c@example.com"})
    assert response.status_code == 401


def test_api_writes_are_attributed(staff_factory, database):
    caller = staff_factory.client("support", "sam")
    response = caller.post(
        "/api/v1/users",
        json={"name": "Ada", "email": "ada@example.com", "reason": "ticket 7"},
        headers={"X-Request-ID": "req-0123456789"},
    )
    server_id = response.headers["X-Request-ID"]
    assert server_id != "req-0123456789"

    [entry] = database.audit(response.get_json()["id"])
    [token] = database.rows("SELECT id FROM api_tokens")
    assert entry["actor_id"] == caller.staff.id
    assert entry["actor_label"] == "sam"
    assert entry["channel"] == "api"
    assert entry["channel_detail"] == "tests"  # the token's name
    assert entry["token_id"] == token["id"]
    assert entry["remote_addr"] == "127.0.0.1"
    assert entry["request_id"] == server_id
    assert entry["client_request_id"] == "req-0123456789"
    assert entry["reason"] == "ticket 7"

    listed = caller.get(f"/api/v1/users/{entry['user_id']}/history").get_json()["items"][0]
    assert listed["actor"] == {
        "id": caller.staff.id,
        "label": "sam",
        "channel": "api",
        "channel_detail": "tests",
        "token": {
            "id": token["id"],
            "name": "tests",
            "created_by": {"id": None, "label": "cli:tests"},
        },
    }
    assert (listed["request_id"], listed["client_request_id"]) == (server_id, "req-0123456789")


def test_the_label_survives_deactivation(staff_factory, database, app):
    caller = staff_factory.client("support", "leaver")
    user_id = caller.post(
        "/api/v1/users", json={"name": "Ada", "email": "ada@example.com"}
    ).get_json()["id"]
    with app.app_context():
        staff_service.deactivate(caller.staff.id)
    assert database.audit(user_id)[0]["actor_label"] == "leaver"


@pytest.mark.parametrize(("proxies", "expected"), [(0, "127.0.0.1"), (1, "203.0.113.9")])
def test_remote_address_trusts_only_the_configured_proxies(
    app, staff_factory, database, proxies, expected
):
    behind = create_app(
        {"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"], "PROXY_COUNT": proxies}
    )
    secret = staff_factory.token(staff_factory.account("support"))
    response = behind.test_client().post(
        "/api/v1/users",
        json={"name": "Ada", "email": "ada@example.com"},
        headers={
            "Authorization": f"Bearer {secret}",
            # The client's own claim comes first; the proxy appends the real peer.
            "X-Forwarded-For": "198.51.100.1, 203.0.113.9",
        },
    )
    assert response.status_code == 201
    assert database.audit()[0]["remote_addr"] == expected


def test_audit_can_be_filtered_by_actor(staff_factory, client):
    sam = staff_factory.client("support", "sam")
    kim = staff_factory.client("support", "kim")
    sam.post("/api/v1/users", json={"name": "A", "email": "a@example.com"})
    kim.post("/api/v1/users", json={"name": "B", "email": "b@example.com"})
    sam.post("/api/v1/users", json={"name": "C", "email": "c@example.com"})

    by_name = client.get("/api/v1/audit?actor=SAM").get_json()["items"]
    assert [e["new_data"]["name"] for e in by_name] == ["C", "A"]
    by_id = client.get(f"/api/v1/audit?actor={kim.staff.id}").get_json()["items"]
    assert [e["new_data"]["name"] for e in by_id] == ["B"]
    assert client.get("/api/v1/audit?actor=nobody").get_json()["items"] == []
    assert client.get("/api/v1/audit?actor=%00bad").status_code == 400


def test_a_change_without_an_actor_is_refused(app, database):
    with app.app_context():
        with pytest.raises(UnattributedChangeError):
            users.create_user({"name": "Ghost", "email": "ghost@example.com"})
        db.session.rollback()
    assert database.fingerprint() == [[], []]


def test_cli_origin_is_recorded(app, database, staff_factory):
    with app.app_context(), acting_as(Actor(None, "cli:operator", "operator"), Origin("cli")):
        user_id = users.create_user({"name": "Ada", "email": "ada@example.com"}).id
    [entry] = database.audit(user_id)
    assert (entry["actor_id"], entry["actor_label"], entry["channel"]) == (
        None,
        "cli:operator",
        "cli",
    )


def test_security_events_api_lists_newest_first_without_secrets(app, staff_factory, client, caplog):
    caplog.set_level(logging.INFO)
    owner = staff_factory.account("support")
    secret = staff_factory.token(owner, "ci")
    app.test_client().get("/api/v1/users", headers={"Authorization": "Bearer pa_bogus"})

    body = client.get("/api/v1/security-events?limit=10")
    assert body.status_code == 200
    items = body.get_json()["items"]
    assert items[0]["event"] == "token_rejected"
    assert any(e["event"] == "token_created" and e["details"]["name"] == "ci" for e in items)
    assert secret not in body.get_data(as_text=True)
    assert secret not in caplog.text
    assert "pa_bogus" not in body.get_data(as_text=True)


def test_an_unknown_security_event_name_is_refused(app, database):
    from webapp.services.security_events import record_event

    with app.app_context(), pytest.raises(ValueError, match="unknown security event"):
        record_event("login_suceeded")
    assert database.rows("SELECT * FROM security_events") == []
