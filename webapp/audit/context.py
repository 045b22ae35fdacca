"""The context of the change in progress: who makes it, from where, and why.

The web and API layers bind an ``Actor`` for the duration of a request (the
CLI for the duration of a command); services open a ``change_context`` with
the reason around each unit of work; the flush listeners read both. Context
variables keep concurrent requests and threads apart without the audit code
knowing anything about HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Origin:
    """Where the current work comes from; known before anyone has signed in."""

    #: "web", "api" or "cli"
    channel: str
    remote_addr: str | None = None
    #: the server's own id of the request
    request_id: str | None = None
    #: the X-Request-ID the client sent, when well-formed (its own, never unique)
    client_request_id: str | None = None


@dataclass(frozen=True)
class Actor:
    """Who is acting."""

    #: the staff account, or None for the command line
    staff_id: int | None
    #: readable name kept on entries even if the account changes later
    label: str
    #: the API token's name, or the operating-system user of a CLI command
    channel_detail: str | None = None
    #: the API token acting, whose creator may be someone other than the account
    token_id: int | None = None


@dataclass(frozen=True)
class ChangeContext:
    """What is known about a change besides the data: its stated reason."""

    reason: str | None = None


_NO_CONTEXT = ChangeContext()
_change: ContextVar[ChangeContext | None] = ContextVar("audit_change_context", default=None)
_actor: ContextVar[Actor | None] = ContextVar("audit_actor", default=None)
_origin: ContextVar[Origin | None] = ContextVar("audit_origin", default=None)


def current_change() -> ChangeContext:
    """The context of the change being flushed right now."""
    return _change.get() or _NO_CONTEXT


def current_actor() -> Actor | None:
    """Who is acting right now, if anyone has said so."""
    return _actor.get()


def current_origin() -> Origin | None:
    """Where the current work comes from, if known."""
    return _origin.get()


@contextmanager
def change_context(*, reason: str | None = None) -> Iterator[ChangeContext]:
    """Attach ``reason`` to every audit entry written inside the block."""
    context = ChangeContext(reason=reason)
    token = _change.set(context)
    try:
        yield context
    finally:
        _change.reset(token)


@contextmanager
def acting_as(actor: Actor, origin: Origin | None = None) -> Iterator[Actor]:
    """Attribute every change made inside the block to ``actor`` (from ``origin``)."""
    actor_token = _actor.set(actor)
    origin_token = _origin.set(origin) if origin is not None else None
    try:
        yield actor
    finally:
        if origin_token is not None:
            _origin.reset(origin_token)
        _actor.reset(actor_token)


def bind_origin(origin: Origin) -> Token[Origin | None]:
    """Set the origin until ``unbind`` (for a request's whole lifetime)."""
    return _origin.set(origin)


def bind_actor(actor: Actor) -> Token[Actor | None]:
    """Set the actor until ``unbind`` (once a request is authenticated)."""
    return _actor.set(actor)


def unbind(token: Token[Any]) -> None:
    """Undo a ``bind_origin`` or ``bind_actor``."""
    token.var.reset(token)
