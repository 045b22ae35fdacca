"""axe-core over every main page, at desktop and phone sizes: no violation of any impact.

axe.min.js is the npm package's build as bundled by a pinned dev dependency
(``axe-playwright-python``), read from disk and injected into each page:
nothing is fetched while the tests run. The app's CSP forbids injected
scripts, so the checking browser context bypasses it (the app's own CSP is
unchanged, and other browser tests watch it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources

import pytest
from flask import Flask
from playwright.sync_api import Browser, BrowserContext, Page

from webapp.audit.context import Actor, Origin, acting_as
from webapp.services import users

AXE_SOURCE = resources.files("axe_playwright_python").joinpath("axe.min.js").read_text()
SIZES = {"desktop": (1366, 900), "phone": (390, 844)}


def axe_violations(page: Page) -> list[dict]:
    """The violations axe-core finds on the page as it is now (every impact)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=AXE_SOURCE)
    return page.evaluate("axe.run(document, {resultTypes: ['violations']}).then(r => r.violations)")


def describe(violations: list[dict]) -> str:
    """One line per violation and the first few elements it was found on."""
    lines = []
    for violation in violations:
        targets = [json.dumps(node["target"]) for node in violation["nodes"][:4]]
        where = ", ".join(targets)
        lines.append(f"{violation['id']} ({violation['impact']}): {violation['help']} on {where}")
    return "\n".join(lines)


def test_axe_core_is_the_bundled_npm_build() -> None:
    assert AXE_SOURCE.startswith("/*! axe v4.")


@pytest.fixture
def site(app: Flask, staff_factory) -> dict[str, int]:
    """A few profiles with a history (one rewritten, deleted, restored), a token."""
    editor = staff_factory.account("support", "sam")
    with app.app_context(), acting_as(Actor(editor.id, editor.username), Origin("web")):
        for name, email in [("Grace Hopper", "grace@example.com"), ("Alan Turing", "alan@x.org")]:
            users.create_user({"name": name, "email": email}, reason="onboarding")
        ada = users.create_user({"name": "Ada Lovelace", "email": "ada@example.com"})
        users.update_user(ada.id, {"name": "Augusta Ada King"}, reason="legal name")
        users.delete_user(ada.id, reason="duplicate account")
        users.restore_user(ada.id, reason="deleted by mistake")
    staff_factory.token(editor, "nightly-import")
    return {"profile": ada.id}


def _context(browser: Browser, live_server: str, size: tuple[int, int]) -> BrowserContext:
    width, height = size
    context = browser.new_context(
        base_url=live_server, viewport={"width": width, "height": height}, bypass_csp=True
    )
    context.set_default_timeout(10_000)
    return context


def _sign_in(page: Page, username: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


@pytest.fixture(params=list(SIZES))
def size(request: pytest.FixtureRequest) -> tuple[int, int]:
    return SIZES[request.param]


@pytest.fixture
def contexts(
    browser: Browser, live_server: str, staff_factory, size: tuple[int, int]
) -> Iterator[dict[str, Page]]:
    """Tabs signed in as an admin and as support staff, and one signed out."""
    opened = []
    tabs = {}
    for role in ("admin", "support", None):
        context = _context(browser, live_server, size)
        opened.append(context)
        tab = context.new_page()
        if role is not None:
            account = staff_factory.account(role)
            _sign_in(tab, account.username, staff_factory.password)
        tabs[role or "anonymous"] = tab
    yield tabs
    for context in opened:
        context.close()


def test_every_main_page_has_no_axe_violations(
    contexts: dict[str, Page], site: dict[str, int]
) -> None:
    profile = site["profile"]
    pages = [
        ("anonymous", "/login"),
        ("support", "/users"),
        ("support", f"/users/{profile}"),
        ("support", "/users/new"),
        ("support", f"/users/{profile}/edit"),
        ("admin", f"/users/{profile}/erase"),
        ("support", "/audit"),  # 403: support staff do not read the audit
        ("support", "/users/999999"),  # 404
        ("admin", "/audit"),
        ("admin", "/audit?operation=update&operation=delete&user=Ada"),
        ("admin", "/audit?user=nobody-matches-this"),
        ("admin", "/audit?actor=nobody&operation=delete"),  # no entries: "Clear filters"
        ("admin", "/audit/compare?user_id=a"),  # several profiles to choose from
        ("admin", f"/audit/compare?user_id={profile}&from=2&to=3"),
        ("admin", f"/audit/compare?user_id={profile}"),
        ("admin", f"/audit/as-of?user_id={profile}"),
        ("admin", "/security-events"),
        ("admin", "/admin/staff"),
        ("admin", "/admin/tokens"),
        ("admin", "/api/docs"),
        ("admin", "/"),
    ]
    found = {}
    for who, path in pages:
        tab = contexts[who]
        tab.goto(path)
        # htmx loads the activity chart after the entries: check it too.
        tab.wait_for_load_state("networkidle")
        violations = axe_violations(tab)
        if violations:
            found[f"{who} {path}"] = describe(violations)
        if tab.locator("details:not([open])").count():
            # Folded parts (the filter drawer, the chart) are checked unfolded too.
            tab.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
            violations = axe_violations(tab)
            if violations:
                found[f"{who} {path} (unfolded)"] = describe(violations)
    if found:
        pytest.fail("\n\n".join(f"{where}:\n{text}" for where, text in found.items()))


def _luminance(rgb: str) -> float:
    channels = [int(part) / 255 for part in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(first: str, second: str) -> float:
    light, dark = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_focus_ring_stands_out(contexts: dict[str, Page]) -> None:
    # WCAG 2.4.11/1.4.11: a focus indicator needs 3:1 against what it sits on.
    tab = contexts["support"]
    tab.goto("/users")
    tab.keyboard.press("Tab")
    tab.keyboard.press("Tab")
    ring = tab.evaluate("getComputedStyle(document.activeElement).outlineColor")
    page_colour = tab.evaluate("getComputedStyle(document.body).backgroundColor")
    header_colour = tab.evaluate(
        "getComputedStyle(document.querySelector('.site-header')).backgroundColor"
    )
    assert tab.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    assert _contrast(ring, page_colour) >= 3
    assert _contrast(ring, header_colour) >= 3


def test_the_phone_nav_shows_that_it_scrolls(contexts: dict[str, Page], size) -> None:
    tab = contexts["admin"]
    tab.goto("/users")
    nav = tab.locator(".site-nav")
    overflows = nav.evaluate("nav => nav.scrollWidth > nav.clientWidth")
    shading = nav.evaluate("nav => getComputedStyle(nav).backgroundImage")
    if size[0] < 761:
        # More links than fit: shadows at the edges say there is more to scroll to.
        assert overflows
        assert shading.count("gradient") == 4
    else:
        assert not overflows
