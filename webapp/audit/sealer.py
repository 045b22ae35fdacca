"""The sealer: links committed entries into the hash chain, after COMMIT, in batches.

Each application process runs one in a background thread, started on first
use (so a process forked after the app was created starts its own). A commit
that wrote entries wakes it; it also looks every ``AUDIT_SEAL_POLL_SECONDS``
for entries written elsewhere (another process, a command, the database's
safety net); a process that exits (a ``flask`` command) links what is left
first. Each batch is its own short transaction on its own connection;
when another process's sealer holds the head, this one retries shortly, so an
entry waits at most about one batch of another sealer. ``flask audit seal``
does the same work once, for deployments that run no web process.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from typing import Any

from flask import Flask
from sqlalchemy import Engine

from webapp.audit import chain

log = logging.getLogger(__name__)

#: After a wake-up, wait this long for more commits, so that under load one
#: batch links many entries instead of one transaction per save.
GATHER_SECONDS = 0.2
#: Wait before trying again when another sealer holds the head.
BUSY_RETRY_SECONDS = 0.05
#: A process's sealer that found the head held looks again this much later,
#: in case the holder had finished its last batch before this entry committed.
BUSY_RECHECK_SECONDS = 0.25
#: Wait after a failed batch (database down) before trying again.
ERROR_RETRY_SECONDS = 1.0


def link_all(engine: Any, key: bytes, *, batch: int = chain.LINK_BATCH) -> int:
    """Link every queued entry, one transaction per batch; return how many.

    Waits while another sealer holds the head, so that when it returns every
    entry committed before the call is linked.
    """
    while True:
        linked = link_unless_held(engine, key, batch=batch)
        if linked is not None:
            return linked
        time.sleep(BUSY_RETRY_SECONDS)


def link_unless_held(engine: Any, key: bytes, *, batch: int = chain.LINK_BATCH) -> int | None:
    """Link every queued entry, as ``link_all``; but return ``None`` at once when
    another sealer holds the head. That one goes on until the queue is empty,
    so contending for the head would only cost the database."""
    linked = 0
    while True:
        with engine.begin() as connection:
            count = chain.link_pending(connection, key, batch)
        if count is None:
            return None if linked == 0 else linked
        linked += count
        if count == 0:
            return linked


class Sealer:
    """One background linker per process for ``app``."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.poll_seconds = float(app.config["AUDIT_SEAL_POLL_SECONDS"])
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def notify(self) -> None:
        """Entries were committed: link them soon."""
        self.ensure_running()
        self._wake.set()

    def ensure_running(self) -> None:
        """Start this process's thread if it has none (cheap when it has)."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._wake = threading.Event()
            self._thread = threading.Thread(target=self._run, name="audit-sealer", daemon=True)
            self._thread.start()
            # A command's process may end before the thread's next batch.
            atexit.register(self._link_before_exit, os.getpid())

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread after its current batch; nothing is linked at exit then."""
        atexit.unregister(self._link_before_exit)
        self._stop_thread(timeout)

    def _stop_thread(self, timeout: float) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join(timeout)

    def close(self) -> None:
        """Stop the thread and link what is left (before the database goes away)."""
        atexit.unregister(self._link_before_exit)
        self._link_before_exit(os.getpid())

    def _link_before_exit(self, pid: int) -> None:
        if pid != os.getpid() or self._stopping.is_set():
            return
        self._stop_thread(5.0)
        try:
            with self.app.app_context():
                link_all(self._engine(), self.app.config["AUDIT_CHAIN_KEY"].encode())
        except Exception:
            log.exception("linking audit entries before exit failed; the next sealer will")

    def _engine(self) -> Engine:
        """The app's database engine (inside its app context)."""
        return self.app.extensions["sqlalchemy"].engine  # type: ignore[no-any-return]

    def _run(self) -> None:
        key = self.app.config["AUDIT_CHAIN_KEY"].encode()
        timeout = self.poll_seconds
        while not self._stopping.is_set():
            if self._wake.wait(timeout):
                time.sleep(GATHER_SECONDS)
            self._wake.clear()
            try:
                with self.app.app_context():
                    linked = link_unless_held(self._engine(), key)
                timeout = self.poll_seconds if linked is not None else BUSY_RECHECK_SECONDS
            except Exception:
                log.exception("linking audit entries failed; retrying")
                time.sleep(ERROR_RETRY_SECONDS)


def init_app(app: Flask) -> None:
    """Give ``app`` a sealer unless ``AUDIT_SEALER`` is ``off`` (tests link explicitly)."""
    if app.config["AUDIT_SEALER"] == "thread":
        sealer = Sealer(app)
        app.extensions["audit_sealer"] = sealer
        # Processes that never save still link what others wrote.
        app.before_request(sealer.ensure_running)
