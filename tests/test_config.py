"""Settings: APP_ENV, refusing to run in production with weak or default keys,
the database URL and pool, and the observability settings."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from tests.flask_commands import run_flask
from webapp import create_app
from webapp.config import (
    DEV_AUDIT_CHAIN_KEY,
    DEV_SECRET_KEY,
    check_settings,
    database_url,
    settings_from_environment,
)
from webapp.extensions import db
from webapp.observability import logs

ROOT = Path(__file__).resolve().parent.parent
STRONG_SECRET = "Zq3xT9vLk2mN8pRw4sYb7cHd1fJg6hUe0aKo5iPl"
STRONG_CHAIN = "Wm4nB8vC2xZ6lK0jH9gF3dS7aQ1pO5iU8yT2rE4w"
SETTINGS = (
    "APP_ENV",
    "SECRET_KEY",
    "AUDIT_CHAIN_KEY",
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


def production(app: Flask, **settings: object) -> Flask:
    """An app with APP_ENV=production and strong keys, unless ``settings`` say otherwise."""
    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "APP_ENV": "production",
            "SECRET_KEY": STRONG_SECRET,
            "AUDIT_CHAIN_KEY": STRONG_CHAIN,
            **settings,
        }
    )


def test_development_is_the_default_and_runs_with_the_development_keys(app):
    assert settings_from_environment()["APP_ENV"] == "development"
    assert app.config["SECRET_KEY"] == DEV_SECRET_KEY
    assert app.config["AUDIT_CHAIN_KEY"] == DEV_AUDIT_CHAIN_KEY
    assert app.config["LOG_FORMAT"] == "text"


def test_production_with_strong_keys_starts_and_logs_json(app):
    started = production(app)
    assert started.config["LOG_FORMAT"] == "json"
    # Failed statements' values (emails) stay out of error messages.
    assert started.config["SQLALCHEMY_ENGINE_OPTIONS"]["hide_parameters"] is True
    assert started.test_client().get("/healthz").status_code == 200


@pytest.mark.parametrize("name", ["SECRET_KEY", "AUDIT_CHAIN_KEY"])
@pytest.mark.parametrize(
    ("value", "why"),
    [
        (None, "is not set"),
        ("", "is not set"),
        ("dev-default", "is the development default"),
        ("short-but-random-Xy7", "is shorter than 32 characters"),
        ("ab" * 20, "is too repetitive"),
    ],
)
def test_production_refuses_weak_keys(app, name, value, why):
    if value == "dev-default":
        value = DEV_SECRET_KEY if name == "SECRET_KEY" else DEV_AUDIT_CHAIN_KEY
    with pytest.raises(RuntimeError) as refused:
        production(app, **{name: value})
    message = str(refused.value)
    assert message.startswith(f"Refusing to start with APP_ENV=production: {name} {why}")
    assert "\n" not in message
    if value:
        assert value not in message  # the message never repeats the key


def test_production_refuses_the_same_key_twice(app):
    with pytest.raises(RuntimeError, match="must be different values"):
        production(app, AUDIT_CHAIN_KEY=STRONG_SECRET)


def test_production_read_from_the_environment(app, monkeypatch):
    monkeypatch.setenv("APP_ENV", "Production")
    monkeypatch.setenv("SECRET_KEY", STRONG_SECRET)
    with pytest.raises(RuntimeError, match="AUDIT_CHAIN_KEY is the development default"):
        create_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"]})
    monkeypatch.setenv("AUDIT_CHAIN_KEY", STRONG_CHAIN)
    started = create_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"]})
    assert started.config["APP_ENV"] == "production"


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
    configured = create_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"]})
    options = configured.config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options["connect_args"]["connect_timeout"] == 2
    assert options["hide_parameters"] is False  # development keeps them for debugging
    with configured.app_context():
        pool = db.engine.pool
        assert (pool.size(), pool.timeout()) == (3, 7)
        db.engine.dispose()


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
