"""Settings: no built-in keys (refusing to start without strong ones, in any
environment), APP_ENV, the database URL and pool, and the observability
settings."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from tests.conftest import SUITE_KEYS
from tests.support.cli import run_flask
from webapp import create_app
from webapp.config import (
    KEY_SETTINGS,
    check_settings,
    database_url,
    settings_from_environment,
)
from webapp.extensions import db
from webapp.observability import logs

STRONG_SECRET = "Zq3xT9vLk2mN8pRw4sYb7cHd1fJg6hUe0aKo5iPl"
STRONG_CHAIN = "Wm4nB8vC2xZ6lK0jH9gF3dS7aQ1pO5iU8yT2rE4w"
SETTINGS = (
    "APP_ENV",
    "SECRET_KEY",
    "AUDIT_CHAIN_KEY",
    "PRIVACY_PREVIOUS_MASTER_KEY",
    "LOG_FORMAT",
    "METRICS_ALLOWED_IPS",
    "SENTRY_DSN",
    "DB_POOL_SIZE",
    "DB_POOL_TIMEOUT",
    "DB_CONNECT_TIMEOUT",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    loggers = [logging.getLogger(name) for name in (logs.REQUEST_LOGGER, *logs.APP_LOGGERS)]
    saved = [(list(logger.handlers), logger.level, logger.propagate) for logger in loggers]
    yield
    for logger, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def started(app: Flask, app_env: str = "production", **settings: object) -> Flask:
    """An app with ``app_env`` and strong keys, unless ``settings`` say otherwise."""
    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "APP_ENV": app_env,
            "SECRET_KEY": STRONG_SECRET,
            "AUDIT_CHAIN_KEY": STRONG_CHAIN,
            **settings,
        }
    )


def test_development_is_the_default_and_the_suite_brings_its_own_keys(app):
    assert settings_from_environment()["APP_ENV"] == "development"
    assert app.config["LOG_FORMAT"] == "text"
    for name in KEY_SETTINGS:
        assert app.config[name] == SUITE_KEYS[name]


def test_no_key_is_built_in(monkeypatch):
    """Without keys in the environment there are none: nothing to fall back on."""
    for name in KEY_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    settings = settings_from_environment()
    assert [settings[name] for name in KEY_SETTINGS] == [None] * len(KEY_SETTINGS)


def test_production_with_strong_keys_starts_and_logs_json(app):
    production = started(app)
    assert production.config["LOG_FORMAT"] == "json"
    # Failed statements' values (emails) stay out of error messages.
    assert production.config["SQLALCHEMY_ENGINE_OPTIONS"]["hide_parameters"] is True
    assert production.test_client().get("/healthz").status_code == 200


@pytest.mark.parametrize("app_env", ["development", "production"])
@pytest.mark.parametrize("name", ["SECRET_KEY", "AUDIT_CHAIN_KEY"])
@pytest.mark.parametrize(
    ("value", "why"),
    [
        (None, "is not set"),
        ("", "is not set"),
        # The public constants development used to fall back on.
        ("dev-only-not-a-secret", "is shorter than 32 characters"),
        ("dev-only-audit-chain-key", "is shorter than 32 characters"),
        ("short-but-random-Xy7", "is shorter than 32 characters"),
        ("ab" * 20, "is too repetitive"),
    ],
)
def test_missing_or_weak_keys_are_refused_in_any_environment(app, app_env, name, value, why):
    with pytest.raises(RuntimeError) as refused:
        started(app, app_env, **{name: value})
    message = str(refused.value)
    assert message.startswith(f"{name} {why}")
    assert "`make run` makes local keys by itself" in message
    assert "\n" not in message
    if value:
        assert value not in message  # the message never repeats the key


def test_the_same_key_twice_is_refused(app):
    with pytest.raises(RuntimeError, match=r"^SECRET_KEY and AUDIT_CHAIN_KEY must be different"):
        started(app, "development", AUDIT_CHAIN_KEY=STRONG_SECRET)


@pytest.mark.parametrize("app_env", [None, "Production"])
def test_keys_are_read_from_the_environment(app, monkeypatch, app_env):
    if app_env:
        monkeypatch.setenv("APP_ENV", app_env)
    monkeypatch.setenv("SECRET_KEY", STRONG_SECRET)
    with pytest.raises(RuntimeError, match=r"^AUDIT_CHAIN_KEY is not set: "):
        create_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"]})
    monkeypatch.setenv("AUDIT_CHAIN_KEY", STRONG_CHAIN)
    configured = create_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"]})
    assert configured.config["APP_ENV"] == (app_env or "development").lower()
    assert configured.config["SECRET_KEY"] == STRONG_SECRET


def test_a_session_cookie_signed_with_the_old_public_key_is_refused(app, staff_factory):
    """Development used to sign cookies with a constant anyone could read in
    the source: a cookie forged with it, in the shape sessions then had,
    opens nothing."""
    admin = staff_factory.account("admin")
    forger = Flask("forger")
    forger.secret_key = "dev-only-not-a-secret"  # the old public constant
    now = "2099-01-01T00:00:00.000000Z"
    forged = (
        SecureCookieSessionInterface()
        .get_signing_serializer(forger)
        .dumps({"_user_id": f"{admin.id}:1", "_fresh": True, "signed_in_at": now, "seen_at": now})
    )
    browser = app.test_client()
    browser.set_cookie("session", forged)
    response = browser.get("/users")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"APP_ENV": "staging"}, "APP_ENV must be 'development' or 'production'"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be 'json' or 'text'"),
        ({"METRICS_ALLOWED_IPS": "10.0.0.5/8"}, "METRICS_ALLOWED_IPS: '10.0.0.5/8'"),
        ({"METRICS_ALLOWED_IPS": "localhost"}, "METRICS_ALLOWED_IPS: 'localhost'"),
    ],
)
def test_bad_settings_are_refused_in_any_environment(settings, message):
    config = {"APP_ENV": "development", "LOG_FORMAT": None, "METRICS_ALLOWED_IPS": "", **settings}
    with pytest.raises(RuntimeError, match=message):
        check_settings(config)


@pytest.mark.parametrize("name", ["LOGIN_FAILURES_PER_ADDRESS", "SESSION_IDLE_MINUTES"])
def test_a_limit_or_lifetime_below_one_is_refused(app, monkeypatch, name):
    """0 would refuse every sign-in or end every session at once: a mistake, said so."""
    monkeypatch.setenv(name, "0")
    with pytest.raises(
        RuntimeError, match=rf"^{name} must be a whole number of at least 1, not 0\.$"
    ):
        create_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"], **SUITE_KEYS})


def test_a_number_that_is_not_one_is_named(monkeypatch):
    monkeypatch.setenv("DB_POOL_SIZE", "lots")
    with pytest.raises(RuntimeError, match=r"^DB_POOL_SIZE must be a whole number, not 'lots'\.$"):
        settings_from_environment()


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_database_url_accepts_both_schemes(scheme, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"{scheme}://u:p@db.internal:5432/audit")
    expected = "postgresql+psycopg://u:p@db.internal:5432/audit"
    assert settings_from_environment()["SQLALCHEMY_DATABASE_URI"] == expected
    assert database_url("postgresql+psycopg://x/y") == "postgresql+psycopg://x/y"


def test_pool_settings_reach_the_engine(app, monkeypatch):
    monkeypatch.setenv("DB_POOL_SIZE", "3")
    monkeypatch.setenv("DB_POOL_TIMEOUT", "7")
    monkeypatch.setenv("DB_CONNECT_TIMEOUT", "2")
    configured = create_app(
        {"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"], **SUITE_KEYS}
    )
    options = configured.config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options["connect_args"]["connect_timeout"] == 2
    assert options["hide_parameters"] is False  # development keeps them for debugging
    with configured.app_context():
        pool = db.engine.pool
        assert (pool.size(), pool.timeout()) == (3, 7)
        db.engine.dispose()


def test_a_flask_command_without_keys_refuses_in_one_line(test_database_url):
    """APP_ENV unset, as on a developer's machine: still no command without keys."""
    status, stdout, stderr = run_flask(test_database_url, "stats", stderr_on_a_terminal=False)
    assert status == 1
    assert stdout == b""
    assert "Traceback" not in stderr
    [line] = stderr.strip().splitlines()
    assert line.startswith("Error: SECRET_KEY is not set: ")


def test_a_flask_command_with_a_weak_key_in_production_says_so_in_one_line(test_database_url):
    status, _, stderr = run_flask(
        test_database_url,
        "stats",
        stderr_on_a_terminal=False,
        environment={
            "APP_ENV": "production",
            "SECRET_KEY": "tiny-key",
            "AUDIT_CHAIN_KEY": "another-long-enough-audit-chain-key-0123456789",
        },
    )
    assert status == 1
    assert "Traceback" not in stderr
    [line] = stderr.strip().splitlines()
    assert line.startswith("Error: ")
    assert "SECRET_KEY" in line
    assert "tiny-key" not in line
