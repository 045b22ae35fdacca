"""Pages and their htmx fragments from one template.

A fragment is a ``{% block %}`` of the page template, rendered alone when htmx
asks for it, so pages and fragments share their markup.
"""

from __future__ import annotations

from typing import Any

from flask import Response, make_response, render_template, request
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
