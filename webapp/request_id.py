"""A request id for every request, made by the server; a client's own is kept beside it.

The server's id is echoed in the response header and in error bodies, so a
user's report can be matched with the server's log line and the request's
audit entries. A client's own ``X-Request-ID`` is only a label: any client
can send any value, twice or on purpose, so it is never used as the
request's id. When it is well-formed it is kept as ``g.client_request_id``
(logged and stored beside the server's id); otherwise it is dropped.
"""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request

HEADER = "X-Request-ID"
#: What a client's id must look like to be kept (no spaces, quotes or markup).
CLIENT_ID_PATTERN = r"^[A-Za-z0-9._:-]{8,128}$"
_VALID = re.compile(CLIENT_ID_PATTERN)


def client_request_id(value: str) -> str | None:
    """A client's ``X-Request-ID`` if it is well-formed, else ``None``."""
    # fullmatch: "$" would also accept a trailing newline.
    return value if _VALID.fullmatch(value) else None


def init_app(app: Flask) -> None:
    @app.before_request
    def assign_request_id() -> None:
        g.request_id = uuid.uuid4().hex
        g.client_request_id = client_request_id(request.headers.get(HEADER, ""))

    @app.after_request
    def echo_request_id(response: Response) -> Response:
        if "request_id" in g:
            response.headers[HEADER] = g.request_id
        return response
