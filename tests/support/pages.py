"""Using the dashboard like a browser without JavaScript: CSRF tokens from
forms and pages, signing in through the login form, posting forms as htmx or
a plain browser sends them, and reading pages as text."""

from __future__ import annotations

import html
import re

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.support.staff import PASSWORD

CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*?value="([^"]+)"')
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
HTMX = {"HX-Request": "true"}


def form_token(client: FlaskClient, path: str = "/login", **kwargs: object) -> str:
    """The CSRF token of the first form on ``path``, as a browser would submit it."""
    page = client.get(path, **kwargs)
    assert page.status_code == 200, page.status_code
    return CSRF_FIELD.search(page.get_data(as_text=True)).group(1)


def page_token(client: FlaskClient, path: str = "/") -> str:
    """The CSRF token a signed-in page carries in its meta tag (what htmx sends)."""
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    return CSRF_META.search(page.get_data(as_text=True)).group(1)


def post_sign_in(
    client: FlaskClient,
    username: str,
    password: str = PASSWORD,
    *,
    next_path: str | None = None,
    **kwargs: object,
) -> TestResponse:
    """Submit the login form; the response, whatever it is."""
    data = {"csrf_token": form_token(client, **kwargs), "username": username}
    data["password"] = password
    if next_path is not None:
        data["next"] = next_path
    return client.post("/login", data=data, **kwargs)


def sign_in(client: FlaskClient, username: str, password: str = PASSWORD) -> FlaskClient:
    """Sign ``client`` in through the login form."""
    response = post_sign_in(client, username, password)
    assert response.status_code == 302, response.status_code
    return client


def htmx_post(browser: FlaskClient, path: str, data: dict[str, object]) -> TestResponse:
    """A post as htmx sends it: the CSRF token in a header, not in the form."""
    token = page_token(browser)
    return browser.post(path, data=data, headers={**HTMX, "X-CSRFToken": token})


def plain_post(browser: FlaskClient, path: str, data: dict[str, object]) -> TestResponse:
    """A post as a browser without JavaScript sends it: the token in the form."""
    token = page_token(browser)
    return browser.post(path, data={"csrf_token": token, **data})


def body(response: TestResponse) -> str:
    """The response body as it came."""
    return response.get_data(as_text=True)


def text_of(response: TestResponse) -> str:
    """The response body with HTML entities decoded, for plain-text assertions."""
    return html.unescape(body(response))
