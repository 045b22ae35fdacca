"""Pages and their htmx fragments from one template.

A fragment is a ``{% block %}`` of the page template, rendered alone when htmx
asks for it, so pages and fragments share their markup.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Response, make_response, redirect, render_template, request
from jinja2_fragments.flask import render_block


def wants_fragment() -> bool:
    """An htmx request, except a history restore, which needs the whole page."""
    return (
        request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


def render_page(
    template: str, block: str | None = None, *, status: int = 200, **context: Any
) -> Response:
    """The whole page, or only ``block`` of it for htmx requests.

    The answer depends on ``HX-Request``, so it says so in ``Vary``: otherwise
    a cache (the browser's back button included) could serve a bare fragment
    as a page.
    """
    if block is not None and wants_fragment():
        body = render_block(template, block, **context)
    else:
        body = render_template(template, **context)
    response = make_response(body, status)
    response.vary.add("HX-Request")
    return response


def without_empty_parameters() -> Response | None:
    """A redirect to this page's address without its empty parameters, if it has any.

    A form sent without JavaScript sends every field, filled or not; the
    address people bookmark and share should name only what they chose.
    htmx requests are left alone (static/app.js drops empty fields there).
    """
    if request.method != "GET" or wants_fragment():
        return None
    pairs = list(request.args.items(multi=True))
    kept = [(name, value) for name, value in pairs if value.strip()]
    if len(kept) == len(pairs):
        return None
    target = request.path + (f"?{urlencode(kept)}" if kept else "")
    response = redirect(target)
    response.vary.add("HX-Request")
    return response
