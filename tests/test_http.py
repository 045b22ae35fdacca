"""Behaviour every response shares: security headers, request ids, error formats."""

from __future__ import annotations

import uuid

import pytest
from flask import Flask

from tests.support.api import PROBLEM, answer_without_a_database
from webapp import create_app


@pytest.mark.parametrize("path", ["/", "/api/v1/users", "/api/v1/nowhere", "/nowhere"])
def test_security_headers_on_every_response(client, path):
    headers = client.get(path).headers
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in headers


def test_hsts_only_over_https(client):
    headers = client.get("/", base_url="https://localhost").headers
    assert headers["Strict-Transport-Security"].startswith("max-age=")


def test_static_files_may_be_cached(client):
    response = client.get("/static/app.css")
    assert response.status_code == 200
    assert response.headers.get("Cache-Control") != "no-store"
    response.close()


def test_request_id_is_generated_and_echoed(client):
    first = client.get("/api/v1/users").headers["X-Request-ID"]
    second = client.get("/api/v1/users").headers["X-Request-ID"]
    assert len(first) == 32
    assert first != second


def test_a_client_request_id_never_becomes_the_requests_own_id(client, database):
    """A client can send the same X-Request-ID twice, or someone else's: the
    request's id is always the server's, the client's is only kept beside it."""
    for _ in range(2):
        created = client.post(
            "/api/v1/users",
            json={"name": "Ada", "email": f"ada{uuid.uuid4().hex[:6]}@example.com"},
            headers={"X-Request-ID": "trace-1234abcd"},
        )
        assert created.status_code == 201
        assert created.headers["X-Request-ID"] != "trace-1234abcd"
        assert len(created.headers["X-Request-ID"]) == 32
    entries = database.audit()
    assert [e["client_request_id"] for e in entries] == ["trace-1234abcd"] * 2
    assert len({e["request_id"] for e in entries}) == 2
    assert all(len(e["request_id"]) == 32 for e in entries)


@pytest.mark.parametrize(
    "bad", ["short", "has spaces in it", "<script>alert(1)</script>", "x" * 200, "trace:1234/abcd"]
)
def test_a_malformed_client_request_id_is_dropped(client, database, bad):
    response = client.post(
        "/api/v1/users",
        json={"name": "Ada", "email": "ada@example.com"},
        headers={"X-Request-ID": bad},
    )
    assert response.status_code == 201
    assert len(response.headers["X-Request-ID"]) == 32
    [entry] = database.audit()
    assert entry["client_request_id"] is None
    assert entry["request_id"] == response.headers["X-Request-ID"]


def test_api_404_and_405_are_problems(client):
    missing = client.get("/api/v1/nowhere")
    assert (missing.status_code, missing.mimetype) == (404, PROBLEM)
    wrong_method = client.put("/api/v1/users")
    assert (wrong_method.status_code, wrong_method.mimetype) == (405, PROBLEM)
    assert set(wrong_method.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    assert wrong_method.get_json()["request_id"] == wrong_method.headers["X-Request-ID"]


def test_html_errors_are_pages(client):
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert b"404 Not Found" in response.data


@pytest.fixture
def failing_app(app: Flask) -> Flask:
    """An app with one route that fails the way a bug would."""
    broken = create_app({"TESTING": False, **_database_settings(app)})

    @broken.get("/api/v1/boom")
    def boom() -> str:
        raise RuntimeError("secret internals: password=hunter2")

    @broken.get("/boom")
    def boom_page() -> str:
        raise RuntimeError("secret internals: password=hunter2")

    return broken


def _database_settings(app: Flask) -> dict[str, object]:
    return {"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"]}


@pytest.mark.parametrize("path", ["/api/v1/boom", "/boom"])
def test_unexpected_errors_never_show_internals(failing_app, staff_factory, path):
    secret = staff_factory.token(staff_factory.account("admin"))
    response = failing_app.test_client().get(path, headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 500
    assert b"hunter2" not in response.data
    assert b"Traceback" not in response.data
    assert response.headers["X-Request-ID"].encode() in response.data


def test_an_unreachable_database_is_503_not_500():
    response = answer_without_a_database()
    assert response.status_code == 503
    assert response.mimetype == PROBLEM
    assert response.headers["Retry-After"]
    assert "nonexistent" not in response.get_data(as_text=True)


# --- methods every route answers ------------------------------------------------------


def _get_urls(app: Flask, user_id: int) -> list[str]:
    """Every route that answers GET, with its arguments filled in (a profile's id)."""
    adapter = app.url_map.bind("localhost")
    return sorted(
        adapter.build(rule.endpoint, dict.fromkeys(rule.arguments, user_id))
        for rule in app.url_map.iter_rules()
        if "GET" in rule.methods and rule.endpoint != "static"
    )


@pytest.mark.parametrize("who", ["anonymous", "signed-in admin", "api token"])
def test_head_works_wherever_get_does(app, client, signed_in, who):
    """HEAD is GET without the body: same status, same headers, for every page
    and endpoint (the sign-in page once answered HEAD as a failed sign-in)."""
    created = client.post("/api/v1/users", json={"name": "Ada", "email": "a@example.com"})
    user_id = created.get_json()["id"]
    caller = {"anonymous": app.test_client(), "api token": client}.get(who) or signed_in("admin")
    for url in [*_get_urls(app, user_id), "/static/app.css"]:
        got = caller.get(url)
        head = caller.head(url)
        assert (url, head.status_code) == (url, got.status_code)
        assert (url, head.status_code) != (url, 404)
        assert head.data == b""
        assert head.mimetype == got.mimetype
        if got.status_code in (301, 302, 303):
            assert head.headers["Location"] == got.headers["Location"]
        got.close()


@pytest.mark.parametrize("authorization", [None, "Bearer pa_not-a-real-token"])
def test_options_on_the_api_answers_allow_without_a_body(app, authorization):
    caller = app.test_client()
    headers = {"Authorization": authorization} if authorization else {}
    for path, methods in [
        ("/api/v1/users", {"GET", "HEAD", "POST", "OPTIONS"}),
        ("/api/v1/users/1", {"GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"}),
        ("/api/v1/users/1/restore", {"POST", "OPTIONS"}),
        ("/api/v1/openapi.json", {"GET", "HEAD", "OPTIONS"}),
    ]:
        response = caller.open(path, method="OPTIONS", headers=headers)
        assert response.status_code == 204, path
        assert set(response.headers["Allow"].replace(" ", "").split(",")) == methods
        assert response.data == b""
        assert "text/html" not in response.headers.get("Content-Type", "")
        assert response.headers["X-Request-ID"]
    missing = caller.open("/api/v1/nowhere", method="OPTIONS")
    assert (missing.status_code, missing.mimetype) == (404, PROBLEM)
