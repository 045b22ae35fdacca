"""``make run``'s server: embedded PostgreSQL, migrations, a first admin account
on an empty database, serving, and a clean stop on Ctrl-C that leaves nothing
running and keeps the data for next time."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent


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
    """``python -m webapp.devserver`` with its output collected as it comes."""

    def __init__(self, pgdata: Path, port: int) -> None:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env.update({"EMBEDDED_PGDATA": str(pgdata), "PORT": str(port)})
        self.base = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "webapp.devserver"],
            cwd=ROOT,
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


def _flask_token(database_url: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "FLASK_APP"}
    env["DATABASE_URL"] = database_url
    result = subprocess.run(
        [sys.executable, "-m", "flask", "token", "create", "admin", "--name", "devserver test"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def _sign_in(base: str, username: str, password: str) -> int:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), NoRedirect()
    )
    with opener.open(base + "/login", timeout=5) as response:
        page = response.read().decode()
    csrf = _printed(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    form = urllib.parse.urlencode(
        {"csrf_token": csrf, "username": username, "password": password}
    ).encode()
    try:
        with opener.open(base + "/login", data=form, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _postgres_processes(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and any(str(pgdata) in part for part in cmdline):
            found.append(proc)
    return found


def test_serves_on_embedded_postgres_and_stops_cleanly_on_ctrl_c(tmp_path):
    pgdata = tmp_path / "pgdata"
    port = _free_port()

    server = DevServer(pgdata, port)
    try:
        server.wait_until_serving()
        first_output = server.output
        # The first run creates `admin` with a random password and shows it.
        password = _printed(r"Password\s+(\S+)", first_output)
        assert f"Sign in at  http://127.0.0.1:{port}/login" in first_output
        assert _sign_in(server.base, "admin", password) == 302
        # ... and says how to run `flask` commands against its database.
        database_url = _printed(r"export DATABASE_URL='([^']+)'", first_output)
        token = _flask_token(database_url)
        status, created = _request(
            server.base + "/api/v1/users", token, {"name": "Ada", "email": "a@example.com"}
        )
        assert status == 201
        assert _postgres_processes(pgdata)
    finally:
        output = server.stop()
    assert "Stopping the embedded PostgreSQL" in output
    assert _postgres_processes(pgdata) == []

    # The data is kept for the next run, and the password is not shown again.
    server = DevServer(pgdata, port)
    try:
        server.wait_until_serving()
        _, listing = _request(server.base + "/api/v1/users", token)
        assert [u["id"] for u in listing["items"]] == [created["id"]]
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
    assert _postgres_processes(pgdata) == []


def test_first_admin_password_is_random(tmp_path):
    passwords = []
    for run in range(2):
        server = DevServer(tmp_path / f"pgdata-{run}", _free_port())
        try:
            server.wait_until_serving()
        finally:
            output = server.stop()
        passwords.append(_printed(r"Password\s+(\S+)", output))
    assert passwords[0] != passwords[1]
    assert all(len(password) >= 12 for password in passwords)
