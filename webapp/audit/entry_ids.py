"""Entry ids taken from the table's own sequence ahead of the INSERT.

An entry's seal covers its id, so the id must be known before the row is
written. Each process reserves ids in blocks with one statement per
``BLOCK`` entries and hands them out in order, so a save sends no extra
statement. Ids stay unique (they come from the same sequence the database
safety net uses); across processes they are not in time order, which nothing
relies on: the timeline orders by time, then id.
"""

from __future__ import annotations

import os
import threading
from collections import deque

from sqlalchemy import Connection, text

#: Ids reserved per round trip.
BLOCK = 200

_RESERVE = text(
    "SELECT pg_catalog.nextval(pg_catalog.pg_get_serial_sequence('user_audit', 'id')) "
    "FROM pg_catalog.generate_series(1, :count)"
)


class EntryIds:
    """A per-process reserve of ``user_audit`` ids (thread-safe, fork-aware)."""

    def __init__(self, block: int = BLOCK) -> None:
        self._block = block
        self._lock = threading.Lock()
        self._reserve: deque[int] = deque()
        self._pid = os.getpid()

    def take(self, connection: Connection, count: int) -> list[int]:
        """``count`` unused ids, reserving more on ``connection`` when needed."""
        with self._lock:
            if self._pid != os.getpid():  # a forked worker must not reuse its parent's ids
                self._reserve.clear()
                self._pid = os.getpid()
            missing = count - len(self._reserve)
            if missing > 0:
                rows = connection.execute(_RESERVE, {"count": max(missing, self._block)})
                self._reserve.extend(row[0] for row in rows)
            return [self._reserve.popleft() for _ in range(count)]

    def forget(self) -> None:
        """Drop the reserve: after the sequence was reset (tests empty the tables)."""
        with self._lock:
            self._reserve.clear()


#: The process's reserve, shared by every session and thread.
entry_ids = EntryIds()
