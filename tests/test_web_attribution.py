"""Changes made through a signed-in dashboard session are attributed to the
account, with channel "web", the address and the request id."""

from __future__ import annotations

import pytest
from flask import Flask, request

from tests.support.pages import sign_in
from tests.support.staff import PASSWORD
from webapp import create_app
from webapp.extensions import csrf
from webapp.services import users


@pytest.fixture
def app_with_form_post(app: Flask) -> Flask:
    """The app plus one dashboard-style write route, as the profile editor will have."""
    dashboard = create_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"]})

    @dashboard.post("/test-create")
    def create_profile() -> tuple[str, int]:
        user = users.create_user(
            {"name": request.form["name"], "email": request.form["email"]},
            reason=request.form.get("reason"),
        )
        return str(user.id), 201

    csrf.exempt(create_profile)
    return dashboard


def test_web_writes_are_attributed(app_with_form_post, staff_factory, database):
    kim = staff_factory.account("support", "kim")
    browser = sign_in(app_with_form_post.test_client(), "kim", PASSWORD)

    response = browser.post(
        "/test-create",
        data={"name": "Ada", "email": "ada@example.com", "reason": "phone call"},
        headers={"X-Request-ID": "web-req-000001"},
        environ_base={"REMOTE_ADDR": "192.0.2.44"},
    )

    assert response.status_code == 201
    [entry] = database.audit(int(response.data))
    assert entry["actor_id"] == kim.id
    assert entry["actor_label"] == "kim"
    assert entry["channel"] == "web"
    assert entry["channel_detail"] is None
    assert entry["remote_addr"] == "192.0.2.44"
    assert entry["request_id"] == response.headers["X-Request-ID"] != "web-req-000001"
    assert entry["client_request_id"] == "web-req-000001"
    assert entry["token_id"] is None
    assert entry["reason"] == "phone call"


def test_a_route_that_forgets_to_require_sign_in_cannot_write_anonymously(
    app_with_form_post, database, caplog
):
    response = app_with_form_post.test_client().post(
        "/test-create", data={"name": "Ada", "email": "ada@example.com"}
    )
    # A programming error, so a 500 with a request id; but nothing is written.
    assert response.status_code == 500
    assert "no actor" in caplog.text
    assert database.fingerprint() == [[], []]
