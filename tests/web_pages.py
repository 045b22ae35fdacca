"""Helpers for tests that use the dashboard like a browser without JavaScript:
CSRF tokens from forms and pages, and signing in through the login form."""

from __future__ import annotations

import html
import re

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*?value="([^"]+)"')
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
HTMX = {"HX-Request": "true"}


def form_token(client: FlaskClient, path: str = "/login") -> str:
    """The CSRF token of the first form on ``path``."""
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    return CSRF_FIELD.search(page.get_data(as_text=True)).group(1)


def page_token(client: FlaskClient, path: str = "/") -> str:
    """The CSRF token a signed-in page carries in its meta tag (what htmx sends)."""
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    return CSRF_META.search(page.get_data(as_text=True)).group(1)


def sign_in(client: FlaskClient, username: str, password: str) -> FlaskClient:
    """Sign ``client`` in through the login form."""
    response = client.post(
        "/login",
        data={"csrf_token": form_token(client), "username": username, "password": password},
    )
    assert response.status_code == 302, response.status_code
    return client


def text_of(response: TestResponse) -> str:
    """The response body with HTML entities decoded, for plain-text assertions."""
    return html.unescape(response.get_data(as_text=True))
