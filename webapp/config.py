"""Settings read from the environment (twelve-factor).

A ``.env`` file in the project root is honoured so a developer can keep local
overrides out of the shell.

No key is built in: every start needs ``SECRET_KEY``, ``AUDIT_CHAIN_KEY``,
``PRIVACY_MASTER_KEY`` and ``PRIVACY_INDEX_KEY`` (``KEY_SETTINGS``), long,
random and different, whatever ``APP_ENV`` says, and ``check_settings``
refuses to start without them in one line naming the setting. ``make run``
makes random keys for its checkout once and keeps them in ``instance/``
(``webapp.dev.server``); deployments set them.

``APP_ENV`` (``development`` unless set) only chooses defaults such as the log
format and whether failed statements' values may appear in error messages.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

from webapp.typed_text import parse_flag, parse_whole_number

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


DEVELOPMENT = "development"
PRODUCTION = "production"
APP_ENVS = (DEVELOPMENT, PRODUCTION)
LOG_FORMATS = ("json", "text")

#: Settings that only make sense as whole numbers of at least 1.
POSITIVE_SETTINGS: tuple[str, ...] = (
    "SESSION_IDLE_MINUTES",
    "SESSION_MAX_HOURS",
    "LOGIN_FAILURE_WINDOW_SECONDS",
    "LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS",
    "LOGIN_FAILURES_PER_ADDRESS",
    "LOGIN_ACCOUNT_DELAY_AFTER",
    "LOGIN_ACCOUNT_DELAY_MAX_SECONDS",
    "LOGIN_KNOWN_ADDRESS_DAYS",
)
#: Every key the app needs, with what it protects. Each must be set, long,
#: random and different from the others; a new key is added here (``make run``
#: then adds it to its key file by itself).
KEY_SETTINGS: dict[str, str] = {
    "SECRET_KEY": "signs session cookies and CSRF tokens",
    "AUDIT_CHAIN_KEY": "keys the audit hash chain (HMAC-SHA-256)",
    "PRIVACY_MASTER_KEY": "wraps the per-profile keys of the personal data in the audit trail",
    "PRIVACY_INDEX_KEY": "keys the blind index of profiles' emails (HMAC-SHA-256)",
}
#: Shortest key accepted (token_urlsafe(32) gives 43 characters).
MIN_KEY_LENGTH = 32
#: A long key made of very few characters ("aaaa...", "abab...") is no secret.
MIN_KEY_DISTINCT_CHARACTERS = 8
_KEY_ADVICE = (
    "`make run` makes local keys by itself; anywhere else set it to a long random value, "
    "e.g. the output of python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
)


def random_key() -> str:
    """A new random key, as ``make run`` and the test suite make them (64 characters)."""
    return secrets.token_urlsafe(48)


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    number = parse_whole_number(value, minimum=0)
    if number is None:
        # One clear line instead of a traceback at start-up.
        raise RuntimeError(f"{name} must be a whole number, not {value!r}.")
    return number


def _float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise RuntimeError(f"{name} must be a number, not {value!r}.") from None


AUDIT_SEALERS = ("thread", "off")


def _bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    flag = parse_flag(value, default=default)
    if flag is None:
        raise RuntimeError(f"{name} must be true or false (1/0, yes/no, on/off), not {value!r}.")
    return flag


def settings_from_environment() -> dict[str, Any]:
    """All settings, read from the environment when called (not at import).

    Reading late lets a launcher (``make run``) or a test set variables such as
    ``DATABASE_URL`` before the app is created.
    """
    return {
        # "development" or "production"; see check_settings.
        "APP_ENV": os.environ.get("APP_ENV", DEVELOPMENT).strip().lower(),
        # No defaults: check_settings refuses to start without them.
        "SECRET_KEY": os.environ.get("SECRET_KEY") or None,
        # Keys the audit hash chain (HMAC-SHA-256). Keep it out of the database
        # and its backups: whoever holds it could re-hash a rewritten history.
        "AUDIT_CHAIN_KEY": os.environ.get("AUDIT_CHAIN_KEY") or None,
        # Wraps each profile's data key (README, "Privacy"). Keep it out of the
        # database and its backups: with it, a backup's keys read again.
        "PRIVACY_MASTER_KEY": os.environ.get("PRIVACY_MASTER_KEY") or None,
        # During a rotation only: the master key being replaced, still read.
        "PRIVACY_PREVIOUS_MASTER_KEY": os.environ.get("PRIVACY_PREVIOUS_MASTER_KEY") or None,
        # Keys the blind index of emails; changing it needs a re-index.
        "PRIVACY_INDEX_KEY": os.environ.get("PRIVACY_INDEX_KEY") or None,
        # Links committed entries into the chain: "thread" (a background
        # thread per process) or "off" (only `flask audit seal` links).
        "AUDIT_SEALER": os.environ.get("AUDIT_SEALER", "thread").strip().lower(),
        # How often the sealer looks for entries written by other processes.
        "AUDIT_SEAL_POLL_SECONDS": _float("AUDIT_SEAL_POLL_SECONDS", 1.0),
        # An entry unlinked for longer fails `flask audit verify`.
        "AUDIT_MAX_LINK_DELAY_SECONDS": _int("AUDIT_MAX_LINK_DELAY_SECONDS", 300),
        "SQLALCHEMY_DATABASE_URI": database_url(os.environ.get("DATABASE_URL")),
        "SQLALCHEMY_ENGINE_OPTIONS": {
            # A round trip on every checkout. Off: webapp.pool_checks looks at the
            # idle connection's socket instead and pings only one the server
            # wrote to (terminated, restarted), which a restart makes readable.
            "pool_pre_ping": _bool("DB_POOL_PRE_PING", False),
            "pool_size": _int("DB_POOL_SIZE", 5),
            "max_overflow": _int("DB_MAX_OVERFLOW", 10),
            "pool_recycle": _int("DB_POOL_RECYCLE", 1800),
            # Seconds a request waits for a free pooled connection before failing.
            "pool_timeout": _int("DB_POOL_TIMEOUT", 30),
            "connect_args": {
                "options": f"-c statement_timeout={_int('DB_STATEMENT_TIMEOUT_MS', 15000)}"
                " -c timezone=UTC",
                # libpq waits for an unreachable host as long as TCP does (minutes);
                # a readiness probe and a request must fail faster than that.
                "connect_timeout": _int("DB_CONNECT_TIMEOUT", 5),
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
        # Sign-in throttling (services.sign_in_throttle; numbers in README,
        # "Security"): failed sign-ins count for this long...
        "LOGIN_FAILURE_WINDOW_SECONDS": _int("LOGIN_FAILURE_WINDOW_SECONDS", 900),
        # ...one address may fail this often on one account, then waits...
        "LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS": _int("LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS", 5),
        # ...and this often on all accounts together (an office behind one NAT
        # address shares it, so it is much higher)...
        "LOGIN_FAILURES_PER_ADDRESS": _int("LOGIN_FAILURES_PER_ADDRESS", 50),
        # ...while failures on one account from anywhere, past this many, make
        # each next try wait longer (1 s, 2 s, 4 s... at most the maximum),
        # never a lock; addresses the account signed in from lately skip it.
        "LOGIN_ACCOUNT_DELAY_AFTER": _int("LOGIN_ACCOUNT_DELAY_AFTER", 10),
        "LOGIN_ACCOUNT_DELAY_MAX_SECONDS": _int("LOGIN_ACCOUNT_DELAY_MAX_SECONDS", 60),
        "LOGIN_KNOWN_ADDRESS_DAYS": _int("LOGIN_KNOWN_ADDRESS_DAYS", 30),
        # Reverse proxies in front of the app whose X-Forwarded-For is trusted.
        "PROXY_COUNT": _int("PROXY_COUNT", 0),
        # List pages: default and largest number of items.
        "PAGE_SIZE_DEFAULT": 50,
        "PAGE_SIZE_MAX": 200,
        # "json" or "text"; unset: json in production, text in development.
        "LOG_FORMAT": (os.environ.get("LOG_FORMAT") or "").strip().lower() or None,
        # Who may read /metrics without an API token (comma-separated CIDRs).
        "METRICS_ALLOWED_IPS": os.environ.get("METRICS_ALLOWED_IPS", "127.0.0.1/32,::1/128"),
        # Error reports to Sentry when set (needs the "sentry" extra).
        "SENTRY_DSN": os.environ.get("SENTRY_DSN") or None,
        "SENTRY_TRACES_SAMPLE_RATE": _float("SENTRY_TRACES_SAMPLE_RATE", 0.0),
    }


def key_weakness(value: object) -> str | None:
    """Why ``value`` is not fit to be a key, or ``None`` if it is."""
    if not isinstance(value, str) or not value.strip():
        return "is not set"
    if len(value) < MIN_KEY_LENGTH:
        return f"is shorter than {MIN_KEY_LENGTH} characters"
    if len(set(value)) < MIN_KEY_DISTINCT_CHARACTERS:
        return "is too repetitive to be random"
    return None


def parse_networks(value: str, name: str = "METRICS_ALLOWED_IPS") -> tuple[Any, ...]:
    """Comma-separated addresses or CIDRs as networks; ``RuntimeError`` on a bad one.

    Host bits in a CIDR (``10.0.0.5/8``) are refused rather than silently
    widened to the whole network.
    """
    networks = []
    for part in (piece.strip() for piece in value.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=True))
        except ValueError as error:
            raise RuntimeError(f"{name}: {part!r} is not an address or CIDR ({error}).") from None
    return tuple(networks)


def check_settings(config: Mapping[str, Any]) -> None:
    """Refuse to run with settings that are wrong or unsafe, in any environment.

    Raises ``RuntimeError`` with a one-line message naming the setting (never
    its value). Called by ``create_app`` once overrides are applied.
    """
    app_env = config.get("APP_ENV")
    if app_env not in APP_ENVS:
        raise RuntimeError(f"APP_ENV must be 'development' or 'production', not {app_env!r}.")
    log_format = config.get("LOG_FORMAT")
    if log_format is not None and log_format not in LOG_FORMATS:
        raise RuntimeError(f"LOG_FORMAT must be 'json' or 'text', not {log_format!r}.")
    parse_networks(config.get("METRICS_ALLOWED_IPS") or "")
    if config.get("AUDIT_SEALER") not in AUDIT_SEALERS:
        raise RuntimeError(
            f"AUDIT_SEALER must be 'thread' or 'off', not {config.get('AUDIT_SEALER')!r}."
        )
    for name in POSITIVE_SETTINGS:
        value = config.get(name)
        if not isinstance(value, int) or value < 1:
            raise RuntimeError(f"{name} must be a whole number of at least 1, not {value!r}.")
    for name in KEY_SETTINGS:
        weakness = key_weakness(config.get(name))
        if weakness:
            raise RuntimeError(f"{name} {weakness}: {_KEY_ADVICE}.")
    previous = config.get("PRIVACY_PREVIOUS_MASTER_KEY")
    if previous is not None:
        weakness = key_weakness(previous)
        if weakness:
            raise RuntimeError(f"PRIVACY_PREVIOUS_MASTER_KEY {weakness}: {_KEY_ADVICE}.")
    # One leaked key must not also give away another.
    names = list(KEY_SETTINGS)
    for position, name in enumerate(names):
        for other in names[position + 1 :]:
            if config[name] == config[other]:
                raise RuntimeError(f"{name} and {other} must be different values.")
