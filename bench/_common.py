"""What the benchmarks share: the database they run on (an embedded PostgreSQL,
or ``BENCH_DATABASE_URL``), the app on it, the generated history, reading
plans, percentiles, the machine report, the app under gunicorn and an auditor
signed in to it, and the Markdown summary.

Every benchmark is a module of the ``bench`` package, run from the project
root as ``python -m bench.<name>``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg
from flask import Flask
from flask_migrate import upgrade

from webapp import create_app
from webapp.config import KEY_SETTINGS, database_url, random_key
from webapp.dev.local_database import (
    drop_database,
    ensure_database,
    scratch_directory,
    start_embedded_server,
)

ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------- data

DATABASE_NAME = "profile_audit_bench"


# Two years of history, ending at a fixed moment so that runs are comparable.
HISTORY_START = datetime(2024, 11, 1, tzinfo=UTC)


HISTORY_END = datetime(2026, 11, 1, tzinfo=UTC)


# Profiles are created during the first 90% of the history, oldest id first.
CREATION_SPAN_FRACTION = 0.9


# Tables whose triggers generate_data lifts while it refills them.
GUARDED_TABLES = ("user_audit", "audit_chain", "audit_chain_head", "users")


# Support accounts the generated changes are attributed to (a few do most of the work).
STAFF_COUNT = 40


STAFF_PREFIX = "bench-support-"


# The label of changes made from the command line, which have no staff account.
CLI_ACTOR = "cli:ops"


STAFF_SQL = """
INSERT INTO staff (username, password_hash, role)
SELECT format('%%s%%s', %(prefix)s::text, s), '!', 'support'
FROM generate_series(1, %(count)s::int) AS s
ON CONFLICT ((lower(username))) DO NOTHING
"""


# Secondary indexes are dropped while the rows go in and built afterwards, as a
# restore would: one sorted build per index instead of ten million insertions.
SECONDARY_INDEXES_SQL = """
SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
FROM pg_index i
WHERE i.indrelid = %s::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
ORDER BY 1
"""


USERS_SQL = """
INSERT INTO users (id, name, email, created_at, updated_at, version)
SELECT u,
       format('Person %%s v1', u),
       format('person%%s.v1@example.com', u),
       %(start)s::timestamptz + (u - 1) * %(step)s::interval,
       %(start)s::timestamptz + (u - 1) * %(step)s::interval,
       1
FROM generate_series(1, %(users)s::bigint) AS u
"""


# One "create" per profile at its creation time, then ``others`` changes:
# profiles are picked with a skewed distribution (low ids, the oldest, are the
# busiest), each change happens at a random moment after the profile's creation,
# 93% are updates (name, email or both), 3.5% deletes and 3.5% restores.
# Rows are inserted in timestamp order, as the application writes them, so ids
# and the physical order follow time. ``version`` numbers each profile's entries.
AUDIT_SQL = """
WITH draws AS MATERIALIZED (
    SELECT 1 + floor(%(users)s * power(random(), 2))::bigint AS user_id,
           random() AS r_time, random() AS r_operation, random() AS r_field,
           random() AS r_reason, random() AS r_actor, random() AS r_channel
    FROM generate_series(1, %(others)s::bigint)
),
changes AS (
    SELECT user_id,
           CASE WHEN r_operation < 0.93 THEN 'update'
                WHEN r_operation < 0.965 THEN 'delete'
                ELSE 'restore' END AS operation,
           created_at + interval '1 minute'
               + r_time * (%(end)s::timestamptz - created_at - interval '1 minute') AS ts,
           r_field, r_reason, r_actor, r_channel
    FROM draws
    CROSS JOIN LATERAL (
        SELECT %(start)s::timestamptz + (user_id - 1) * %(step)s::interval AS created_at
    ) AS creation
),
creates AS MATERIALIZED (
    SELECT u AS user_id, 'create' AS operation,
           %(start)s::timestamptz + (u - 1) * %(step)s::interval AS ts,
           0.0::float8 AS r_field, random() AS r_reason, random() AS r_actor,
           random() AS r_channel
    FROM generate_series(1, %(users)s::bigint) AS u
),
numbered AS (
    SELECT *,
           row_number() OVER (PARTITION BY user_id ORDER BY ts) AS version,
           CASE operation
               WHEN 'create' THEN ARRAY['name', 'email']
               WHEN 'update' THEN CASE WHEN r_field < 0.45 THEN ARRAY['name']
                                       WHEN r_field < 0.85 THEN ARRAY['email']
                                       ELSE ARRAY['name', 'email'] END
               ELSE ARRAY['deleted_at'] END AS fields
    FROM (SELECT * FROM changes UNION ALL SELECT * FROM creates) AS all_rows
)
INSERT INTO user_audit (
    user_id, operation, "timestamp", previous_data, new_data, changed_fields, version, reason,
    actor_id, actor_label, channel, channel_detail, remote_addr, request_id, unattributed
)
SELECT user_id,
       operation,
       ts,
       CASE WHEN operation <> 'create' THEN jsonb_build_object(
           'name', format('Person %%s v%%s', user_id, version - 1),
           'email', format('person%%s.v%%s@example.com', user_id, version - 1),
           'deleted_at', CASE WHEN operation = 'restore' THEN to_char(
               (ts - interval '3 days') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
           END)
       END,
       jsonb_build_object(
           'name', format('Person %%s v%%s', user_id,
                          CASE WHEN 'name' = ANY (fields) THEN version ELSE version - 1 END),
           'email', format('person%%s.v%%s@example.com', user_id,
                           CASE WHEN 'email' = ANY (fields) THEN version ELSE version - 1 END),
           'deleted_at', CASE WHEN operation = 'delete' THEN to_char(
               ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END),
       fields,
       version,
       CASE WHEN r_reason < 0.7
            THEN format('Support ticket #%%s', 100000 + floor(r_reason * 1000000)::int) END,
       CASE WHEN channel IN ('web', 'api') THEN staff_id END,
       CASE channel WHEN 'cli' THEN %(cli_actor)s WHEN 'database' THEN 'db:postgres'
                    ELSE staff_name END,
       channel,
       CASE channel WHEN 'web' THEN 'Mozilla/5.0 (X11; Linux x86_64)'
                    WHEN 'api' THEN 'sync-script' WHEN 'cli' THEN 'flask users update'
                    ELSE 'psql' END,
       CASE WHEN channel IN ('web', 'api')
            THEN format('10.0.%%s.%%s', floor(r_channel * 250)::int, version %% 250) END,
       CASE WHEN channel IN ('web', 'api') THEN md5(r_reason::text) END,
       channel = 'database'
FROM numbered
-- A few accounts do most of the work: the first staff member about 30%%.
CROSS JOIN LATERAL (
    SELECT %(staff_ids)s::bigint[] AS ids, %(staff_names)s::text[] AS names
) AS staff
CROSS JOIN LATERAL (
    SELECT 1 + floor(cardinality(staff.ids) * power(r_actor, 3))::int AS pick
) AS picked
CROSS JOIN LATERAL (
    SELECT staff.ids[picked.pick] AS staff_id, staff.names[picked.pick] AS staff_name,
           CASE WHEN operation = 'create' OR r_channel < 0.70 THEN 'web'
                WHEN r_channel < 0.95 THEN 'api'
                WHEN r_channel < 0.999 THEN 'cli'
                ELSE 'database' END AS channel
) AS attribution
ORDER BY ts, version
"""


# The profiles end in the state their last entry describes.
USERS_FINAL_STATE_SQL = """
UPDATE users
SET name = last.new_data ->> 'name',
    email = last.new_data ->> 'email',
    deleted_at = CASE WHEN last.operation = 'delete' THEN last."timestamp" END,
    updated_at = last."timestamp",
    version = last.version
FROM (
    SELECT DISTINCT ON (user_id) user_id, operation, "timestamp", new_data, version
    FROM user_audit
    ORDER BY user_id, version DESC
) AS last
WHERE users.id = last.user_id
"""


def generate_data(url: str, *, users: int, entries: int, seed: float) -> float:
    """Fill ``users`` and ``user_audit``; return the seconds it took (VACUUM ANALYZE included)."""
    step = (HISTORY_END - HISTORY_START) * CREATION_SPAN_FRACTION / users
    params = {
        "users": users,
        "others": entries - users,
        "start": HISTORY_START,
        "end": HISTORY_END,
        "step": step,
    }
    started = time.perf_counter()
    with psycopg.connect(url) as connection:
        connection.execute("SET work_mem = '256MB'")
        connection.execute("SET maintenance_work_mem = '1GB'")
        connection.execute("SET synchronous_commit = off")
        # History refuses TRUNCATE and the chain's head only moves forward;
        # lifted here, in this transaction only, so that a kept benchmark
        # database can be filled again. The safety net on users is off too: the
        # data stands for what the application wrote (its entries are in
        # AUDIT_SQL), not for writes that bypassed it.
        for table in GUARDED_TABLES:
            connection.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        # Foreign keys are checked by a system trigger per inserted row; the
        # generated ids are valid by construction, so the checks are skipped
        # where allowed (superusers only: others keep them).
        try:
            with connection.transaction():
                connection.execute("SET LOCAL session_replication_role = replica")
        except psycopg.errors.InsufficientPrivilege:
            pass
        connection.execute(
            "TRUNCATE user_audit, users, profile_data_keys, audit_chain, audit_chain_pending "
            "RESTART IDENTITY"
        )
        connection.execute(
            "UPDATE audit_chain_head SET seq = 0, hash = %s WHERE id = 1", (bytes(32),)
        )
        connection.execute(STAFF_SQL, {"prefix": STAFF_PREFIX, "count": STAFF_COUNT})
        staff = connection.execute(
            "SELECT id, username FROM staff WHERE username LIKE %s ORDER BY id",
            (STAFF_PREFIX + "%",),
        ).fetchall()
        params["staff_ids"] = [row[0] for row in staff]
        params["staff_names"] = [row[1] for row in staff]
        params["cli_actor"] = CLI_ACTOR
        dropped = drop_secondary_indexes(connection, ("users", "user_audit"))
        connection.execute("SELECT setseed(%s)", (seed,))
        _step(connection, "profiles", USERS_SQL, params)
        connection.execute("SELECT setval(pg_get_serial_sequence('users', 'id'), %s)", (users,))
        _step(connection, "audit entries", AUDIT_SQL, params)
        _step(connection, "profiles' final state", USERS_FINAL_STATE_SQL, {})
        moment = time.perf_counter()
        for definition in dropped:
            connection.execute(definition)
        print(
            f"  {len(dropped)} secondary indexes built in {time.perf_counter() - moment:.1f} s",
            flush=True,
        )
        for table in GUARDED_TABLES:
            connection.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        connection.commit()
    with psycopg.connect(url, autocommit=True) as connection:
        moment = time.perf_counter()
        connection.execute("VACUUM (ANALYZE) users")
        connection.execute("VACUUM (ANALYZE) user_audit")
        # Write the load's dirty pages out now rather than in a checkpoint that
        # would land in the middle of the timings (superusers and pg_checkpoint only).
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            connection.execute("CHECKPOINT")
        print(f"  VACUUM ANALYZE: {time.perf_counter() - moment:.1f} s", flush=True)
    return time.perf_counter() - started


def generate_history(url: str, args: argparse.Namespace, *, seed: float | None = None) -> float:
    """``generate_data`` of the sizes the options ask for (``seed``, else
    ``--seed``), saying so as it goes; the seconds it took."""
    print(f"Generating {args.users:,} profiles and {args.entries:,} audit entries", flush=True)
    seed = args.seed if seed is None else seed
    seconds = generate_data(url, users=args.users, entries=args.entries, seed=seed)
    print(f"Data generated in {seconds:.1f} s", flush=True)
    return seconds


def drop_secondary_indexes(
    connection: psycopg.Connection[Any], tables: tuple[str, ...]
) -> list[str]:
    """Drop the indexes of ``tables`` that back no constraint; return their definitions."""
    definitions: list[str] = []
    for table in tables:
        for name, definition in connection.execute(SECONDARY_INDEXES_SQL, (table,)).fetchall():
            connection.execute(f"DROP INDEX {name}")
            definitions.append(definition)
    return definitions


def _step(
    connection: psycopg.Connection[Any], label: str, sql: str, params: dict[str, Any]
) -> None:
    """Run one generation statement and say how long it took."""
    moment = time.perf_counter()
    rows = connection.execute(sql, params).rowcount  # type: ignore[arg-type]
    print(f"  {label}: {rows:,} rows in {time.perf_counter() - moment:.1f} s", flush=True)


_NODE = re.compile(
    r"(?P<node>Index Only Scan Backward|Index Scan Backward|Index Only Scan|Index Scan"
    r"|Bitmap Index Scan|Bitmap Heap Scan|Seq Scan|Parallel Seq Scan)"
    r"(?: using| on) (?P<name>\w+)"
)


_SORT = re.compile(r"Sort Method: (?P<method>[\w-]+(?: \w+)?)\s+(?:Memory|Disk): (?P<kb>\d+)kB")


_ACTUAL_ROWS = re.compile(r"->.*\(actual time=[\d.]+\.\.[\d.]+ rows=(?P<rows>[\d.]+)")


_REMOVED = re.compile(r"Rows Removed by (?:Filter|Index Recheck): (?P<rows>\d+)")


# Beyond these a plan is flagged: a page should read about the rows it shows.
SORTED_ROWS_LIMIT = 1_000


REMOVED_ROWS_LIMIT = 10_000


def summarize_plan(plan: str) -> tuple[str, list[str]]:
    """A one-line summary of ``plan`` (scans, indexes, sorts) and what looks costly in it."""
    nodes: list[str] = []
    warnings: list[str] = []
    sort_pending: str | None = None
    for line in plan.splitlines():
        match = _NODE.search(line)
        if match:
            node, name = match.group("node"), match.group("name")
            nodes.append(f"{node} {name}")
            if "Seq Scan" in node:
                warnings.append(f"Seq Scan on {name}")
        sort = _SORT.search(line)
        if sort:
            sort_pending = f"{sort.group('method')}, {sort.group('kb')} kB"
            if "external" in sort.group("method"):
                warnings.append(f"Sort {sort_pending}")
        elif sort_pending and (child := _ACTUAL_ROWS.search(line)):
            # The node under a Sort: how many rows were sorted to return a page.
            sorted_rows = int(float(child.group("rows")))
            nodes.append(f"Sort of {sorted_rows:,} rows ({sort_pending})")
            if sorted_rows > SORTED_ROWS_LIMIT:
                warnings.append(f"Sort of {sorted_rows:,} rows")
            sort_pending = None
        removed = _REMOVED.search(line)
        if removed and int(removed.group("rows")) > REMOVED_ROWS_LIMIT:
            warnings.append(f"{int(removed.group('rows')):,} rows removed by filter")
    return " -> ".join(nodes), warnings


def driver_url(url: str) -> str:
    """A libpq URL for psycopg (the app's URL names the SQLAlchemy driver)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def explain(url: str, statement: str, parameters: dict[str, Any]) -> str:
    """EXPLAIN ANALYZE of the statement with its bound values (the third of three runs)."""
    with psycopg.connect(driver_url(url), options="-c timezone=UTC") as connection:
        for _ in range(3):
            rows = connection.execute(
                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement,
                parameters,  # type: ignore[arg-type]
            ).fetchall()
        connection.rollback()
    return "\n".join(row[0] for row in rows)


def execution_ms(plan: str) -> float:
    match = re.search(r"Execution Time: ([\d.]+) ms", plan)
    return float(match.group(1)) if match else 0.0


def buffers_touched(plan: str) -> int:
    """Shared buffers the whole statement touched (the top node's count)."""
    match = re.search(r"Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?", plan)
    if not match:
        return 0
    return sum(int(value) for value in match.groups() if value)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (with fewer than 100 values, p99 is the maximum)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def machine_report(url: str) -> list[str]:
    """The machine, the server version and settings, and the size of the data."""
    with psycopg.connect(driver_url(url)) as connection:
        version = connection.execute("SELECT version()").fetchone()
        settings = connection.execute(
            "SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%s) ORDER BY name",
            (
                [
                    "shared_buffers",
                    "work_mem",
                    "effective_cache_size",
                    "random_page_cost",
                    "max_parallel_workers_per_gather",
                ],
            ),
        ).fetchall()
        sizes = connection.execute(
            "SELECT c.relname, pg_size_pretty(pg_relation_size(c.oid)), c.reltuples::bigint "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i') "
            "AND (c.relname LIKE 'user_audit%%' OR c.relname LIKE 'ix_user_audit%%' "
            "OR c.relname LIKE 'pk_user_audit%%' OR c.relname = 'users') "
            "ORDER BY c.relkind DESC, c.relname"
        ).fetchall()
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        first = meminfo.read_text().splitlines()[0].split()
        memory = f"{int(first[1]) / 1024 / 1024:.1f} GiB"
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (nproc), memory {memory},"
        f" {platform.system()} {platform.release()}",
        f"PostgreSQL: {version[0] if version else '?'}",
        "Settings: "
        + ", ".join(f"{name}={setting}{unit or ''}" for name, setting, unit in settings),
        "Relations: " + ", ".join(f"{name} {size} ({rows:,} rows)" for name, size, rows in sizes),
    ]
    return lines


@contextmanager
def database_server(keep: bool) -> Iterator[str]:
    """A libpq URL of the benchmark database, on the given or an embedded server."""
    external = os.environ.get("BENCH_DATABASE_URL")
    if external:
        drop_database(external, DATABASE_NAME)
        url = ensure_database(external, DATABASE_NAME)
        try:
            yield url
        finally:
            if not keep:
                drop_database(external, DATABASE_NAME)
        return
    directory = scratch_directory("profile-audit-bench-")
    server = None
    try:
        print(f"Starting an embedded PostgreSQL in {directory}", flush=True)
        server = start_embedded_server(directory / "data", delete_on_stop=True)
        yield ensure_database(server.get_uri(), DATABASE_NAME)
    finally:
        if server is not None:
            print("Stopping the embedded PostgreSQL", flush=True)
            server.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def use_run_keys() -> None:
    """Keys made for this run only, in the environment where none is set, so
    every app the benchmark starts (in-process, ``flask`` commands, gunicorn)
    shares them; the app has no built-in keys."""
    for name in KEY_SETTINGS:
        if not os.environ.get(name):
            os.environ[name] = random_key()


# --------------------------------------------------------------------------- servers

BOOT_TIMEOUT = 60.0


STOP_TIMEOUT = 20.0


APP = "app"


CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*?value="([^"]+)"')


LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


WORKER_PID = re.compile(r"Booting worker with pid: (\d+)")


@dataclass
class Server:
    """A gunicorn master started by this script, with its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def worker_pids(self) -> set[int]:
        return {int(pid) for pid in WORKER_PID.findall(self.log_text())}

    def stop(self) -> None:
        """SIGTERM to the master (graceful); SIGKILL to it and its workers only if it hangs."""
        if self.process.poll() is not None:
            return
        print(f"Stopping {self.name} gunicorn (pid {self.process.pid})", flush=True)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
            return
        except subprocess.TimeoutExpired:
            pass
        workers = self.worker_pids()
        self.process.kill()
        self.process.wait(timeout=5)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Status and body of a GET (status 0 when nothing answered)."""
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback only
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def start_server(
    name: str,
    command: list[str],
    env: dict[str, str],
    workdir: Path,
    ready_path: str,
    workers: int,
) -> Server:
    """Start gunicorn on 127.0.0.1:<free port>, wait for its workers and ``ready_path``."""
    log = workdir / f"{name}-gunicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            command,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(name, process, log)
    deadline = time.monotonic() + BOOT_TIMEOUT
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = server.log_text()[-3000:]
                raise RuntimeError(f"{name} gunicorn exited with {process.returncode}:\n{tail}")
            found = LISTENING.search(server.log_text())
            if found and len(server.worker_pids()) >= workers:
                server.port = int(found.group(1))
                if http_get(server.base + ready_path)[0] == 200:
                    return server
            time.sleep(0.2)
        raise RuntimeError(
            f"{name} gunicorn was not ready within {BOOT_TIMEOUT:.0f} s:\n"
            f"{server.log_text()[-3000:]}"
        )
    except BaseException:
        server.stop()
        raise


def clean_environment() -> dict[str, str]:
    """This process's environment without settings that would change either server."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FLASK_", "GUNICORN_", "PROMETHEUS_", "DB_", "SENTRY_"))
        and key
        not in {
            "DATABASE_URL",
            "WEB_CONCURRENCY",
            "PORT",
            "LOG_FORMAT",
            "APP_ENV",
            "SECRET_KEY",
            "AUDIT_CHAIN_KEY",
        }
    }


def production_environment(url: str, workers: int) -> dict[str, str]:
    """The app's settings as a deployment has them, with this run's keys (``use_run_keys``)."""
    return {
        "APP_ENV": "production",
        **{name: os.environ[name] for name in KEY_SETTINGS},
        "DATABASE_URL": url,
        "WEB_CONCURRENCY": str(workers),
    }


def start_app(url: str, workers: int, workdir: Path) -> Server:
    """The application under gunicorn with the real ``gunicorn.conf.py`` (production
    settings, this run's keys, ``WEB_CONCURRENCY=workers``) on 127.0.0.1."""
    env = {**clean_environment(), **production_environment(url, workers)}
    command = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py")]
    command += ["--bind", "127.0.0.1:0", "wsgi:app"]
    return start_server(APP, command, env, workdir, "/readyz", workers)


# --------------------------------------------------------------------------- sign-in


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hand every redirect back to the caller (the sign-in's 302 carries the cookie)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _cookies(headers: Any) -> dict[str, str]:
    """The cookies a response sets, by name (values only)."""
    found = {}
    for header in headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        found[name.strip()] = rest.split(";", 1)[0]
    return found


def sign_in(base: str, username: str, password: str) -> str:
    """The ``Cookie`` header of an auditor signed in through the real form (CSRF included).

    Cookies are handled by hand: the session cookie may be marked Secure, which
    a cookie jar would then never send over plain HTTP on 127.0.0.1.
    """
    opener = urllib.request.build_opener(_NoRedirect)
    with opener.open(base + "/login", timeout=10) as page:
        cookies = _cookies(page.headers)
        found = CSRF_FIELD.search(page.read().decode())
    if found is None:
        raise RuntimeError("no CSRF token on /login")
    form = urllib.parse.urlencode(
        {"csrf_token": found.group(1), "username": username, "password": password}
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback only
        base + "/login",
        data=form,
        headers={
            "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    try:
        with opener.open(request, timeout=10) as response:
            status, headers = response.status, response.headers
    except urllib.error.HTTPError as error:
        status, headers = error.code, error.headers
    if status != 302:
        raise RuntimeError(f"sign-in answered {status}, not 302")
    cookies.update(_cookies(headers))
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    status, body = http_get(base + "/audit", {"Cookie": cookie})
    if status != 200 or b'id="entry-' not in body:
        raise RuntimeError(f"the timeline answered {status} to the signed-in auditor")
    return cookie


# --------------------------------------------------------------------------- runs


def prepare_run() -> None:
    """What every benchmark does first: stop cleanly on SIGTERM (servers and
    temporary directories removed) and share this run's keys."""
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    use_run_keys()


def start_run(
    parse_args: Callable[[list[str]], argparse.Namespace], argv: list[str] | None
) -> argparse.Namespace:
    """A benchmark's options (from ``argv``, else the command line), after
    ``prepare_run``."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    prepare_run()
    return args


def migrated_app(url: str, **settings: Any) -> Flask:
    """The application on the benchmark database ``url``, its schema migrated to head."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url(url), **settings})
    with app.app_context():
        upgrade()
    return app


def add_data_size_options(
    parser: argparse.ArgumentParser, *, entries: int = 1_000_000, users: int = 100_000
) -> None:
    """``--entries``, ``--users`` and ``--seed`` of the generated history."""
    parser.add_argument("--entries", type=int, default=entries, help="audit entries")
    parser.add_argument("--users", type=int, default=users, help="profiles")
    parser.add_argument("--seed", type=float, default=0.42, help="setseed() for the data")


def check_data_size(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse sizes ``generate_data`` cannot make."""
    if args.users < 1 or args.entries < args.users:
        parser.error("--entries must be at least --users (every profile has a create entry)")


def add_summary_option(parser: argparse.ArgumentParser) -> None:
    """``--summary``: where ``bench.run`` collects every benchmark's Markdown."""
    parser.add_argument("--summary", type=Path, help="append the results as Markdown to this file")


def append_summary(path: Path | None, lines: list[str]) -> None:
    """Append ``lines`` to the summary file, when there is one."""
    if path is None:
        return
    with path.open("a", encoding="utf-8") as summary:
        summary.write("\n".join(lines) + "\n")


@dataclass
class TimedBlock:
    """One round of one variant: how long it took and each transaction's latency."""

    seconds: float
    latencies_ms: list[float]

    @property
    def per_second(self) -> float:
        return len(self.latencies_ms) / self.seconds
