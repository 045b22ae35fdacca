"""The context of the change in progress: why it is made (later also who, from where).

Services open a context around a unit of work; the flush listeners read it.
A ``ContextVar`` keeps concurrent requests and threads apart without the audit
code knowing anything about Flask's request objects.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class ChangeContext:
    """What is known about a change besides the data: its stated reason."""

    reason: str | None = None


_NO_CONTEXT = ChangeContext()
_current: ContextVar[ChangeContext | None] = ContextVar("audit_change_context", default=None)


def current_change() -> ChangeContext:
    """The context of the change being flushed right now."""
    return _current.get() or _NO_CONTEXT


@contextmanager
def change_context(*, reason: str | None = None) -> Iterator[ChangeContext]:
    """Attach ``reason`` to every audit entry written inside the block."""
    context = ChangeContext(reason=reason)
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
