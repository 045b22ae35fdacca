"""HTTP throughput and latency of the application under gunicorn, next to the stack's floor.

Five requests, each measured with wrk against two servers on 127.0.0.1 in the
same run:

- the application, started with the real ``gunicorn.conf.py`` (production
  settings, random keys made at run time, ``WEB_CONCURRENCY`` fixed, gunicorn's
  access log off as by default; the app writes its own request line);
- the floor, ``bench/floor_app.py``: Flask + psycopg sending the same SQL with
  nothing else (no authentication, no ORM, no audit), same worker count and
  worker class.

The requests: one profile (``GET /api/v1/users/<id>``, ids drawn over all
profiles), the first page of profiles (``GET /api/v1/users``), a profile update
(``PATCH /api/v1/users/<id>`` with ``If-Match``), the auditors' timeline page
(``GET /audit``, HTML, signed in through the real ``/login`` form) and the
timeline as JSON (``GET /api/v1/audit``). A sixth row is a yardstick, not a
request the target applies to: the application's ``/healthz``, which touches
no database, next to the floor's GET of a profile, i.e. what the
application's request handling (request id, security headers, metrics,
session) costs before any of its own work. Rounds interleave the two servers
for each request (the order alternating from round to round); the table shows
medians over rounds of req/s and of each run's p50/p99, and the ratio
app/floor (target: at least 0.7).

Updates never race: each wrk thread writes its own disjoint set of profiles,
skips a profile whose request is still in flight, and follows the versions in
the responses' ETags, starting from versions read from the database just
before each run (``bench/wrk/patch_profile.lua``). Any 412, 409 or 5xx is
reported; there must be none.

When a request reaches less than 0.7 of its floor (or with ``--profile``), the
application is also run in-process against Flask's test client: SQL statements
per request, and where the time goes (pyinstrument, by area and by function).

Run from the project root (wrk must be installed)::

    .venv/bin/python -m bench.http_load            # about 4-5 minutes
    .venv/bin/python -m bench.http_load --quick    # about 1 minute

Without ``BENCH_DATABASE_URL`` an embedded PostgreSQL is started in a temporary
directory and deleted afterwards (also on errors and on SIGTERM). With it, the
database ``profile_audit_bench`` is (re)created on that server and dropped at
the end. Both gunicorn servers are stopped by PID with SIGTERM at the end,
also on errors and on SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event

from bench import floor_app
from bench._common import (
    APP,
    CSRF_FIELD,
    ROOT,
    Server,
    append_summary,
    clean_environment,
    database_server,
    generate_history,
    machine_report,
    migrated_app,
    prepare_run,
    production_environment,
    sign_in,
    start_app,
    start_server,
)
from webapp import create_app
from webapp.audit.context import Actor, Origin, acting_as
from webapp.config import database_url
from webapp.extensions import db
from webapp.services.api_tokens import create_token
from webapp.services.staff import create_staff

WRK_DIR = ROOT / "bench" / "wrk"
TARGET_RATIO = 0.7
#: The benchmark's own in-process apps (seeding, the token) link nothing in a
#: thread of their own: the served app does, as deployed.
IN_PROCESS = {"AUDIT_SEALER": "off"}
WRK_TIMEOUT = "5s"
PASSWORD = "http load bench password, long enough"  # noqa: S105
SUPPORT, AUDITOR = "bench-support", "bench-auditor"
#: profiles the update runs write (split between wrk's threads)
PATCH_PROFILES = 1_000
FLOOR, WORK = "floor", "same-work floor"


# --------------------------------------------------------------------------- servers


def start_floor(url: str, workers: int, workdir: Path) -> Server:
    env = {**clean_environment(), "FLOOR_DATABASE_URL": url}
    # gunicorn would read ./gunicorn.conf.py (the app's hooks) when given no config.
    config = workdir / "floor-gunicorn.conf.py"
    config.write_text("# The floor: settings on the command line only.\n")
    # Same worker count and class as the app; the heartbeat file in RAM as there.
    command = [sys.executable, "-m", "gunicorn", "-c", str(config), "--workers", str(workers)]
    command += ["--worker-class", "sync", "--bind", "127.0.0.1:0", "--timeout", "30"]
    shm = "/dev/shm"  # noqa: S108 - gunicorn's heartbeat files, as gunicorn.conf.py does
    if os.path.isdir(shm):
        command += ["--worker-tmp-dir", shm]
    command += ["bench.floor_app:app"]
    return start_server(FLOOR, command, env, workdir, "/users", workers)


# --------------------------------------------------------------------------- set-up


@dataclass
class Credentials:
    support_token: str
    auditor_token: str
    #: the ``Cookie`` header of an auditor signed in through /login
    cookie: str = ""


def create_accounts(url: str) -> Credentials:
    """A support account and an auditor, each with an API token, as the CLI would make them."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url(url), **IN_PROCESS})
    with app.app_context(), acting_as(Actor(None, "bench"), Origin("cli")):
        support = create_staff(SUPPORT, PASSWORD, "support")
        auditor = create_staff(AUDITOR, PASSWORD, "auditor")
        _, support_token = create_token(support, "http load")
        _, auditor_token = create_token(auditor, "http load")
        db.session.remove()
    return Credentials(support_token, auditor_token)


def create_floor_table(url: str) -> None:
    """A copy of the profiles without triggers: the floor's updates write no audit."""
    table = floor_app.FLOOR_USERS
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {table}")
        connection.execute(f"CREATE TABLE {table} (LIKE users INCLUDING ALL)")
        connection.execute(f"INSERT INTO {table} OVERRIDING SYSTEM VALUE SELECT * FROM users")
        connection.execute(f"VACUUM (ANALYZE) {table}")


def patch_profile_ids(url: str) -> list[int]:
    """Active profiles spread over the whole id range, the same in every run."""
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT id FROM users WHERE deleted_at IS NULL ORDER BY md5(id::text) LIMIT %s",
            (PATCH_PROFILES,),
        ).fetchall()
    return sorted(row[0] for row in rows)


# --------------------------------------------------------------------------- wrk


@dataclass
class WrkSettings:
    threads: int
    connections: int
    duration: int

    def describe(self) -> str:
        return (
            f"wrk -t{self.threads} -c{self.connections} -d{self.duration}s --timeout {WRK_TIMEOUT}"
        )


@dataclass
class WrkRun:
    """What one wrk run measured (its ``done()`` line)."""

    requests: int
    seconds: float
    bytes: int
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int]
    errors: dict[str, int]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def bad(self) -> int:
        """Responses other than 200, socket errors (connect, read, write, timeout), or none."""
        other = sum(count for status, count in self.statuses.items() if status != "200")
        sockets = sum(count for name, count in self.errors.items() if name != "status")
        return other + sockets + (1 if self.requests == 0 else 0)


def lua_value(value: Any) -> str:
    """``value`` (ASCII strings, ints, lists and dicts of them) as a Lua expression."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)
    if isinstance(value, list):
        return "{" + ",".join(lua_value(item) for item in value) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(f"[{lua_value(k)}]={lua_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no Lua form for {type(value).__name__}")


def run_wrk(
    url: str,
    script: str,
    headers: list[str],
    config: dict[str, Any],
    settings: WrkSettings,
    workdir: Path,
    duration: int | None = None,
) -> WrkRun:
    """One wrk run; the script's configuration is written to a Lua file it loads."""
    config_file = workdir / "wrk-config.lua"
    config_file.write_text("return " + lua_value(config) + "\n")
    seconds = duration or settings.duration
    command = ["wrk", f"-t{settings.threads}", f"-c{settings.connections}", f"-d{seconds}s"]
    command += ["--timeout", WRK_TIMEOUT, "-s", str(WRK_DIR / script)]
    for header in headers:
        command += ["-H", header]
    command.append(url)
    finished = subprocess.run(  # noqa: S603 - wrk, arguments built here
        command,
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + 60,
        env={**os.environ, "BENCH_WRK_CONFIG": str(config_file)},
    )
    line = next(
        (ln for ln in finished.stdout.splitlines() if ln.startswith("WRK_RESULT ")),
        None,
    )
    if finished.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk failed ({finished.returncode}) on {url}:\n{finished.stdout}\n{finished.stderr}"
        )
    found = json.loads(line.removeprefix("WRK_RESULT "))
    return WrkRun(
        requests=found["requests"],
        seconds=found["duration_us"] / 1e6,
        bytes=found["bytes"],
        p50_ms=found["latency_us"]["p50"] / 1000,
        p99_ms=found["latency_us"]["p99"] / 1000,
        statuses={str(k): int(v) for k, v in found["statuses"].items()},
        errors={str(k): int(v) for k, v in found["errors"].items()},
    )


# --------------------------------------------------------------------------- requests


@dataclass
class Target:
    """One request, as sent to the application and to the floor."""

    key: str
    name: str
    script: str
    app_path: str
    floor_path: str
    app_headers: list[str]
    #: the Lua configuration for a run against ``stack`` (APP or FLOOR)
    config: Callable[[str], dict[str, Any]] = lambda stack: {}
    #: the profiles the request writes (updates only)
    ids: list[int] = field(default_factory=list)
    #: a yardstick for the other rows, not one of the requests the target is for
    reference: bool = False
    #: the same-work floor's path (same authentication, same query) and its headers
    work_path: str | None = None
    work_headers: list[str] = field(default_factory=list)
    runs: dict[str, list[WrkRun]] = field(default_factory=lambda: {APP: [], FLOOR: [], WORK: []})

    @property
    def stacks(self) -> tuple[str, ...]:
        return (APP, FLOOR, WORK) if self.work_path else (APP, FLOOR)

    def path(self, stack: str) -> str:
        if stack == WORK:
            assert self.work_path is not None
            return self.work_path
        return self.app_path if stack == APP else self.floor_path

    def headers(self, stack: str) -> list[str]:
        if stack == WORK:
            return self.work_headers
        return self.app_headers if stack == APP else []


def current_versions(url: str, stack: str, ids: list[int]) -> dict[int, int]:
    """The profiles' versions once they stop moving, in the table the given server writes.

    wrk stops counting at its deadline, but the requests then in flight still
    complete on the server: wait for them, or their versions would be stale.
    """
    table = "users" if stack == APP else floor_app.FLOOR_USERS
    previous: dict[int, int] | None = None
    deadline = time.monotonic() + 10
    with psycopg.connect(url, autocommit=True) as connection:
        while True:
            rows = connection.execute(
                f"SELECT id, version FROM {table} WHERE id = ANY(%s)",
                (ids,),
            ).fetchall()
            versions = {row[0]: row[1] for row in rows}
            if versions == previous or time.monotonic() > deadline:
                return versions
            previous = versions
            time.sleep(0.3)


def build_targets(
    url: str, credentials: Credentials, users: int, seed: int, patch_ids: list[int], threads: int
) -> list[Target]:
    support = f"Authorization: Bearer {credentials.support_token}"
    run_numbers = itertools.count(1)
    auditor = f"Authorization: Bearer {credentials.auditor_token}"

    def get_profile(stack: str) -> dict[str, Any]:
        prefix = {APP: "/api/v1/users/", FLOOR: "/users/", WORK: "/work/users/"}[stack]
        return {"prefix": prefix, "max_id": users, "seed": seed}

    def patch_profile(stack: str) -> dict[str, Any]:
        # Read now: the previous runs (and the other server's) moved versions on.
        versions = current_versions(url, stack, patch_ids)
        slices = [patch_ids[n::threads] for n in range(threads)]
        prefix = "/api/v1/users/" if stack == APP else "/users/"
        # A name never used before, so that every update is a real change.
        return {"prefix": prefix, "slices": slices, "versions": versions, "run": next(run_numbers)}

    return [
        Target(
            "get",
            "GET profile",
            "get_profile.lua",
            "/api/v1/users/1",
            "/users/1",
            [support],
            get_profile,
            work_path="/work/users/1",
            work_headers=[support],
        ),
        Target(
            "list",
            "list profiles",
            "get.lua",
            "/api/v1/users",
            "/users",
            [support],
            work_path="/work/users",
            work_headers=[support],
        ),
        Target(
            "patch",
            "PATCH profile",
            "patch_profile.lua",
            "/api/v1/users/1",
            "/users/1",
            [support],
            patch_profile,
            patch_ids,
        ),
        Target(
            "timeline",
            "timeline page (HTML)",
            "get.lua",
            "/audit",
            "/audit",
            [f"Cookie: {credentials.cookie}"],
            work_path="/work/audit",
            work_headers=[auditor],
        ),
        Target(
            "timeline_json",
            "timeline JSON",
            "get.lua",
            "/api/v1/audit",
            "/audit.json",
            [auditor],
            work_path="/work/audit.json",
            work_headers=[auditor],
        ),
        # What the application costs before any of its own work: the liveness
        # probe touches no database, writes no log line and checks no token.
        Target(
            "pipeline",
            "reference: app GET /healthz, no database (floor: GET profile)",
            "get.lua",
            "/healthz",
            "/users/1",
            [],
            reference=True,
        ),
    ]


def audit_entries(url: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT count(*) FROM user_audit").fetchone()
    return int(row[0]) if row else 0


@dataclass
class AuditCheck:
    """Updates the app answered 200 versus the audit entries written meanwhile."""

    updates: int = 0
    entries: int = 0
    #: requests possibly still in flight when wrk stopped (answered, but not counted)
    in_flight: int = 0

    def describe(self) -> str:
        extra = self.entries - self.updates
        verdict = (
            "consistent"
            if 0 <= extra <= self.in_flight
            else "INCONSISTENT: entries missing or too many"
        )
        return (
            f"Updates through the app answered 200 (as counted by wrk): {self.updates:,}; "
            f"audit entries written meanwhile: {self.entries:,} ({extra:+,}; up to "
            f"{self.in_flight:,} requests were in flight when wrk stopped): {verdict}"
        )


def measure(
    target: Target,
    stack: str,
    server: Server,
    url: str,
    settings: WrkSettings,
    workdir: Path,
    audit: AuditCheck,
    duration: int | None = None,
) -> WrkRun:
    if target.key == "patch" and stack == APP:
        current_versions(url, APP, target.ids)  # the previous run's last requests are done
    before = audit_entries(url) if target.key == "patch" and stack == APP else 0
    run = run_wrk(
        server.base + target.path(stack),
        target.script,
        target.headers(stack),
        target.config(stack),
        settings,
        workdir,
        duration,
    )
    if target.key == "patch" and stack == APP:
        current_versions(url, APP, target.ids)
        audit.updates += run.statuses.get("200", 0)
        audit.entries += audit_entries(url) - before
        audit.in_flight += settings.connections
    return run


# --------------------------------------------------------------------------- report


@dataclass
class Row:
    name: str
    app_rps: float
    floor_rps: float
    app_p50: float
    app_p99: float
    floor_p50: float
    floor_p99: float
    app_bytes: float
    floor_bytes: float
    bad: str
    round_ratios: list[float]
    reference: bool = False
    #: the same-work floor's median req/s, p50 and p99 (None: no such endpoint)
    work_rps: float | None = None
    work_p50: float | None = None
    work_p99: float | None = None

    @property
    def ratio(self) -> float:
        return self.app_rps / self.floor_rps if self.floor_rps else 0.0

    @property
    def work_ratio(self) -> float | None:
        return self.app_rps / self.work_rps if self.work_rps else None


def summarize(target: Target) -> Row:
    app, floor, work = target.runs[APP], target.runs[FLOOR], target.runs[WORK]

    def per_response(runs: list[WrkRun]) -> float:
        return sum(r.bytes for r in runs) / max(1, sum(r.requests for r in runs))

    def bad(runs: list[WrkRun]) -> str:
        counts: dict[str, int] = {}
        for run in runs:
            for status, count in run.statuses.items():
                if status != "200":
                    counts[status] = counts.get(status, 0) + count
            for name, count in run.errors.items():
                if name != "status" and count:
                    counts[name] = counts.get(name, 0) + count
        if any(run.requests == 0 for run in runs):
            counts["runs without a response"] = sum(1 for run in runs if run.requests == 0)
        return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "0"

    return Row(
        name=target.name,
        app_rps=statistics.median(r.per_second for r in app),
        floor_rps=statistics.median(r.per_second for r in floor),
        app_p50=statistics.median(r.p50_ms for r in app),
        app_p99=statistics.median(r.p99_ms for r in app),
        floor_p50=statistics.median(r.p50_ms for r in floor),
        floor_p99=statistics.median(r.p99_ms for r in floor),
        app_bytes=per_response(app),
        floor_bytes=per_response(floor),
        bad=f"{bad(app)} / {bad(floor)}",
        round_ratios=[a.per_second / f.per_second for a, f in zip(app, floor, strict=True)],
        reference=target.reference,
        work_rps=statistics.median(r.per_second for r in work) if work else None,
        work_p50=statistics.median(r.p50_ms for r in work) if work else None,
        work_p99=statistics.median(r.p99_ms for r in work) if work else None,
    )


#: the goals against the same-work floor: the HTML page's, the other requests'
WORK_TARGET_PAGE, WORK_TARGET = 0.5, 0.6
#: no request's p99 above this many times its p50
TAIL_TARGET = 5.0


def work_table_lines(rows: list[Row]) -> list[str]:
    """App against the same-work floor (same authentication, same query), with the goals."""
    lines = [
        "| Request | App req/s | Same-work floor req/s | App/same-work | Goal "
        "| App p50 ms | App p99 ms | p99/p50 | Same-work p50 ms | Same-work p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        tail = row.app_p99 / row.app_p50 if row.app_p50 else 0.0
        tail_mark = "" if tail <= TAIL_TARGET else " ✗"
        if row.work_rps is None or row.work_ratio is None:
            lines.append(
                f"| {row.name} | {row.app_rps:,.0f} | - | - | - | {row.app_p50:.1f} "
                f"| {row.app_p99:.1f} | {tail:.1f}{tail_mark} | - | - |"
            )
            continue
        goal = WORK_TARGET_PAGE if "HTML" in row.name else WORK_TARGET
        mark = "" if row.work_ratio >= goal else " ✗"
        lines.append(
            f"| {row.name} | {row.app_rps:,.0f} | {row.work_rps:,.0f} "
            f"| {row.work_ratio:.2f}{mark} | ≥ {goal} | {row.app_p50:.1f} | {row.app_p99:.1f} "
            f"| {tail:.1f}{tail_mark} | {row.work_p50:.1f} | {row.work_p99:.1f} |"
        )
    return lines


def table_lines(rows: list[Row]) -> list[str]:
    lines = [
        "| Request | App req/s | Floor req/s | App/floor | App p50 ms | App p99 ms "
        "| Floor p50 ms | Floor p99 ms | Bytes/response app, floor | Non-200 app / floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        mark = "" if row.reference or row.ratio >= TARGET_RATIO else " ✗"
        lines.append(
            f"| {row.name} | {row.app_rps:,.0f} | {row.floor_rps:,.0f} "
            f"| {row.ratio:.2f}{mark} | {row.app_p50:.1f} | {row.app_p99:.1f} "
            f"| {row.floor_p50:.1f} | {row.floor_p99:.1f} "
            f"| {row.app_bytes:,.0f}, {row.floor_bytes:,.0f} | {row.bad} |"
        )
    return lines


def uncommitted_app_changes() -> list[str]:
    """Files of the app changed since the last commit: the run measures them as they are."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "webapp", "templates", "gunicorn.conf.py"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
        return [line[3:] for line in status.stdout.splitlines() if line.strip()]
    return []


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def settings_line(workers: int, settings: WrkSettings, rounds: int) -> str:
    return (
        f"{os.cpu_count()} CPUs ({cpu_model()}) shared by wrk, both gunicorns and PostgreSQL; "
        f"{workers} sync workers each (WEB_CONCURRENCY={workers}); {settings.describe()}, "
        f"keep-alive not used (sync workers close each connection); {rounds} rounds, "
        "app and floor interleaved, medians over rounds"
    )


# --------------------------------------------------------------------------- profile


def _area(path: str) -> str | None:
    """The part of the stack a source file belongs to (None: a built-in, see its caller)."""
    if not path or path.startswith("<"):
        return None
    normalized = path.replace(os.sep, "/")
    for marker, name in (
        ("/webapp/", "webapp"),
        ("/templates/", "templates (Jinja)"),
        ("/sqlalchemy/", "SQLAlchemy"),
        ("/flask_sqlalchemy/", "SQLAlchemy"),
        ("/psycopg", "psycopg (driver, waiting on PostgreSQL)"),
        ("/jinja2", "Jinja2"),
        ("/markupsafe/", "Jinja2"),
        ("/difflib.py", "difflib (the timeline's diffs)"),
        ("/werkzeug/", "Flask/Werkzeug"),
        ("/flask/", "Flask/Werkzeug"),
        ("/flask_login/", "Flask-Login/WTF"),
        ("/flask_wtf/", "Flask-Login/WTF"),
        ("/wtforms/", "Flask-Login/WTF"),
        ("/itsdangerous/", "Flask-Login/WTF"),
        ("/logging/", "logging"),
        ("/json/", "json"),
        ("/bench/", "bench (test client)"),
    ):
        if marker in normalized:
            return name
    return "other (stdlib, test client)"


def _self_times(
    frame: Any,
    areas: dict[str, float],
    functions: dict[str, float],
    caller_area: str = "other (stdlib, test client)",
    caller_name: str = "",
) -> None:
    """Add each frame's own time to its area and function.

    Built-ins (``isinstance``, ``dict.get``) and pyinstrument's synthetic
    ``[self]`` frames count for their caller's area, so that e.g. SQLAlchemy's
    calls to built-ins stay SQLAlchemy's time.
    """
    children = list(frame.children)
    own = frame.time - sum(child.time for child in children)
    if frame.is_synthetic:
        area, name = caller_area, caller_name
    else:
        area = _area(frame.file_path or "") or caller_area
        name = f"{frame.function} ({frame.file_path_short}:{frame.line_no})"
    if own > 0:
        areas[area] = areas.get(area, 0.0) + own
        functions[name] = functions.get(name, 0.0) + own
    for child in children:
        _self_times(child, areas, functions, area, name)


@dataclass
class InProcess:
    """One request run in-process: statements, their text, and time per request."""

    name: str
    statements: list[str]
    app_ms: float
    floor_ms: float
    areas: dict[str, float]
    functions: dict[str, float]
    #: milliseconds per request in each request hook and view (the profiled run)
    hooks: dict[str, float] = field(default_factory=dict)


def hook_names(app: Any) -> dict[str, str]:
    """The app's request hooks and views by function name, each with what it is."""
    names: dict[str, str] = {}
    for kind, registry in (
        ("before", app.before_request_funcs),
        ("after", app.after_request_funcs),
        ("teardown", app.teardown_request_funcs),
    ):
        for blueprint, functions in registry.items():
            for function in functions:
                where = f"{blueprint}." if blueprint else ""
                names[function.__name__] = f"{kind}_request {where}{function.__name__}"
    for endpoint, function in app.view_functions.items():
        names.setdefault(function.__name__, f"view {endpoint}")
    return names


def _hook_times(frame: Any, names: dict[str, str], out: dict[str, float]) -> None:
    """Total time under each hook or view frame (outermost occurrence only)."""
    label = names.get(frame.function or "")
    if label is not None and "/webapp/" in (frame.file_path or "").replace(os.sep, "/"):
        out[label] = out.get(label, 0.0) + frame.time
        return
    for child in frame.children:
        _hook_times(child, names, out)


def timed_loop(call: Callable[[int], None], requests: int, budget: float) -> float:
    """Milliseconds per call over up to ``requests`` calls, stopping after ``budget`` seconds."""
    started = time.perf_counter()
    done = 0
    while done < requests and (done < 5 or time.perf_counter() - started < budget):
        call(done)
        done += 1
    return (time.perf_counter() - started) * 1000 / done


def profile_in_process(
    url: str,
    credentials: Credentials,
    patch_ids: list[int],
    users: int,
    workdir: Path,
    requests: int,
    budget: float,
    names: set[str],
) -> list[InProcess]:
    """Each request through the test client: the app with production settings, and the floor.

    The app's log lines go to a file, as under gunicorn; the floor gets the
    same test client, so both times carry the same client overhead.
    """
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("\npyinstrument is not installed: no in-process profile.")
        return []

    saved = dict(os.environ)
    os.environ.update(production_environment(url, 1))
    log = (workdir / "in-process.log").open("w")
    try:
        with contextlib.redirect_stderr(log):
            app = create_app({"SQLALCHEMY_DATABASE_URI": database_url(url), **IN_PROCESS})
    finally:
        os.environ.clear()
        os.environ.update(saved)
    # The floor's worker reads it on its first request, in this process here.
    os.environ["FLOOR_DATABASE_URL"] = url
    sent: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(" ".join(statement.split())[:100])

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", seen)
    client = app.test_client()
    cookie_client = app.test_client()
    page = cookie_client.get("/login").get_data(as_text=True)
    found = CSRF_FIELD.search(page)
    assert found is not None
    cookie_client.post(
        "/login",
        data={"csrf_token": found.group(1), "username": AUDITOR, "password": PASSWORD},
    )
    floor_client = floor_app.app.test_client()
    support = {"Authorization": f"Bearer {credentials.support_token}"}
    auditor = {"Authorization": f"Bearer {credentials.auditor_token}"}
    # Profiles of their own, so the update requests find current versions.
    ids = patch_ids[:50]
    versions = {APP: current_versions(url, APP, ids), FLOOR: current_versions(url, FLOOR, ids)}
    serial = [0]

    def patch(stack: str, n: int) -> None:
        user_id = ids[n % len(ids)]
        serial[0] += 1
        body = {"name": f"In Process {serial[0]}", "reason": "load test"}
        headers = {"If-Match": f'"{versions[stack][user_id]}"'}
        if stack == APP:
            response = client.patch(
                f"/api/v1/users/{user_id}", json=body, headers={**support, **headers}
            )
        else:
            response = floor_client.patch(f"/users/{user_id}", json=body, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        versions[stack][user_id] = int(response.headers["ETag"].strip('"'))

    def getter(
        app_call: Callable[[int], Any], floor_call: Callable[[int], Any]
    ) -> dict[str, Callable[[int], None]]:
        def run(call: Callable[[int], Any]) -> Callable[[int], None]:
            def one(n: int) -> None:
                response = call(n)
                assert response.status_code == 200, response.status_code
                response.get_data()
                response.close()

            return one

        return {APP: run(app_call), FLOOR: run(floor_call)}

    cases: dict[str, dict[str, Callable[[int], None]]] = {
        "GET profile": getter(
            lambda n: client.get(f"/api/v1/users/{1 + (n * 7919) % users}", headers=support),
            lambda n: floor_client.get(f"/users/{1 + (n * 7919) % users}"),
        ),
        "list profiles": getter(
            lambda n: client.get("/api/v1/users", headers=support),
            lambda n: floor_client.get("/users"),
        ),
        "PATCH profile": {APP: lambda n: patch(APP, n), FLOOR: lambda n: patch(FLOOR, n)},
        "timeline page (HTML)": getter(
            lambda n: cookie_client.get("/audit"), lambda n: floor_client.get("/audit")
        ),
        "timeline JSON": getter(
            lambda n: client.get("/api/v1/audit", headers=auditor),
            lambda n: floor_client.get("/audit.json"),
        ),
    }
    results = []
    try:
        for name, calls in cases.items():
            if name not in names:
                continue
            for stack in (APP, FLOOR):
                timed_loop(calls[stack], 20, budget / 2)  # warm caches, like the warm-up runs
            sent.clear()
            calls[APP](0)
            statements = list(sent)
            timings = {stack: timed_loop(calls[stack], requests, budget) for stack in (APP, FLOOR)}
            profiler = Profiler(interval=0.0002)
            with contextlib.redirect_stderr(log):
                profiler.start()
                started = time.perf_counter()
                profiled_ms = timed_loop(calls[APP], requests, budget)
                profiled_calls = (time.perf_counter() - started) * 1000 / profiled_ms
                profiler.stop()
            areas: dict[str, float] = {}
            functions: dict[str, float] = {}
            hooks: dict[str, float] = {}
            root = profiler.last_session.root_frame() if profiler.last_session else None
            if root is not None:
                _self_times(root, areas, functions)
                _hook_times(root, hook_names(app), hooks)
            per_request = {
                label: seconds * 1000 / profiled_calls for label, seconds in hooks.items()
            }
            results.append(
                InProcess(
                    name, statements, timings[APP], timings[FLOOR], areas, functions, per_request
                )
            )
    finally:
        log.close()
        os.environ.pop("FLOOR_DATABASE_URL", None)
        floor_app.close_connection()
        with app.app_context():
            db.engine.dispose()
    return results


def print_profile(results: list[InProcess]) -> None:
    if not results:
        return
    print(
        "\n## Where the app's time goes: in-process, Flask test client, no gunicorn or wrk\n"
        "(the app with production settings, its log lines to a file; the floor's app through "
        "the same test client; mean ms per request)\n"
    )
    print("| Request | SQL statements | App ms/request | Floor ms/request | App/floor time |")
    print("|---|---:|---:|---:|---:|")
    for result in results:
        print(
            f"| {result.name} | {len(result.statements)} | {result.app_ms:.2f} "
            f"| {result.floor_ms:.2f} | {result.app_ms / result.floor_ms:.1f}x |"
        )
    for result in results:
        print(f"\n### {result.name}: {len(result.statements)} SQL statements per request")
        # Repeated statements (an N+1) on one line, in the order they were first sent.
        counts: dict[str, int] = {}
        for statement in result.statements:
            counts[statement] = counts.get(statement, 0) + 1
        for statement, count in counts.items():
            print(f"  {count:3d} x {statement}")
        total = sum(result.areas.values()) or 1.0
        print("Self time by area (pyinstrument):")
        for area, seconds in sorted(result.areas.items(), key=lambda item: -item[1]):
            if seconds / total >= 0.01:
                print(f"  {seconds / total:6.1%}  {area}")
        print("Per hook and view, ms per request (under the profiler, so inflated alike):")
        for label, ms in sorted(result.hooks.items(), key=lambda item: -item[1]):
            print(f"  {ms:7.3f}  {label}")
        print("Top functions by self time:")
        for name, seconds in sorted(result.functions.items(), key=lambda item: -item[1])[:12]:
            print(f"  {seconds / total:6.1%}  {name}")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds (each: app and floor)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of untimed wrk first")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers of each server")
    parser.add_argument("--users", type=int, default=10_000, help="profiles")
    parser.add_argument("--entries", type=int, default=200_000, help="audit entries")
    parser.add_argument("--seed", type=int, default=42, help="seed of the data and request ids")
    parser.add_argument("--quick", action="store_true", help="a smoke run of about a minute")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile in-process even when every request reaches the target",
    )
    parser.add_argument(
        "--profile-requests", type=int, default=300, help="in-process requests per case at most"
    )
    parser.add_argument(
        "--profile-seconds", type=float, default=2.0, help="in-process seconds per case at most"
    )
    parser.add_argument("--summary", type=Path, help="append the results as Markdown to FILE")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 3, 1
        args.entries = min(args.entries, 50_000)
        args.profile_seconds = min(args.profile_seconds, 0.7)
    if args.threads < 1 or args.connections < args.threads:
        parser.error("--connections must be at least --threads")
    if args.rounds < 1 or args.duration < 1 or args.users < 1 or args.entries < args.users:
        parser.error("--rounds, --duration and --users must be positive; --entries >= --users")
    if PATCH_PROFILES // args.threads < 2 * args.connections:
        parser.error("too many connections for the profiles the update runs share")
    return args


def run(args: argparse.Namespace, url: str, workdir: Path) -> None:
    app = migrated_app(url, **IN_PROCESS)
    with app.app_context():
        db.engine.dispose()
    generate_history(url, args, seed=args.seed / 100)
    credentials = create_accounts(url)
    create_floor_table(url)
    patch_ids = patch_profile_ids(url)
    settings = WrkSettings(args.threads, args.connections, args.duration)

    servers: list[Server] = []
    try:
        servers.append(start_app(url, args.workers, workdir))
        servers.append(start_floor(url, args.workers, workdir))
        by_stack = {APP: servers[0], FLOOR: servers[1], WORK: servers[1]}
        print(
            f"app gunicorn (gunicorn.conf.py, APP_ENV=production) pid {servers[0].process.pid} "
            f"on {servers[0].base}; floor gunicorn pid {servers[1].process.pid} on "
            f"{servers[1].base}; WEB_CONCURRENCY={args.workers} sync workers each",
            flush=True,
        )
        credentials.cookie = sign_in(servers[0].base, AUDITOR, PASSWORD)
        targets = build_targets(url, credentials, args.users, args.seed, patch_ids, args.threads)
        print("\n" + settings_line(args.workers, settings, args.rounds))
        print(
            f"Note: {os.cpu_count()} cores for everything (wrk alone takes a good part of one, "
            "and other jobs may be running): absolute req/s are low and noisy; the ratio "
            "app/floor, measured in interleaved runs, is the figure to read.\n",
            flush=True,
        )
        audit = AuditCheck()
        if args.warmup:
            for target in targets:
                for stack in target.stacks:
                    measure(
                        target, stack, by_stack[stack], url, settings, workdir, audit, args.warmup
                    )
        for round_number in range(args.rounds):
            for target in targets:
                # The order of the variants rotates from round to round.
                stacks = target.stacks
                shift = round_number % len(stacks)
                for stack in stacks[shift:] + stacks[:shift]:
                    result = measure(target, stack, by_stack[stack], url, settings, workdir, audit)
                    target.runs[stack].append(result)
                app_run, floor_run = target.runs[APP][-1], target.runs[FLOOR][-1]
                same_work = ""
                if target.runs[WORK]:
                    work_run = target.runs[WORK][-1]
                    same_work = (
                        f", same-work floor {work_run.per_second:,.0f}/s (p50 "
                        f"{work_run.p50_ms:.1f} ms, non-200 {work_run.bad})"
                    )
                print(
                    f"  round {round_number + 1}, {target.name}: app {app_run.per_second:,.0f}/s "
                    f"(p50 {app_run.p50_ms:.1f} ms, non-200 {app_run.bad}), floor "
                    f"{floor_run.per_second:,.0f}/s (p50 {floor_run.p50_ms:.1f} ms, non-200 "
                    f"{floor_run.bad}){same_work}; load average {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
    finally:
        for server in reversed(servers):
            server.stop()

    rows = [summarize(target) for target in targets]
    print()
    print("\n".join(machine_report(url)))
    print(f"Load average after the runs: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(audit.describe())
    changed = uncommitted_app_changes()
    if changed:
        print(f"Measured with uncommitted changes in: {', '.join(changed)}")
    print("\n### HTTP throughput\n")
    print(settings_line(args.workers, settings, args.rounds) + "\n")
    table = table_lines(rows)
    for line in table:
        print(line)
    print("\nAgainst the same-work floor (same token check in one SELECT, same query):\n")
    work_table = work_table_lines(rows)
    for line in work_table:
        print(line)
    print()
    for row in rows:
        ratios = ", ".join(f"{ratio:.2f}" for ratio in row.round_ratios)
        print(f"  {row.name}: app/floor per round {ratios}")
    failures = [row for row in rows if not row.reference and row.ratio < TARGET_RATIO]
    bad = [
        target.name
        for target in targets
        for stack in target.stacks
        if any(run.bad for run in target.runs[stack])
    ]
    if bad:
        print(f"\nNon-200 responses or socket errors in: {', '.join(sorted(set(bad)))}")
    if failures:
        print(f"\nBelow {TARGET_RATIO} of the floor: " + ", ".join(row.name for row in failures))
    if args.summary:
        heading = ["### HTTP throughput", "", settings_line(args.workers, settings, args.rounds)]
        same_work = ["Against the same-work floor (same token check, same query):", ""]
        append_summary(args.summary, [*heading, "", *table, "", *same_work, *work_table, ""])
        print(f"\nSummary appended to {args.summary}")
    if failures or args.profile:
        names = {row.name for row in (rows if args.profile else failures)}
        results = profile_in_process(
            url,
            credentials,
            patch_ids,
            args.users,
            workdir,
            args.profile_requests,
            args.profile_seconds,
            names,
        )
        print_profile(results)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if shutil.which("wrk") is None:
        print(
            "wrk is not installed: install it (e.g. `apt-get install -y wrk`) and run again.",
            file=sys.stderr,
        )
        return 2
    prepare_run()
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="http-load-"))
    try:
        with database_server(keep=False) as url:
            run(args, url, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nWhole run: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
