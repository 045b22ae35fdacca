"""Settings read from the environment (twelve-factor).

Defaults are safe for local development only. A ``.env`` file in the project
root is honoured so a developer can keep local overrides out of the shell.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

PROJECT_ROOT = Path(__file__).resolve().parent.parent

load_dotenv(PROJECT_ROOT / ".env")


def database_url(raw: str | None) -> str | None:
    """Return ``raw`` as a SQLAlchemy URL that uses the psycopg 3 driver.

    Hosting platforms hand out ``postgres://`` and ``postgresql://`` URLs; both
    are accepted and pointed at psycopg 3 so no other driver is ever needed.
    """
    if not raw:
        return None
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix) :]
    return raw


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def settings_from_environment() -> dict[str, Any]:
    """All settings, read from the environment when called (not at import).

    Reading late lets a launcher (``make run``) or a test set variables such as
    ``DATABASE_URL`` before the app is created.
    """
    return {
        "SECRET_KEY": os.environ.get("SECRET_KEY", "dev-only-not-a-secret"),
        # Keys the audit hash chain (HMAC-SHA-256). Keep it out of the database
        # and its backups: whoever holds it could re-hash a rewritten history.
        "AUDIT_CHAIN_KEY": os.environ.get("AUDIT_CHAIN_KEY", "dev-only-audit-chain-key"),
        "SQLALCHEMY_DATABASE_URI": database_url(os.environ.get("DATABASE_URL")),
        "SQLALCHEMY_ENGINE_OPTIONS": {
            # Without pre-ping, a restarted database turns the first request on
            # every pooled connection into an error.
            "pool_pre_ping": _bool("DB_POOL_PRE_PING", True),
            "pool_size": _int("DB_POOL_SIZE", 5),
            "max_overflow": _int("DB_MAX_OVERFLOW", 10),
            "pool_recycle": _int("DB_POOL_RECYCLE", 1800),
            "connect_args": {
                "options": f"-c statement_timeout={_int('DB_STATEMENT_TIMEOUT_MS', 15000)}"
                " -c timezone=UTC"
            },
        },
        # Request bodies larger than this are refused with 413 before parsing.
        "MAX_CONTENT_LENGTH": _int("MAX_CONTENT_LENGTH", 64 * 1024),
        # Sign-in sessions: cookie flags, idle and absolute timeouts.
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        # Also set automatically for requests that arrive over HTTPS.
        "SESSION_COOKIE_SECURE": _bool("SESSION_COOKIE_SECURE", False),
        "SESSION_IDLE_MINUTES": _int("SESSION_IDLE_MINUTES", 30),
        "SESSION_MAX_HOURS": _int("SESSION_MAX_HOURS", 12),
        # Failed sign-ins allowed per account and per address within the window.
        "LOGIN_RATE_LIMIT": _int("LOGIN_RATE_LIMIT", 5),
        "LOGIN_RATE_WINDOW_SECONDS": _int("LOGIN_RATE_WINDOW_SECONDS", 60),
        # Reverse proxies in front of the app whose X-Forwarded-For is trusted.
        "PROXY_COUNT": _int("PROXY_COUNT", 0),
        # List pages: default and largest number of items.
        "PAGE_SIZE_DEFAULT": 50,
        "PAGE_SIZE_MAX": 200,
    }
