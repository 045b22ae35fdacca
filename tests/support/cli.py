"""The ``flask`` command: in-process through Flask's CLI runner, and for real
in a subprocess, as an operator or a scheduler runs it, with standard error on
a terminal (where progress bars show) or in a pipe (where they must not)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from click.testing import Result
from flask.testing import FlaskCliRunner

#: The project's root directory (where ``.flaskenv``, ``gunicorn.conf.py`` and ``migrations/`` are).
ROOT = Path(__file__).resolve().parent.parent.parent
#: The operating-system user the in-process commands run as (``cli_os_user``).
OS_USER = "ops-tester"
#: How the changes such a command makes are attributed.
ACTOR = f"cli:{OS_USER}"


def invoke(runner: FlaskCliRunner, *args: str, input: str | None = None) -> Result:
    """``flask ARGS`` in-process; an exception other than the exit is raised, not hidden."""
    result = runner.invoke(args=list(args), input=input)
    assert "Traceback" not in result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def run_flask(
    database_url: str | None,
    *args: str,
    stderr_on_a_terminal: bool = False,
    environment: dict[str, str] | None = None,
) -> tuple[int, bytes, str]:
    """``flask ARGS`` from the project root (where ``.flaskenv`` names the app),
    with ``environment`` added to this process's: (status, stdout bytes, stderr text)."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "FLASK_APP"}}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    env.update(environment or {})
    command = [sys.executable, "-m", "flask", *args]
    if not stderr_on_a_terminal:
        done = subprocess.run(  # noqa: S603 - this interpreter, arguments from the tests
            command, cwd=ROOT, env=env, capture_output=True, timeout=120, check=False
        )
        return done.returncode, done.stdout, done.stderr.decode(errors="replace")
    controller, terminal = pty.openpty()
    # Standard output goes to a file: a pipe the loop below does not read would
    # fill up (64 KiB) and stop a command that writes more, waiting forever.
    output = tempfile.TemporaryFile()  # noqa: SIM115 (closed below, with the terminal)
    try:
        process = subprocess.Popen(  # noqa: S603 - this interpreter, arguments from the tests
            command, cwd=ROOT, env=env, stdout=output, stderr=terminal
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
        process.wait(timeout=120)
        output.seek(0)
        return process.returncode, output.read(), seen.decode(errors="replace")
    finally:
        os.close(controller)
        output.close()


def run_command(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``command`` to its end (two minutes at most), its output captured as text."""
    return subprocess.run(  # noqa: S603 - this interpreter and tools, arguments from the tests
        command, capture_output=True, text=True, check=False, timeout=120, **kwargs
    )
