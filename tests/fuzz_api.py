"""Fuzz the JSON API with Schemathesis, against its own OpenAPI document.

Not a pytest module (pytest collects only ``test_*.py``). Run it directly::

    .venv/bin/python tests/fuzz_api.py [--max-examples N] [--seed N] [-- extra st options]

It starts a throwaway embedded PostgreSQL (or uses ``TEST_DATABASE_URL``'s
server), applies the migrations to a database of its own, creates an admin
account and an API token, serves the app on 127.0.0.1 (a Werkzeug server in a
thread) and runs ``schemathesis run`` on ``/api/v1/openapi.json`` with these
checks: no server errors (5xx), every status documented, content types, headers
and bodies as documented. It exits non-zero on any failure, and removes the
database (and the embedded server) afterwards.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from flask_migrate import upgrade
from sqlalchemy import create_engine, text
from werkzeug.serving import make_server

from webapp import create_app
from webapp.audit.context import Actor, Origin, acting_as
from webapp.config import KEY_SETTINGS, database_url, random_key
from webapp.dev.local_database import (
    drop_database,
    ensure_database,
    scratch_directory,
    start_embedded_server,
)
from webapp.extensions import db
from webapp.models import Staff
from webapp.services import api_tokens

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=100, help="per operation and phase")
    parser.add_argument("--seed", type=int, default=None, help="for a reproducible run")
    parser.add_argument("extra", nargs="*", help="more `schemathesis run` options, after --")
    args = parser.parse_args(argv)

    external = os.environ.get("TEST_DATABASE_URL")
    scratch = scratch_directory("profile-audit-fuzz-")
    server = None
    try:
        if external:
            server_url = external
        else:
            server = start_embedded_server(scratch / "data", delete_on_stop=True)
            server_url = server.get_uri()
        name = f"profile_audit_fuzz_{os.getpid()}"
        drop_database(server_url, name)
        url = ensure_database(server_url, name)
        try:
            return _fuzz(url, args, scratch)
        finally:
            drop_database(server_url, name)
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(scratch, ignore_errors=True)


def _fuzz(url: str, args: argparse.Namespace, scratch: Path) -> int:
    # Keys made for this run only: the app has none built in.
    keys = {name: random_key() for name in KEY_SETTINGS}
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url(url), **keys})
    with app.app_context():
        upgrade()
    token = _admin_token(app, url)

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    http = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, name="fuzz-server", daemon=True)
    thread.start()
    try:
        schema_url = f"http://127.0.0.1:{http.server_port}/api/v1/openapi.json"
        command = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            schema_url,
            "--checks",
            ",".join(CHECKS),
            "--max-examples",
            str(args.max_examples),
            "--header",
            f"Authorization: Bearer {token}",
            # One worker: with several threads, Hypothesis's lambda-source
            # parsing can trip over itself (a Schemathesis error, not an API one).
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--request-timeout",
            "20",
            "--report-dir",
            str(scratch / "report"),
            "--no-color",
        ]
        if args.seed is not None:
            command += ["--seed", str(args.seed)]
        command += args.extra
        # The token is a throwaway of a throwaway database, but keep it out of the echo.
        shown = [c if token not in c else "Authorization: Bearer ..." for c in command]
        print("running:", " ".join(shown))
        sys.stdout.flush()
        # In the scratch directory: Schemathesis leaves a cache where it runs.
        return subprocess.call(command, cwd=scratch)  # noqa: S603 - our interpreter, our arguments
    finally:
        http.shutdown()
        # Its last entries linked while the database is still there.
        sealer = app.extensions.get("audit_sealer")
        if sealer is not None:
            sealer.close()
        thread.join(timeout=10)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def _admin_token(app, url: str) -> str:
    """An admin account (no usable password) and a token for it."""
    engine = create_engine(database_url(url))
    try:
        with engine.begin() as connection:
            staff_id = connection.execute(
                text(
                    "INSERT INTO staff (username, password_hash, role) "
                    "VALUES (:u, '!', 'admin') RETURNING id"
                ),
                {"u": f"fuzz-{uuid.uuid4().hex[:6]}"},
            ).scalar_one()
    finally:
        engine.dispose()
    with app.app_context(), acting_as(Actor(None, "cli:fuzz"), Origin("cli")):
        _, secret = api_tokens.create_token(db.session.get(Staff, staff_id), "fuzz")
    return secret


if __name__ == "__main__":
    sys.exit(main())
