"""``make run``'s server: embedded PostgreSQL, migrations, serving, and a clean
stop on Ctrl-C that leaves nothing running and keeps the data for next time."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - a loopback URL built above
        url, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return response.status, json.loads(response.read())


def _start(pgdata: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update({"EMBEDDED_PGDATA": str(pgdata), "PORT": str(port)})
    return subprocess.Popen(
        [sys.executable, "-m", "webapp.devserver"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_until_serving(process: subprocess.Popen, base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited early:\n{process.stdout.read()}")
        try:
            _request(base + "/api/v1/users")
            return
        except OSError:
            time.sleep(0.2)
    process.kill()
    pytest.fail("server did not start within 60 s")


def _postgres_processes(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and any(str(pgdata) in part for part in cmdline):
            found.append(proc)
    return found


def _stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode == 0, output
    return output


def test_serves_on_embedded_postgres_and_stops_cleanly_on_ctrl_c(tmp_path):
    pgdata = tmp_path / "pgdata"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"

    process = _start(pgdata, port)
    try:
        _wait_until_serving(process, base)
        status, created = _request(
            base + "/api/v1/users", {"name": "Ada", "email": "a@example.com"}
        )
        assert status == 201
        assert _postgres_processes(pgdata)
    finally:
        output = _stop(process)
    assert "Stopping the embedded PostgreSQL" in output
    assert _postgres_processes(pgdata) == []

    # The data is kept for the next run.
    process = _start(pgdata, port)
    try:
        _wait_until_serving(process, base)
        _, listing = _request(base + "/api/v1/users")
        assert [u["id"] for u in listing["items"]] == [created["id"]]
    finally:
        _stop(process)
    assert _postgres_processes(pgdata) == []
