"""Running the real ``flask`` command in a subprocess, as an operator or a
scheduler would: with standard error on a terminal (where progress bars show)
or in a pipe (where they must not)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_flask(
    database_url: str,
    *args: str,
    stderr_on_a_terminal: bool,
    environment: dict[str, str] | None = None,
) -> tuple[int, bytes, str]:
    """``flask ARGS`` from the project root, with ``environment`` added to this
    process's: (status, stdout bytes, stderr text)."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "FLASK_APP"}}
    env["DATABASE_URL"] = database_url
    env.update(environment or {})
    command = [sys.executable, "-m", "flask", *args]
    if not stderr_on_a_terminal:
        done = subprocess.run(  # noqa: S603 - this interpreter, arguments from the tests
            command, cwd=ROOT, env=env, capture_output=True, timeout=120, check=False
        )
        return done.returncode, done.stdout, done.stderr.decode(errors="replace")
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(  # noqa: S603 - this interpreter, arguments from the tests
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=terminal
        )
        os.close(terminal)
        seen = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closes when the command exits
                break
            if not chunk:
                break
            seen += chunk
        stdout, _ = process.communicate(timeout=120)
        return process.returncode, stdout, seen.decode(errors="replace")
    finally:
        os.close(controller)
