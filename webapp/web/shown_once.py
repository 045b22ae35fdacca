"""A new API token, carried across one redirect to the page that shows it.

Creating a token answers with a redirect (post/redirect/get), so reloading
the page that shows the token cannot create a second one. The token has to
reach that page: it waits in the session, taken out by the first page that
reads it. Flask's session is a signed cookie, readable by whoever holds it,
so the token is kept there encrypted under a key derived from the
application's secret key (HMAC-SHA256 as a keystream, with a fresh random
nonce each time); the cookie's signature keeps it from being altered. Neither
the cookie alone nor the database ever holds the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from flask import current_app, session

_SESSION_KEY = "token_to_show"
_PURPOSE = b"profile-audit: a new API token, shown once"


def _keystream(nonce: bytes, length: int) -> bytes:
    secret_key = current_app.secret_key
    key_bytes = secret_key.encode() if isinstance(secret_key, str) else bytes(secret_key or b"")
    key = hmac.new(key_bytes, _PURPOSE, hashlib.sha256).digest()
    blocks = (length + 31) // 32
    stream = b"".join(
        hmac.new(key, nonce + block.to_bytes(4, "big"), hashlib.sha256).digest()
        for block in range(blocks)
    )
    return stream[:length]


def _xor(data: bytes, pad: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, pad, strict=True))


def keep_for_next_page(token_id: int, token: str) -> None:
    """Hold ``token`` (of the API token ``token_id``) for the next page to show."""
    data = token.encode()
    nonce = secrets.token_bytes(16)
    session[_SESSION_KEY] = {
        "id": token_id,
        "nonce": base64.urlsafe_b64encode(nonce).decode(),
        "sealed": base64.urlsafe_b64encode(_xor(data, _keystream(nonce, len(data)))).decode(),
    }


def take() -> tuple[int, str] | None:
    """The held token's id and value, removed from the session; None if none is held."""
    held = session.pop(_SESSION_KEY, None)
    if not isinstance(held, dict):
        return None
    try:
        nonce = base64.urlsafe_b64decode(held["nonce"])
        sealed = base64.urlsafe_b64decode(held["sealed"])
        token = _xor(sealed, _keystream(nonce, len(sealed))).decode()
        return int(held["id"]), token
    except (KeyError, TypeError, ValueError):
        return None
