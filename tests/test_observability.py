"""Logs, health checks, metrics and error reports, as operators see them.

Log lines are captured from the handlers the app installs and parsed as JSON;
the probes run against the real database, a database at an older revision and
one that does not answer.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import ClassVar

import pytest
from alembic.script import ScriptDirectory
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import text

from tests.support.cli import ROOT, run_command
from tests.support.pages import form_token
from tests.support.profiles import post_profile
from webapp import create_app
from webapp.config import PROJECT_ROOT, database_url
from webapp.dev.local_database import drop_database, ensure_database
from webapp.extensions import db
from webapp.observability import logs, sentry

LOGGERS = (logs.REQUEST_LOGGER, logs.SECURITY_LOGGER, *logs.APP_LOGGERS)
UNREACHABLE = "postgresql+psycopg://nobody@127.0.0.1:9/nothing"
HEAD = ScriptDirectory(str(PROJECT_ROOT / "migrations")).get_current_head()


@pytest.fixture(autouse=True)
def _restore_loggers() -> Iterator[None]:
    """Loggers are process-wide: leave them as the other tests expect them."""
    saved = {
        name: (
            list(logging.getLogger(name).handlers),
            logging.getLogger(name).level,
            logging.getLogger(name).propagate,
        )
        for name in LOGGERS
    }
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def capture_logs() -> io.StringIO:
    """Point the app's log handlers at a buffer."""
    buffer = io.StringIO()
    for name in LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logs._Handler):
                handler.setStream(buffer)
    return buffer


def lines(buffer: io.StringIO) -> list[dict]:
    """Every line written, each parsed as one JSON object."""
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line]


def make_app(app: Flask, **settings: object) -> Flask:
    return create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            **settings,
        }
    )


@pytest.fixture
def json_app(app: Flask) -> Iterator[Flask]:
    """An app on the test database that logs JSON."""
    application = make_app(app, LOG_FORMAT="json")
    yield application
    with application.app_context():
        db.engine.dispose()


# --- logs -----------------------------------------------------------------


def test_one_json_line_per_request_without_secrets_or_emails(json_app, staff_factory):
    admin = staff_factory.account("admin", "log-admin")
    secret = staff_factory.token(admin)
    buffer = capture_logs()
    client = json_app.test_client()
    client.set_cookie("session", "cookie-secret-value-123")
    response = client.post(
        "/api/v1/users?q=ada@example.com&password=hunter2-in-query",
        json={"name": "Ada", "email": "ada@example.com", "reason": "pw hunter2-in-body"},
        headers={"Authorization": f"Bearer {secret}", "X-Request-ID": "req-log-000001"},
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
    )
    assert response.status_code == 201
    # A path that holds an email, sent by a careless client.
    client.get("/api/v1/users/ada@example.com", headers={"Authorization": f"Bearer {secret}"})

    output = buffer.getvalue()
    for leaked in (secret, "ada@example.com", "hunter2", "cookie-secret-value-123"):
        assert leaked not in output
    records = lines(buffer)
    requests = [record for record in records if record["logger"] == logs.REQUEST_LOGGER]
    assert len(requests) == 2
    created = requests[0]
    assert created["method"] == "POST"
    assert created["path"] == "/api/v1/users"  # never the query string
    assert created["status"] == 201
    assert created["request_id"] == response.headers["X-Request-ID"] != "req-log-000001"
    assert created["client_request_id"] == "req-log-000001"
    assert created["actor"] == "log-admin"
    assert created["remote_addr"] == "192.0.2.7"
    assert created["level"] == "info"
    assert isinstance(created["duration_ms"], float)
    assert created["time"].endswith("Z")
    assert requests[1]["status"] == 404
    assert requests[1]["path"] == "/api/v1/users/[email]"


def test_a_failed_sign_in_logs_its_security_event_without_the_password(json_app, staff_factory):
    staff_factory.account("support", "grace")
    buffer = capture_logs()
    client = json_app.test_client()
    response = client.post(
        "/login",
        data={
            "csrf_token": form_token(client),
            "username": "grace",
            "password": "wrong-password-xyz",
        },
    )
    assert response.status_code == 401
    assert "wrong-password-xyz" not in buffer.getvalue()
    records = lines(buffer)
    event = next(record for record in records if record.get("security_event"))
    assert event["message"] == "security event login_failed"
    assert event["request_id"] == response.headers["X-Request-ID"]
    assert event["security_event"]["username"] == "grace"
    post = [r for r in records if r["logger"] == logs.REQUEST_LOGGER and r["method"] == "POST"]
    assert post[0]["path"] == "/login"
    assert post[0]["actor"] is None


def test_a_commands_security_events_reach_the_json_log(json_app):
    """Outside a request only warnings of the application are printed, but a
    security event (an account created from the command line) always is."""
    buffer = capture_logs()
    result = json_app.test_cli_runner().invoke(
        args=["staff", "create", "kim", "--role", "auditor", "--password-stdin"],
        input="a long enough passphrase\n",
    )
    assert result.exit_code == 0, result.output
    assert "a long enough passphrase" not in buffer.getvalue()
    [record] = lines(buffer)
    assert record["logger"] == logs.SECURITY_LOGGER
    assert record["message"] == "security event staff_created"
    assert record["security_event"]["username"] == "kim"
    assert record["security_event"]["actor_label"].startswith("cli:")


def test_security_events_reach_the_text_log_whatever_the_root_logger_says(app, staff_factory):
    """Under gunicorn or a ``flask`` command nothing prints information records
    of the root logger, and a migration raises it to warnings: security
    events have a handler of their own."""
    application = make_app(app)  # text
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    root.setLevel(logging.WARNING)
    root.handlers[:] = []
    try:
        buffer = capture_logs()
        for _ in range(2):
            application.test_client().get(
                "/api/v1/users", headers={"Authorization": "Bearer pa_not-a-real-token"}
            )
        application.test_cli_runner().invoke(
            args=["staff", "create", "kim", "--role", "auditor", "--password-stdin"],
            input="a long enough passphrase\n",
        )
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
    events = [line for line in buffer.getvalue().splitlines() if logs.SECURITY_LOGGER in line]
    assert len(events) == 3
    assert "security event token_rejected" in events[0]
    assert "repeat=2" in events[1]
    assert "security event staff_created" in events[2]
    assert "username=kim" in events[2]
    assert "pa_not-a-real-token" not in buffer.getvalue()


def test_application_errors_are_json_with_request_id_and_redacted(app):
    application = make_app(app, LOG_FORMAT="json")

    @application.get("/test-boom")
    def boom():
        raise RuntimeError("could not mail ada@example.com\nwith Bearer pa_notarealtoken123")

    buffer = capture_logs()
    response = application.test_client().get("/test-boom")
    assert response.status_code == 500
    output = buffer.getvalue()
    assert "ada@example.com" not in output
    assert "pa_notarealtoken123" not in output
    error = next(record for record in lines(buffer) if record["level"] == "error")
    assert error["logger"] == "webapp"
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert "RuntimeError: could not mail [email]" in error["exception"]
    assert "Traceback" in error["exception"]


def test_outside_requests_only_warnings_are_logged(json_app):
    buffer = capture_logs()
    json_app.logger.info("chatty detail")
    json_app.logger.warning("something to look at")
    records = lines(buffer)
    assert [record["message"] for record in records] == ["something to look at"]
    assert "request_id" not in records[0]


def test_text_format_for_development(app):
    application = make_app(app)  # development: text unless told otherwise
    assert application.config["LOG_FORMAT"] == "text"
    buffer = capture_logs()
    response = application.test_client().get("/login", headers={"X-Request-ID": "text-req-0001"})
    line = buffer.getvalue().strip()
    server_id = response.headers["X-Request-ID"]
    assert f" INFO webapp.request [{server_id}] GET /login 200 " in line
    assert "remote_addr=127.0.0.1" in line
    assert "client_request_id=text-req-0001" in line
    # Text mode keeps the application's records flowing to the root logger.
    assert logging.getLogger("webapp").propagate


def test_probe_lines_only_when_they_fail(json_app):
    buffer = capture_logs()
    client = json_app.test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert buffer.getvalue() == ""
    client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert [record["status"] for record in lines(buffer)] == [403]


# --- health ---------------------------------------------------------------


def test_healthz_needs_no_database(app):
    unreachable = make_app(app, SQLALCHEMY_DATABASE_URI=UNREACHABLE)
    response = unreachable.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert "Set-Cookie" not in response.headers


def test_readyz_when_the_database_is_at_head(anonymous_client):
    response = anonymous_client.get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready"
    assert body["revision"] == body["head"] == HEAD
    assert body["oldest_unlinked_entry_seconds"] is None
    assert "Set-Cookie" not in response.headers


def test_readyz_tells_how_long_the_oldest_entry_waits_for_its_link(
    anonymous_client, client, link_chain
):
    post_profile(client, "Waiting", "waiting@example.com")
    body = anonymous_client.get("/readyz").get_json()
    # A backlog is detail: the process still serves.
    assert body["status"] == "ready"
    assert body["oldest_unlinked_entry_seconds"] >= 0
    link_chain()
    assert anonymous_client.get("/readyz").get_json()["oldest_unlinked_entry_seconds"] is None


def test_readyz_503_when_the_database_does_not_answer(app):
    unreachable = make_app(app, SQLALCHEMY_DATABASE_URI=UNREACHABLE)
    started = time.monotonic()
    response = unreachable.test_client().get("/readyz")
    assert time.monotonic() - started < 10
    assert response.status_code == 503
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["reason"] == "database_unreachable"
    assert "127.0.0.1" not in json.dumps(body)  # no connection details for clients


@pytest.fixture
def scratch(server_url) -> Iterator[Flask]:
    """An app on a database of its own, not migrated yet."""
    name = "profile_audit_readyz_test"
    drop_database(server_url, name)
    url = database_url(ensure_database(server_url, name))
    application = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
    yield application
    with application.app_context():
        db.engine.dispose()
    drop_database(server_url, name)


def test_readyz_follows_the_schema_revision(scratch):
    client = scratch.test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["reason"] == "database_not_migrated"

    with scratch.app_context():
        upgrade(revision="0005")
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["reason"] == "database_behind"
    assert (body["revision"], body["head"]) == ("0005", HEAD)

    with scratch.app_context():
        upgrade()
    assert client.get("/readyz").status_code == 200

    # A newer release migrated the database past what this code knows.
    with scratch.app_context(), db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["reason"] == "database_ahead"


# --- metrics --------------------------------------------------------------


def samples(response) -> dict[str, float]:
    """``name{labels}`` -> value, from a text exposition."""
    found = {}
    for line in response.get_data(as_text=True).splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            found[key] = float(value)
    return found


def test_metrics_from_localhost(json_app, staff_factory, database):
    admin = staff_factory.account("admin", "metrics-admin")
    secret = staff_factory.token(admin)
    client = json_app.test_client()
    for number in range(3):
        response = client.post(
            "/api/v1/users",
            json={"name": f"P{number}", "email": f"p{number}@example.com"},
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert response.status_code == 201
    client.get("/no-such-page")
    waiting = samples(client.get("/metrics"))
    assert waiting["profile_audit_audit_chain_pending_entries"] == 3
    assert waiting["profile_audit_audit_oldest_unlinked_entry_seconds"] >= 0
    # Linked as the sealer links them, then a verification run as
    # `flask audit verify` records it.
    assert json_app.test_cli_runner().invoke(args=["audit", "seal"]).exit_code == 0
    assert json_app.test_cli_runner().invoke(args=["audit", "verify"]).exit_code == 0

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "Set-Cookie" not in response.headers
    found = samples(response)
    created = (
        'profile_audit_http_requests_total{endpoint="api.create_user",method="POST",status="201"}'
    )
    assert found[created] == 3
    unmatched = 'profile_audit_http_requests_total{endpoint="unmatched",method="GET",status="404"}'
    assert found[unmatched] == 1
    count = (
        "profile_audit_http_request_duration_seconds_count"
        '{endpoint="api.create_user",method="POST"}'
    )
    assert found[count] == 3
    entries = database.scalar("SELECT count(*) FROM user_audit")
    assert found["profile_audit_audit_entries_total"] == entries == 3
    assert found["profile_audit_audit_chain_head_seq"] == 3
    assert found["profile_audit_audit_chain_pending_entries"] == 0
    assert found["profile_audit_audit_oldest_unlinked_entry_seconds"] == 0
    assert found["profile_audit_audit_verification_ok"] == 1
    assert 0 <= found["profile_audit_audit_verification_age_seconds"] < 60
    assert found["profile_audit_database_up"] == 1


def test_metrics_before_any_verification(anonymous_client):
    found = samples(anonymous_client.get("/metrics"))
    assert found["profile_audit_audit_verification_ok"] == 0
    assert "profile_audit_audit_verification_age_seconds" not in found


ELSEWHERE = {"REMOTE_ADDR": "203.0.113.9"}


def assert_refused(response) -> None:
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    assert "profile_audit_" not in response.get_data(as_text=True)


@pytest.mark.parametrize("role", ["admin", "auditor"])
def test_metrics_from_elsewhere_with_an_admin_or_auditor_token(app, staff_factory, role):
    secret = staff_factory.token(staff_factory.account(role))
    response = app.test_client().get(
        "/metrics", headers={"Authorization": f"Bearer {secret}"}, environ_base=ELSEWHERE
    )
    assert response.status_code == 200
    assert "profile_audit_http_requests_total" in response.get_data(as_text=True)


def test_metrics_refused_otherwise(app, staff_factory, database):
    client = app.test_client()
    assert_refused(client.get("/metrics", environ_base=ELSEWHERE))
    support = staff_factory.token(staff_factory.account("support", "metrics-support"))
    assert_refused(
        client.get(
            "/metrics", headers={"Authorization": f"Bearer {support}"}, environ_base=ELSEWHERE
        )
    )
    assert_refused(
        client.get(
            "/metrics", headers={"Authorization": "Bearer pa_forged"}, environ_base=ELSEWHERE
        )
    )
    # Through a proxy the app was not told about, 127.0.0.1 is the proxy.
    assert_refused(client.get("/metrics", headers={"X-Forwarded-For": "198.51.100.1"}))
    events = database.rows("SELECT event, username FROM security_events ORDER BY id")
    assert {"event": "forbidden", "username": "metrics-support"} in events
    assert any(event["event"] == "token_rejected" for event in events)


def test_metrics_allowed_networks_are_configurable(app):
    custom = make_app(app, METRICS_ALLOWED_IPS="203.0.113.0/24")
    client = custom.test_client()
    assert client.get("/metrics", environ_base=ELSEWHERE).status_code == 200
    assert_refused(client.get("/metrics"))  # localhost is no longer in the list


def test_metrics_add_up_across_worker_processes(app, test_database_url, tmp_path):
    """Under gunicorn each worker counts its own requests; a scrape sees them all."""
    worker = (
        "import sys\n"
        "from webapp import create_app\n"
        "app = create_app({'TESTING': True})\n"
        "client = app.test_client()\n"
        "for _ in range(int(sys.argv[1])):\n"
        "    assert client.get('/healthz').status_code == 200\n"
        "if len(sys.argv) > 2:\n"
        "    sys.stdout.write(client.get('/metrics').get_data(as_text=True))\n"
    )
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "DATABASE_URL": test_database_url,
    }

    def run(*args: str) -> str:
        done = run_command([sys.executable, "-c", worker, *args], cwd=ROOT, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("2")
    exposition = run("3", "scrape")
    healthz = (
        "profile_audit_http_requests_total"
        '{endpoint="observability.healthz",method="GET",status="200"}'
    )
    assert f"{healthz} 5.0" in exposition
    assert "profile_audit_audit_chain_head_seq" in exposition


# --- Sentry ---------------------------------------------------------------


@pytest.fixture
def sentry_off() -> Iterator[None]:
    sentry_sdk = pytest.importorskip("sentry_sdk")
    yield
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


def test_sentry_is_off_without_a_dsn(app, sentry_off):
    import sentry_sdk

    make_app(app)
    assert not sentry_sdk.get_client().is_active()


def test_sentry_reports_errors_scrubbed(app, sentry_off):
    import sentry_sdk
    from sentry_sdk.transport import Transport

    application = make_app(app, SENTRY_DSN="http://public@127.0.0.1:9/1", WTF_CSRF_ENABLED=False)

    @application.post("/test-boom")
    def boom():
        raise RuntimeError("failed for ada@example.com")

    client = sentry_sdk.get_client()
    assert client.is_active()
    assert client.options["send_default_pii"] is False

    class Captured(Transport):
        envelopes: ClassVar[list] = []

        def capture_envelope(self, envelope):
            self.envelopes.append(envelope)

    # Nothing may leave the machine: swap the network transport for a list.
    client.transport = Captured(client.options)
    response = application.test_client().post(
        "/test-boom?email=ada@example.com",
        json={"password": "body-password-123"},
        headers={"Authorization": "Bearer pa_secrettoken987", "Cookie": "session=cookie-val-42"},
    )
    assert response.status_code == 500
    client.flush()
    assert Captured.envelopes
    sent = json.dumps([item.payload.json for env in Captured.envelopes for item in env.items])
    assert "RuntimeError" in sent
    for leaked in ("ada@example.com", "body-password-123", "pa_secrettoken987", "cookie-val-42"):
        assert leaked not in sent


def test_scrub_event_drops_bodies_and_credentials():
    event = {
        "request": {
            "url": "http://x/users?q=ada@example.com",
            "query_string": "q=ada@example.com",
            "data": {"password": "p"},
            "cookies": {"session": "s"},
            "headers": {"Authorization": "Bearer pa_abcdefgh", "Cookie": "s=1", "Accept": "*/*"},
        },
        "user": {"ip_address": "192.0.2.1"},
        "message": "mail to bob@example.org failed",
    }
    scrubbed = sentry.scrub_event(event)
    assert scrubbed["request"] == {"url": "http://x/users", "headers": {"Accept": "*/*"}}
    assert "user" not in scrubbed
    assert scrubbed["message"] == "mail to [email] failed"


def test_sentry_dsn_without_the_package_refuses_to_start(app, monkeypatch):
    monkeypatch.setitem(sys.modules, "sentry_sdk", None)
    monkeypatch.setitem(sys.modules, "sentry_sdk.integrations.flask", None)
    with pytest.raises(RuntimeError, match=r"SENTRY_DSN is set but sentry-sdk is not installed"):
        make_app(app, SENTRY_DSN="http://public@127.0.0.1:9/1")
