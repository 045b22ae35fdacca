"""Error reports to Sentry, when ``SENTRY_DSN`` is set (the ``sentry`` extra).

Reports carry no personal data: no request bodies, cookies, query strings,
local variables or user details, no ``Authorization``/``Cookie`` headers, and
every remaining string is passed through the log redaction (emails, tokens).
"""

from __future__ import annotations

import warnings
from typing import Any

from flask import Flask

from webapp.observability.logs import redact

#: Headers never sent, compared in lower case.
SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-csrftoken", "x-csrf-token"}
)
#: Parts of the request Sentry would otherwise attach.
DROPPED_REQUEST_KEYS = ("data", "cookies", "query_string", "env")


def _scrub_strings(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _scrub_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub_strings(item) for item in value]
    return value


def scrub_event(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """``before_send``: remove what could hold a secret or personal data."""
    request = event.get("request")
    if isinstance(request, dict):
        for key in DROPPED_REQUEST_KEYS:
            request.pop(key, None)
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {
                name: value
                for name, value in headers.items()
                if name.lower() not in SENSITIVE_HEADERS
            }
        if isinstance(request.get("url"), str):
            request["url"] = request["url"].split("?", 1)[0]
    event.pop("user", None)
    return _scrub_strings(event)  # type: ignore[no-any-return]


def scrub_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """``before_breadcrumb``: the same redaction for log messages kept as breadcrumbs."""
    return _scrub_strings(crumb)  # type: ignore[no-any-return]


def init_sentry(app: Flask) -> bool:
    """Start the Sentry client if ``SENTRY_DSN`` is set; return whether it was.

    With the DSN set but sentry-sdk missing, refuse to start: silently running
    without the error reports someone configured is worse than failing.
    """
    dsn = app.config.get("SENTRY_DSN")
    if not dsn:
        return False
    try:
        import sentry_sdk
        from sentry_sdk.integrations.flask import FlaskIntegration
    except ImportError:
        raise RuntimeError(
            "SENTRY_DSN is set but sentry-sdk is not installed: "
            "install profile-audit[sentry] or unset SENTRY_DSN."
        ) from None
    with warnings.catch_warnings():
        # Newer SDKs deprecate send_default_pii for data_collection; it still
        # works everywhere and is the setting people audit for, so keep it.
        warnings.filterwarnings("ignore", "The send_default_pii option", DeprecationWarning)
        _init(sentry_sdk, FlaskIntegration, app, dsn)
    return True


def _init(sentry_sdk: Any, integration: Any, app: Flask, dsn: str) -> None:
    sentry_sdk.init(
        dsn=dsn,
        integrations=[integration()],
        environment=app.config["APP_ENV"],
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        traces_sample_rate=app.config["SENTRY_TRACES_SAMPLE_RATE"],
        before_send=scrub_event,
        before_send_transaction=scrub_event,
        before_breadcrumb=scrub_breadcrumb,
    )
