"""Log lines: one JSON object per line in production, plain text in development.

Two kinds of record go out:

* one line per request on the ``webapp.request`` logger: time, level, method,
  path, status, duration_ms, request_id, actor, remote_addr;
* the application's own records (``app.logger``, the ``webapp.*`` and
  ``profile_audit.*`` loggers), with the request id when logged in a request;
* every security event, on ``profile_audit.security``, in requests and in
  ``flask`` commands alike, whatever else configured the root logger.

What is never logged: query strings (a search for ``?q=ada@example.com`` would
put a profile's email in the log), request bodies, headers and cookies. As a
last line of defence every line is passed through ``redact``, which masks
anything shaped like an email address or an API token.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from flask import Flask, g, has_request_context
from flask.logging import default_handler

from webapp.services.profile_rules import spell_out_bidi_controls

#: The request lines' logger; it never propagates (nobody else should print them).
REQUEST_LOGGER = "webapp.request"
#: The application's loggers: app.logger is "webapp", security events "profile_audit.security".
APP_LOGGERS = ("webapp", "profile_audit")
#: Security events' logger: like the request lines, it has its own handler and
#: never propagates, so no root logger's level or lack of handlers drops them.
SECURITY_LOGGER = "profile_audit.security"
#: Longest path kept in a line; anything a client sends can be arbitrarily long.
MAX_PATH = 256

# Deliberately broad: a false positive costs a masked word, a miss costs a leak.
_EMAIL = re.compile(r"[^\s@\"'<>()\[\],;:/\\]+@[^\s@\"'<>()\[\],;:/\\]+")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[^\s\"'\\,]+")
_API_TOKEN = re.compile(r"\bpa_[A-Za-z0-9_-]{6,}")


def redact(text: str) -> str:
    """``text`` with email addresses and API tokens masked, and bidirectional
    controls (a username typed with U+202E...) spelt out so they cannot
    reorder the line on a terminal."""
    text = _EMAIL.sub("[email]", text)
    text = _BEARER.sub(r"\1 [redacted]", text)
    return spell_out_bidi_controls(_API_TOKEN.sub("pa_[redacted]", text))


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _request_id() -> str | None:
    return g.get("request_id") if has_request_context() else None


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "log_fields", None)
        if fields:
            entry.update(fields)
        elif (request_id := _request_id()) is not None:
            entry["request_id"] = request_id
        security_event = getattr(record, "security_event", None)
        if security_event:
            entry["security_event"] = security_event
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # ASCII only: a control character or odd byte in a path cannot break the line.
        return redact(json.dumps(entry, default=str, ensure_ascii=True))


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [request id] message key=value...`` for people."""

    def format(self, record: logging.LogRecord) -> str:
        fields = dict(getattr(record, "log_fields", None) or {})
        # A security event's own fields (account, address...) after its message.
        security_event = getattr(record, "security_event", None) or {}
        fields.update({key: value for key, value in security_event.items() if value is not None})
        request_id = fields.pop("request_id", None) or _request_id() or "-"
        line = (
            f"{_timestamp(record.created)} {record.levelname} {record.name} "
            f"[{request_id}] {record.getMessage()}"
        )
        extras = " ".join(
            f"{key}={'-' if value is None else value}"
            for key, value in fields.items()
            if key not in {"method", "path", "status", "duration_ms", "event"}
        )
        if extras:
            line = f"{line} {extras}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return redact(line)


class _InRequestOrWarning(logging.Filter):
    # Outside a request (``flask`` commands) only warnings and errors are
    # printed: a command's output is its own, as it was before JSON logs.
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or has_request_context()


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Our handler, recognisable so that configuring again replaces it."""


def _replace_handler(logger: logging.Logger, handler: logging.Handler | None) -> None:
    for existing in list(logger.handlers):
        if isinstance(existing, _Handler):
            logger.removeHandler(existing)
    if handler is not None:
        logger.addHandler(handler)


def _new_handler(formatter: logging.Formatter) -> _Handler:
    handler = _Handler(sys.stderr)
    handler.setFormatter(formatter)
    return handler


def configure_logging(app: Flask) -> None:
    """Send request lines and application records to standard error as ``LOG_FORMAT`` says.

    Loggers are process-wide: the app created last decides the format.

    In ``json`` the application's loggers stop propagating, so each record
    is exactly one JSON line whatever else configured the root logger (a
    migration run in the same process does). In ``text`` they keep
    propagating, as before, so development tools and pytest's ``caplog``
    see them. Request lines and security events have handlers of their own
    in both formats: under gunicorn or a ``flask`` command nothing else would
    print an info record, and a migration raises the root logger to warnings.
    """
    log_format = app.config["LOG_FORMAT"]
    formatter: logging.Formatter = JsonFormatter() if log_format == "json" else TextFormatter()

    for name in (REQUEST_LOGGER, SECURITY_LOGGER):
        logger = logging.getLogger(name)
        _replace_handler(logger, _new_handler(formatter))
        logger.setLevel(logging.INFO)
        logger.propagate = False

    for name in APP_LOGGERS:
        logger = logging.getLogger(name)
        if log_format == "json":
            handler = _new_handler(formatter)
            handler.addFilter(_InRequestOrWarning())
            _replace_handler(logger, handler)
            logger.removeHandler(default_handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False
        else:
            _replace_handler(logger, None)
            logger.setLevel(logging.NOTSET)
            logger.propagate = True
    # Flask adds its own handler to app.logger when no other handler would
    # print its records; in json mode ours does.
    _ = app.logger


def log_request(fields: dict[str, Any]) -> None:
    """Write the line of one finished request (``fields`` as built by the caller)."""
    message = f"{fields['method']} {fields['path']} {fields['status']} {fields['duration_ms']}ms"
    logging.getLogger(REQUEST_LOGGER).info(message, extra={"log_fields": fields})


def loggable_path(path: str) -> str:
    """The request path as logged: never the query string, and never too long."""
    return path if len(path) <= MAX_PATH else path[:MAX_PATH] + "..."
