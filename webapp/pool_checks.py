"""Pooled connections are checked before use without a round trip, unless something is wrong.

A pre-ping (a ``SELECT 1`` on every checkout) costs a round trip on every
request, the same as the request's own query. A connection that sat idle in
the pool has nothing to read: the server only writes to it unprompted when it
is going away (terminated backend, restart, shutdown), and then its socket
turns readable (the error message, then end of file). So each checkout asks
the socket, which costs no round trip; only a readable or broken connection is
pinged, and one that fails the ping is replaced before the request sees it
(SQLAlchemy's pool retries the checkout on ``DisconnectionError``).
``DB_POOL_PRE_PING=true`` still pings every checkout.
"""

from __future__ import annotations

import select
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError


def needs_ping(connection: Any) -> bool:
    """True when the idle driver connection may be dead: closed, broken, or the server wrote."""
    if connection.closed or connection.broken:
        return True
    try:
        # poll, not select: select refuses descriptors above 1023, which a busy
        # worker's connections can reach.
        poller = select.poll()
        poller.register(connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def check_on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """The pool's checkout hook: ping only a connection that may be dead."""
    if not needs_ping(dbapi_connection):
        return
    try:
        dbapi_connection.execute("SELECT 1")
        dbapi_connection.rollback()
    except Exception as error:
        raise DisconnectionError(f"pooled connection is gone: {error}") from error


def install(engine: Engine) -> None:
    """Check ``engine``'s pooled psycopg connections at checkout as described above."""
    if engine.dialect.driver != "psycopg":
        return
    if not event.contains(engine, "checkout", check_on_checkout):
        event.listen(engine, "checkout", check_on_checkout)
