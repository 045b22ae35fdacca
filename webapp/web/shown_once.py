"""A new API token, carried across one redirect to the page that shows it.

Creating a token answers with a redirect (post/redirect/get), so reloading
the page that shows the token cannot create a second one. The token has to
reach that page: it waits in the session, taken out by the first page that
reads it. Flask's session is a signed cookie, readable by whoever holds it,
so the token is kept there encrypted (Fernet: AES-128-CBC with an HMAC-SHA256
tag, a fresh IV each time) under a key derived from the application's secret
key for this purpose alone. Neither the cookie alone nor the database ever
holds the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app, session

_SESSION_KEY = "token_to_show"
_PURPOSE = b"profile-audit: a new API token, shown once"
#: a token not shown within this many seconds is dropped rather than shown late
_SHOW_WITHIN_SECONDS = 600


def _cipher() -> Fernet:
    secret_key = current_app.secret_key
    key_bytes = secret_key.encode() if isinstance(secret_key, str) else bytes(secret_key or b"")
    key = hmac.new(key_bytes, _PURPOSE, hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def keep_for_next_page(token_id: int, token: str) -> None:
    """Hold ``token`` (of the API token ``token_id``) for the next page to show."""
    session[_SESSION_KEY] = {"id": token_id, "sealed": _cipher().encrypt(token.encode()).decode()}


def take() -> tuple[int, str] | None:
    """The held token's id and value, removed from the session; None if none is held."""
    held = session.pop(_SESSION_KEY, None)
    if not isinstance(held, dict):
        return None
    try:
        sealed = str(held["sealed"]).encode()
        token = _cipher().decrypt(sealed, ttl=_SHOW_WITHIN_SECONDS).decode()
        return int(held["id"]), token
    except (KeyError, TypeError, ValueError, InvalidToken):
        return None
