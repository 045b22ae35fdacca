"""Browser tests: the app served on 127.0.0.1, driven by Chromium through Playwright.

The app is the suite's own (same database, emptied before every test) served
from a thread. Every page is watched for console errors, which is how a
Content-Security-Policy violation shows itself.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright
from werkzeug.serving import make_server

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
_EXPECTED_4XX = re.compile(r"Failed to load resource: the server responded with a status of 4\d\d")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def live_server(app: Flask) -> Iterator[str]:
    """The base URL of the app, served by a threaded server on a free port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        message = (
            f"Chromium not found at {CHROMIUM}, so the browser tests were skipped: "
            "install Debian's chromium package or set CHROMIUM to a Chromium binary."
        )
        # CI sets REQUIRE_BROWSER_TESTS: there, not running them is a failure.
        if os.environ.get("REQUIRE_BROWSER_TESTS"):
            pytest.fail(message)
        pytest.skip(message)
    chromium = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture
def page(browser: Browser, live_server: str) -> Iterator[Page]:
    """A fresh browser tab (own cookies) at 1280x900, failing the test on console errors."""
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    errors: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        # 4xx answers are expected (forms re-rendered with errors); Chromium
        # reports each as a failed resource. Anything else is a real error.
        if message.type == "error" and not _EXPECTED_4XX.match(message.text):
            errors.append(message.text)

    tab.on("console", watch)
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert errors == [], f"browser console errors: {errors}"


@pytest.fixture
def sign_in(staff_factory: Any) -> Callable[..., object]:
    """Create an account with ``role`` and sign ``page`` in with it through the form."""

    def signed_in(page: Page, role: str, username: str | None = None) -> object:
        staff = staff_factory.account(role, username)
        page.goto("/login")
        page.get_by_label("Username").fill(staff.username)
        page.get_by_label("Password").fill(staff_factory.password)
        page.get_by_role("button", name="Sign in").click()
        # Support staff land on the profile search, the others at home.
        page.wait_for_url(re.compile(r"/(users)?$"))
        return staff

    return signed_in
