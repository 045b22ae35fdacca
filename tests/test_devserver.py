"""``make run``'s server: its own random keys kept in ``instance/``, embedded
PostgreSQL, migrations, a first admin account on an empty database, serving,
and a clean stop on Ctrl-C that leaves nothing running and keeps the data and
the keys for next time.

Each test runs the server from a fresh copy of the project (what a new clone
has), so it makes its keys where a clone's ``make run`` would, never in this
checkout's ``instance/``."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from tests.support.cli import ROOT, run_command
from webapp.config import KEY_SETTINGS
from webapp.dev.local_database import private_tree, scratch_directory
from webapp.dev.server import read_keys_file

#: What a clone holds that the server reads; instance/ is not in a clone.
PROJECT_FILES = ("webapp", "migrations", "templates", "static", ".flaskenv")


_clones: list[Path] = []


def fresh_clone(directory: Path) -> Path:
    """The project's files in ``directory``, as a new clone has them (no ``instance/``)."""
    _clones.append(directory)
    directory.mkdir()
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, directory / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, directory / name)
    return directory


@pytest.fixture(autouse=True)
def _remove_private_trees() -> Iterator[None]:
    """As root each clone's `make run` gets a private tree outside the clone: remove it."""
    yield
    while _clones:
        clone = _clones.pop()
        if os.geteuid() == 0:
            shutil.rmtree(private_tree(clone), ignore_errors=True)


@pytest.fixture
def data_parent() -> Iterator[Path]:
    """Where a test's servers keep their data: a place the embedded server's
    own user reaches when started by root, unlike pytest's 0700 temp tree."""
    directory = scratch_directory("profile-audit-devserver-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(url: str, token: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - a loopback URL built above
        url,
        data=data,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return response.status, json.loads(response.read())


class DevServer:
    """``python -m webapp.dev.server`` with its output collected as it comes."""

    def __init__(self, project: Path, pgdata: Path, port: int) -> None:
        # As a person runs it: no keys and no database given (the server must
        # make and find its own), and the sealer thread on.
        left_out = {"DATABASE_URL", "AUDIT_SEALER", *KEY_SETTINGS}
        env = {k: v for k, v in os.environ.items() if k not in left_out}
        env.update({"EMBEDDED_PGDATA": str(pgdata), "PORT": str(port)})
        self.base = f"http://127.0.0.1:{port}"
        # From the project's directory, `-m` imports that copy's package.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "webapp.dev.server"],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._lines: list[str] = []
        # Read all along, so a full pipe never blocks the server.
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self._lines)

    def wait_until_serving(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._reader.join(5)
                pytest.fail(f"server exited early:\n{self.output}")
            try:
                urllib.request.urlopen(self.base + "/login", timeout=5).close()  # noqa: S310
                return
            except OSError:
                time.sleep(0.2)
        self.process.kill()
        pytest.fail("server did not start within 60 s")

    def stop(self) -> str:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        self._reader.join(5)
        assert self.process.returncode == 0, self.output
        return self.output


def _printed(pattern: str, output: str) -> str:
    found = re.search(pattern, output)
    assert found, output
    return found.group(1)


def _flask_token(project: Path, output: str) -> str:
    """``flask token create`` in another terminal, set up exactly as the server said."""
    setup = "\n".join(
        line.strip()
        for line in output.splitlines()
        if line.strip().startswith(("export DATABASE_URL=", "set -a; . "))
    )
    assert setup.count("\n") == 1, output
    env = {k: v for k, v in os.environ.items() if k not in {"FLASK_APP", *KEY_SETTINGS}}
    command = f"{setup}\nexec {sys.executable} -m flask token create admin --name devserver-test"
    result = run_command(["/bin/sh", "-c", command], cwd=project, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _browser() -> tuple[urllib.request.OpenerDirector, http.cookiejar.CookieJar]:
    jar = http.cookiejar.CookieJar()
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect()), jar


def _open(opener: urllib.request.OpenerDirector, url: str, data: bytes | None = None) -> int:
    try:
        with opener.open(url, data=data, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _sign_in(base: str, username: str, password: str) -> tuple[int, str]:
    """The status of a sign-in through the form, and the session cookie it got."""
    opener, jar = _browser()
    with opener.open(base + "/login", timeout=5) as response:
        page = response.read().decode()
    csrf = _printed(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    form = urllib.parse.urlencode(
        {"csrf_token": csrf, "username": username, "password": password}
    ).encode()
    status = _open(opener, base + "/login", form)
    cookie = next((c.value for c in jar if c.name == "session"), "")
    return status, cookie


def _page_with_cookie(url: str, cookie: str) -> tuple[int, str]:
    """GET ``url`` sending only ``cookie`` as the session: the status and where it redirects."""
    request = urllib.request.Request(url, headers={"Cookie": f"session={cookie}"})  # noqa: S310
    opener, _ = _browser()
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, ""
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Location", "")


def _cookie_signed_with(key: str, content: dict) -> str:
    signer = Flask("forger")
    signer.secret_key = key
    return SecureCookieSessionInterface().get_signing_serializer(signer).dumps(content)


def _keys_file(project: Path) -> Path:
    path = project / "instance" / "keys.env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return path


def _postgres_processes(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and any(str(pgdata) in part for part in cmdline):
            found.append(proc)
    return found


def test_serves_on_embedded_postgres_and_stops_cleanly_on_ctrl_c(tmp_path, data_parent):
    project = fresh_clone(tmp_path / "clone")
    pgdata = data_parent / "pgdata"
    port = _free_port()

    server = DevServer(project, pgdata, port)
    try:
        server.wait_until_serving()
        first_output = server.output
        # The first run creates `admin` with a random password and shows it.
        password = _printed(r"Password\s+(\S+)", first_output)
        assert f"Sign in at  http://127.0.0.1:{port}/login" in first_output
        status, session_cookie = _sign_in(server.base, "admin", password)
        assert status == 302
        assert _page_with_cookie(server.base + "/users", session_cookie) == (200, "")
        # A cookie signed with the constant development used to fall back on,
        # naming the first admin, opens nothing.
        now = "2099-01-01T00:00:00.000000Z"
        forged = _cookie_signed_with(
            "dev-only-not-a-secret",
            {"_user_id": "1:1", "_fresh": True, "signed_in_at": now, "seen_at": now},
        )
        status, location = _page_with_cookie(server.base + "/users", forged)
        assert status == 302
        assert location.startswith("/login")
        # ... and says how to run `flask` commands against its database, with its keys.
        token = _flask_token(project, first_output)
        status, created = _request(
            server.base + "/api/v1/users", token, {"name": "Ada", "email": "a@example.com"}
        )
        assert status == 201
        assert _postgres_processes(pgdata)
    finally:
        output = server.stop()
    assert "Stopping the embedded PostgreSQL" in output
    # The sealer linked the last save before the database went away.
    assert "Traceback" not in output
    assert _postgres_processes(pgdata) == []
    keys = read_keys_file(_keys_file(project))
    assert set(keys) == set(KEY_SETTINGS)
    for value in keys.values():
        assert value not in output  # shown nowhere, not even to the developer

    # The data and the keys are kept for the next run, and the password is not
    # shown again: the session signed before the restart still works.
    server = DevServer(project, pgdata, port)
    try:
        server.wait_until_serving()
        _, listing = _request(server.base + "/api/v1/users", token)
        assert [u["id"] for u in listing["items"]] == [created["id"]]
        assert _page_with_cookie(server.base + "/users", session_cookie) == (200, "")
        _, chain = _request(server.base + "/api/v1/audit/verify", token)
        assert (chain["head"]["seq"], chain["pending_entries"]) == (1, 0)
        # A search is a name or an email: the access log never shows it.
        _, found = _request(server.base + "/api/v1/users?q=a%40example.com&limit=7", token)
        assert [u["id"] for u in found["items"]] == [created["id"]]
    finally:
        output = server.stop()
    assert "GET /api/v1/users?[query] HTTP/1.1" in output
    assert "a%40example.com" not in output
    assert "a@example.com" not in output
    assert "limit=7" not in output
    assert "First run" not in output
    assert password not in output
    assert "export DATABASE_URL=" in output
    assert read_keys_file(_keys_file(project)) == keys
    assert _postgres_processes(pgdata) == []


def test_two_fresh_clones_get_their_own_keys_and_admin_passwords(tmp_path, data_parent):
    passwords, keys = [], []
    for run in range(2):
        project = fresh_clone(tmp_path / f"clone-{run}")
        server = DevServer(project, data_parent / f"pgdata-{run}", _free_port())
        try:
            server.wait_until_serving()
        finally:
            output = server.stop()
        passwords.append(_printed(r"Password\s+(\S+)", output))
        keys.append(read_keys_file(_keys_file(project)))
    assert passwords[0] != passwords[1]
    assert all(len(password) >= 12 for password in passwords)
    for name in KEY_SETTINGS:
        assert keys[0][name] != keys[1][name]
        assert len(keys[0][name]) >= 43
    # Within a clone, too, every key is different.
    assert len(set(keys[0].values())) == len(KEY_SETTINGS)


def test_the_keys_file_is_never_committed():
    ignored = subprocess.run(
        ["git", "check-ignore", "--quiet", "--no-index", "instance/keys.env"],  # noqa: S607
        cwd=ROOT,
        check=False,
    )
    assert ignored.returncode == 0, ".gitignore must cover instance/keys.env"


def _modes(path: Path) -> dict[Path, int]:
    return {step: step.stat().st_mode for step in [path, *path.parents] if step.exists()}


@pytest.mark.skipif(
    os.geteuid() != 0, reason="the embedded server switches users only when started by root"
)
def test_as_root_data_in_a_closed_home_is_refused_in_one_line_and_nothing_is_opened(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o700)
    before = _modes(home)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["EMBEDDED_PGDATA"] = str(home / "pgdata")
    result = run_command(
        [sys.executable, "-W", "ignore", "-m", "webapp.dev.server"], cwd=ROOT, env=env
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [refusal] = [line for line in result.stderr.splitlines() if "cannot enter" in line]
    assert "runs as the system user embedded_postgres" in refusal
    assert f"unset EMBEDDED_PGDATA to keep the data in {private_tree() / 'pgdata'}" in refusal
    assert _modes(home) == before
    assert not (home / "pgdata").exists()
