"""Benchmark of the audit timeline queries (``webapp.services.audit_log.list_entries``).

Fills a throwaway database with realistic profiles and audit entries (in SQL
only), then for each filter combination times the real service call on its
first page and on pages reached through a cursor 1,000 and 10,000 pages deep
(or the last page when there are fewer), and shows the PostgreSQL plan of the
exact statement the service sent.

Run from the project root::

    .venv/bin/python bench/timeline_queries.py --entries 1000000

Without ``BENCH_DATABASE_URL`` an embedded PostgreSQL is started in a temporary
directory and deleted afterwards. With it (a libpq URL of a server on which the
user may create databases), the database ``profile_audit_bench`` is (re)created
there and dropped at the end unless ``--keep-database`` is given.
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
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import event, func, select, text

from webapp import create_app
from webapp.config import KEY_SETTINGS, database_url, random_key
from webapp.dev.local_database import (
    drop_database,
    ensure_database,
    scratch_directory,
    start_embedded_server,
)
from webapp.extensions import db
from webapp.models import UserAudit
from webapp.services.audit_log import (
    AuditFilter,
    filtered_statement,
    list_entries,
    parse_audit_filter,
)
from webapp.services.pagination import encode_time_id_cursor

DATABASE_NAME = "profile_audit_bench"
PAGE_SIZE = 50
SLOW_P99_MS = 20.0
# What the timeline must stay under at ten million entries, per page.
TARGET_P99_MS = 50.0
# Two years of history, ending at a fixed moment so that runs are comparable.
HISTORY_START = datetime(2024, 11, 1, tzinfo=UTC)
HISTORY_END = datetime(2026, 11, 1, tzinfo=UTC)
# Profiles are created during the first 90% of the history, oldest id first.
CREATION_SPAN_FRACTION = 0.9


# --------------------------------------------------------------------------- data

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
            "TRUNCATE user_audit, users, audit_chain, audit_chain_pending RESTART IDENTITY"
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
        dropped = _drop_secondary_indexes(connection, ("users", "user_audit"))
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


def _drop_secondary_indexes(
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


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Combination:
    """A named filter, built the way the API builds it from query-string values."""

    name: str
    query: dict[str, list[str]]

    def audit_filter(self) -> AuditFilter:
        """The filter ``parse_audit_filter`` makes of these query-string values."""
        return parse_audit_filter(self.query)


def combinations(busy_user: int, busy_staff: int, rare_staff: int) -> list[Combination]:
    """The filters measured.

    ``busy_user`` is the profile with the most entries, ``busy_staff`` the staff
    member with the most changes (about 30%), ``rare_staff`` the one with the fewest.
    """
    user = [str(busy_user)]
    month = {"since": ["2025-06-01"], "until": ["2025-06-30"]}
    # An open-ended "until": nearly the whole history matches.
    before = {"until": ["2026-10-30"]}
    return [
        Combination("no filter", {}),
        Combination("user_id", {"user_id": user}),
        Combination("operation=update", {"operation": ["update"]}),
        Combination("operation=delete,restore", {"operation": ["delete,restore"]}),
        Combination("since/until (30 days)", month),
        Combination("until (no since)", before),
        Combination("field=email", {"field": ["email"]}),
        Combination("user_id+field=email", {"user_id": user, "field": ["email"]}),
        Combination("operation=update+30 days", {"operation": ["update"], **month}),
        Combination("operation=update+until", {"operation": ["update"], **before}),
        Combination("actor=busiest staff id", {"actor": [str(busy_staff)]}),
        Combination("actor=rarest staff id", {"actor": [str(rare_staff)]}),
        Combination("actor=cli:ops (label)", {"actor": [CLI_ACTOR]}),
        Combination("unattributed", {"unattributed": ["true"]}),
        Combination(
            "actor+operation=delete,restore",
            {"actor": [str(busy_staff)], "operation": ["delete,restore"]},
        ),
        Combination("actor+30 days", {"actor": [str(busy_staff)], **month}),
        Combination("user_id+actor", {"user_id": user, "actor": [str(busy_staff)]}),
        Combination(
            "user_id+update+2025+field=email",
            {
                "user_id": user,
                "operation": ["update"],
                "since": ["2025-01-01"],
                "until": ["2025-12-31"],
                "field": ["email"],
            },
        ),
    ]


@dataclass
class Result:
    """Measurements of one combination on one page."""

    combination: str
    page: str
    matching: int
    p50_ms: float
    p99_ms: float
    rows: int
    plan: str
    plan_summary: str
    execution_ms: float
    buffers: int
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- plans

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
BUFFERS_LIMIT = 1_000


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


def _driver_url(url: str) -> str:
    """A libpq URL for psycopg (the app's URL names the SQLAlchemy driver)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def explain(url: str, statement: str, parameters: dict[str, Any]) -> str:
    """EXPLAIN ANALYZE of the statement with its bound values (the third of three runs)."""
    with psycopg.connect(_driver_url(url), options="-c timezone=UTC") as connection:
        for _ in range(3):
            rows = connection.execute(
                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement,
                parameters,  # type: ignore[arg-type]
            ).fetchall()
        connection.rollback()
    return "\n".join(row[0] for row in rows)


def _execution_ms(plan: str) -> float:
    match = re.search(r"Execution Time: ([\d.]+) ms", plan)
    return float(match.group(1)) if match else 0.0


def _buffers(plan: str) -> int:
    """Shared buffers the whole statement touched (the top node's count)."""
    match = re.search(r"Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?", plan)
    if not match:
        return 0
    return sum(int(value) for value in match.groups() if value)


# --------------------------------------------------------------------------- timing


@dataclass
class Captured:
    """The last SELECT on user_audit the application sent, as the driver got it."""

    statement: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


def capture_statements(app: Flask) -> Captured:
    """Record what the application's engine sends for timeline pages."""
    captured = Captured()

    def remember(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        if statement.lstrip().startswith("SELECT user_audit.id"):
            captured.statement = statement
            captured.parameters = dict(parameters or {})

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", remember)
    return captured


def time_calls(call: Callable[[], int], *, warmup: int, runs: int) -> tuple[list[float], int]:
    """Milliseconds per call (each in a fresh session, like a request) and the rows returned."""
    rows = 0
    for _ in range(warmup):
        call()
        db.session.remove()
    timings: list[float] = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        rows = call()
        timings.append((time.perf_counter_ns() - started) / 1e6)
        db.session.remove()
    return timings, rows


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (with fewer than 100 values, p99 is the maximum)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def count_matching(audit_filter: AuditFilter) -> int:
    """How many entries ``audit_filter`` matches in all."""
    matching = filtered_statement(audit_filter).subquery()
    return db.session.scalar(select(func.count()).select_from(matching)) or 0


def deep_cursor(audit_filter: AuditFilter, pages_before: int) -> str:
    """The cursor a client holds after reading ``pages_before`` pages.

    OFFSET is used once, only to find the (timestamp, id) the page starts after;
    the timed query then follows the cursor like any client would.
    """
    last = db.session.execute(
        filtered_statement(audit_filter)
        .with_only_columns(UserAudit.timestamp, UserAudit.id)
        .order_by(UserAudit.timestamp.desc(), UserAudit.id.desc())
        .offset(pages_before * PAGE_SIZE - 1)
        .limit(1)
    ).one()
    return encode_time_id_cursor(last.timestamp, last.id)


def pages_to_measure(
    audit_filter: AuditFilter, matching: int, depths: list[int]
) -> list[tuple[str, str | None]]:
    """The first page, then the page after ``depth`` pages for each depth (or the last page)."""
    last_page_before = (matching - 1) // PAGE_SIZE if matching else 0
    pages: list[tuple[str, str | None]] = [("first", None)]
    seen = {0}
    for depth in depths:
        pages_before = min(depth, last_page_before)
        if pages_before not in seen:
            seen.add(pages_before)
            pages.append((f"{pages_before + 1:,}", deep_cursor(audit_filter, pages_before)))
    return pages


def statement_was_prepared() -> bool:
    """Whether the timeline statement became a server-side prepared statement.

    psycopg prepares a statement after 5 executions, but it forgets them all at
    every ROLLBACK, and the pool rolls back each connection it gets back: the
    app's reads are planned afresh with their values, as EXPLAIN shows them.
    """
    found = db.session.scalar(
        text(
            "SELECT count(*) FROM pg_prepared_statements "
            "WHERE statement LIKE 'SELECT user_audit.id%'"
        )
    )
    return bool(found)


def measure(
    app: Flask,
    url: str,
    captured: Captured,
    combination: Combination,
    *,
    depths: list[int],
    warmup: int,
    runs: int,
) -> Iterator[Result]:
    """Time and explain each page of ``combination``."""
    with app.app_context():
        audit_filter = combination.audit_filter()
        matching = count_matching(audit_filter)
        pages = pages_to_measure(audit_filter, matching, depths)
        db.session.remove()
        for page, page_cursor in pages:

            def call(page_cursor: str | None = page_cursor) -> int:
                return len(list_entries(audit_filter, limit=PAGE_SIZE, cursor=page_cursor).items)

            timings, rows = time_calls(call, warmup=warmup, runs=runs)
            # Once more, and look at the connection before the session ends.
            call()
            prepared = statement_was_prepared()
            db.session.remove()
            # The plan of the exact statement and values list_entries sent last.
            plan = explain(url, captured.statement, captured.parameters)
            summary, warnings = summarize_plan(plan)
            p99 = percentile(timings, 0.99)
            buffers = _buffers(plan)
            if buffers > BUFFERS_LIMIT:
                warnings.append(f"{buffers:,} buffers for one page")
            if p99 > SLOW_P99_MS:
                warnings.append(f"p99 {p99:.1f} ms")
            if prepared:
                warnings.append("prepared statement: a generic plan may differ from this one")
            yield Result(
                combination=combination.name,
                page=page,
                matching=matching,
                p50_ms=statistics.median(timings),
                p99_ms=p99,
                rows=rows,
                plan=plan,
                plan_summary=summary,
                execution_ms=_execution_ms(plan),
                buffers=buffers,
                warnings=warnings,
            )


# --------------------------------------------------------------------------- report


def machine_report(url: str) -> list[str]:
    """The machine, the server version and settings, and the size of the data."""
    with psycopg.connect(_driver_url(url)) as connection:
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


def print_table(results: list[Result]) -> None:
    """The results as a Markdown table (list_entries timings, then the server's side)."""
    print(
        "| Filter | Page | Matching rows | p50 ms | p99 ms | DB exec ms | Buffers | Plan | Flags |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|---|")
    for result in results:
        print(
            f"| {result.combination} | {result.page} | {result.matching:,} "
            f"| {result.p50_ms:.2f} | {result.p99_ms:.2f} | {result.execution_ms:.2f} "
            f"| {result.buffers:,} | {result.plan_summary} "
            f"| {'; '.join(result.warnings) or 'ok'} |"
        )


def write_summary(
    path: Path, results: list[Result], *, entries: int, machine: list[str], generation_s: float
) -> None:
    """Append the results to ``path`` as Markdown (the runner of all benchmarks collects it)."""
    worst = max(results, key=lambda result: result.p99_ms)
    lines = [
        f"### Timeline at {entries:,} entries",
        "",
        f"{machine[0]}; {machine[1].split(' on ')[0]}. Data generated in SQL in "
        f"{generation_s:.0f} s. `list_entries` (50 per page) timed in-process: "
        "p50/p99 over the timed calls; DB ms and buffers from EXPLAIN ANALYZE.",
        "",
        "| Filter | Page | Matching | p50 ms | p99 ms | DB ms | Buffers | Plan |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {r.combination} | {r.page} | {r.matching:,} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
        f"| {r.execution_ms:.2f} | {r.buffers:,} | {r.plan_summary} |"
        for r in results
    ]
    verdict = "met" if worst.p99_ms < TARGET_P99_MS else "MISSED"
    lines += [
        "",
        f"Worst p99: {worst.p99_ms:.1f} ms ({worst.combination}, page {worst.page}); "
        f"target p99 < {TARGET_P99_MS:.0f} ms: {verdict}.",
        "",
    ]
    with path.open("a", encoding="utf-8") as summary:
        summary.write("\n".join(lines) + "\n")


def write_plans(path: Path, results: list[Result], *, entries: int, statement: str) -> None:
    """Every case's EXPLAIN ANALYZE in full, as Markdown (for bench/README.md)."""
    lines = [
        f"### Plans at {entries:,} entries",
        "",
        "`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)` of the statement `list_entries` sent, with"
        " its values; the statement of the last case:",
        "",
        "```sql",
        statement.strip(),
        "```",
        "",
    ]
    for result in results:
        heading = f"**{result.combination}, page {result.page}**"
        lines += [heading, "", "```", result.plan, "```", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


# --------------------------------------------------------------------------- main


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


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="audit entries")
    parser.add_argument("--users", type=int, default=100_000, help="profiles")
    parser.add_argument("--runs", type=int, default=100, help="timed calls per case")
    parser.add_argument("--warmup", type=int, default=15, help="untimed calls first")
    parser.add_argument(
        "--depth",
        type=int,
        nargs="+",
        default=[1000, 10000],
        help="pages read before each deep page (default: 1000 10000)",
    )
    parser.add_argument("--seed", type=float, default=0.42, help="setseed() for the data")
    parser.add_argument("--plans", action="store_true", help="print every plan in full")
    parser.add_argument("--summary", type=Path, help="append the results as Markdown to this file")
    parser.add_argument(
        "--plans-file", type=Path, help="write every plan in full as Markdown to this file"
    )
    parser.add_argument(
        "--keep-database", action="store_true", help="with BENCH_DATABASE_URL: do not drop it"
    )
    args = parser.parse_args(argv)
    if args.users < 1 or args.entries < args.users:
        parser.error("--entries must be at least --users (every profile has a create entry)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    use_run_keys()
    with database_server(args.keep_database) as url:
        app = create_app({"SQLALCHEMY_DATABASE_URI": database_url(url)})
        with app.app_context():
            upgrade()

        print(f"Generating {args.users:,} profiles and {args.entries:,} audit entries", flush=True)
        seconds = generate_data(url, users=args.users, entries=args.entries, seed=args.seed)
        print(f"Data generated in {seconds:.1f} s\n", flush=True)
        for line in machine_report(url):
            print(line)

        with psycopg.connect(url) as connection:
            busy = connection.execute(
                "SELECT user_id, count(*) FROM user_audit GROUP BY user_id "
                "ORDER BY count(*) DESC, user_id LIMIT 1"
            ).fetchone()
            staff = connection.execute(
                "SELECT actor_id, count(*) FROM user_audit WHERE actor_id IS NOT NULL "
                "GROUP BY actor_id ORDER BY count(*) DESC, actor_id"
            ).fetchall()
        assert busy is not None
        print(f"Busiest profile: {busy[0]} with {busy[1]:,} entries", flush=True)
        print(
            f"Staff: busiest {staff[0][0]} with {staff[0][1]:,} entries, "
            f"rarest {staff[-1][0]} with {staff[-1][1]:,}\n",
            flush=True,
        )

        captured = capture_statements(app)
        results: list[Result] = []
        for combination in combinations(busy[0], staff[0][0], staff[-1][0]):
            for result in measure(
                app,
                url,
                captured,
                combination,
                depths=args.depth,
                warmup=args.warmup,
                runs=args.runs,
            ):
                results.append(result)
                print(
                    f"== {result.combination}, page {result.page}: "
                    f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
                    f"{result.rows} rows of {result.matching:,}",
                    flush=True,
                )
                print(result.plan if args.plans or result.warnings else result.plan_summary)
                print(flush=True)

        print("Statement of the last case, as list_entries sends it:")
        print(captured.statement)
        print()
        print_table(results)
        if args.plans_file:
            write_plans(
                args.plans_file, results, entries=args.entries, statement=captured.statement
            )
        if args.summary:
            write_summary(
                args.summary,
                results,
                entries=args.entries,
                machine=machine_report(url),
                generation_s=seconds,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
