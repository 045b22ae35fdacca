"""Benchmark of the auditors' timeline page (``GET /audit``, HTML) and its CSV export.

Fills a throwaway database with the same realistic profiles and audit entries
as ``bench/timeline_queries.py`` (whose data generation and server handling it
reuses), creates an auditor account, signs a Flask test client in through
``/login`` and times whole requests through the application: the first render
of the page (entries and the activity chart), the same with filters, the htmx
fragments of the next page and of a page about 1,000 pages deep, and a full
CSV export. For each case it reports p50/p99 and the SQL statements sent per
request, and shows the PostgreSQL plans of the page's two queries.

With ``--http`` the same pages are timed through HTTP instead: the app runs
under gunicorn with the real ``gunicorn.conf.py`` on 127.0.0.1 (as
``bench/http_load.py`` serves it), the auditor signs in through ``/login`` over
HTTP and each case is timed from the request sent to the body read, against the
goals p50 < 40 ms and p99 < 100 ms; the JSON timeline (``/api/v1/audit``,
with a bearer token) is timed beside it. gunicorn is stopped by PID at the end.

With ``--compare-encryption`` (and ``--http``) the generated history, written
with its personal values in clear as entries were before encryption, is timed
first; then every entry's values are encrypted in place as the application
stores them (``bench.encrypted_history``) and the same cases are timed again on
the same server: the cost of decryption per page, side by side.

Run from the project root::

    .venv/bin/python -m bench.timeline_page --entries 1000000
    .venv/bin/python -m bench.timeline_page --http --entries 1000000
    .venv/bin/python -m bench.timeline_page --http --compare-encryption --entries 10000000 \
        --users 1000000

Without ``BENCH_DATABASE_URL`` an embedded PostgreSQL is started in a temporary
directory and deleted afterwards. With it, the database ``profile_audit_bench``
is (re)created on that server and dropped at the end.
"""

from __future__ import annotations

import argparse
import csv
import html
import http.client
import io
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from bench._common import (
    CSRF_FIELD,
    add_data_size_options,
    buffers_touched,
    check_data_size,
    database_server,
    execution_ms,
    explain,
    generate_history,
    machine_report,
    migrated_app,
    percentile,
    sign_in,
    start_app,
    start_run,
    summarize_plan,
)
from bench.encrypted_history import encrypt_history
from webapp.audit.context import Actor, Origin, acting_as
from webapp.extensions import db
from webapp.services.api_tokens import create_token
from webapp.services.pagination import encode_time_id_cursor
from webapp.services.staff import create_staff

#: the timeline's page size when the URL names none (the page's default)
PAGE_SIZE = 25
USERNAME = "bench-auditor"
PASSWORD = "bench auditor password, long enough"  # noqa: S105
#: the page's goals at 10,000,000 entries, every filter (cases above SLOW_P99_MS are flagged)
GOAL_P50_MS = 40.0
SLOW_P99_MS = 100.0
#: the 30-day range used by the filtered cases (as in timeline_queries.py)
MONTH = {"since": "2025-06-01", "until": "2025-06-30"}
#: an actor label no staff account has: filtered on ``lower(actor_label)``
UNKNOWN_ACTOR = "import-job"

ENTRY_ID = re.compile(r'<li class="entry" id="entry-(\d+)"')
LOAD_MORE = re.compile(r'<li class="load-more" hx-get="([^"]+)"')
HTMX = {"HX-Request": "true"}


# --------------------------------------------------------------------------- statements


@dataclass
class Statements:
    """Counts what the application's engine sends; keeps the page's two queries."""

    count: int = 0
    #: nanoseconds between sending statements and having their rows (driver side)
    sql_ns: int = 0
    #: the last entries query (``list_entries``) and the last chart query (``activity``)
    entries: tuple[str, dict[str, Any]] | None = None
    chart: tuple[str, dict[str, Any]] | None = None
    texts: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.count = 0
        self.sql_ns = 0
        self.texts = []


def watch_statements(app: Flask) -> Statements:
    """Listen to every statement the app's engine executes."""
    statements = Statements()

    def seen(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        statements.count += 1
        conn.info["bench_started_ns"] = time.perf_counter_ns()
        statements.texts.append(statement.split("\n", 1)[0][:90])
        text = statement.lstrip()
        if text.startswith("SELECT user_audit.id"):
            statements.entries = (statement, dict(parameters or {}))
        elif "date_trunc" in text:
            statements.chart = (statement, dict(parameters or {}))

    def done(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        started = conn.info.pop("bench_started_ns", None)
        if started is not None:
            statements.sql_ns += time.perf_counter_ns() - started

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", seen)
        event.listen(db.engine, "after_cursor_execute", done)
    return statements


# --------------------------------------------------------------------------- client


def create_auditor(app: Flask) -> str:
    """The auditor account the client signs in with, created as the CLI would;
    returns an API token of the account."""
    with app.app_context(), acting_as(Actor(None, "bench"), Origin("cli")):
        auditor = create_staff(USERNAME, PASSWORD, "auditor")
        _, secret = create_token(auditor, "bench")
        return secret


def signed_in_client(app: Flask) -> FlaskClient:
    """A test client signed in through the real form (CSRF included)."""
    client = app.test_client()
    page = client.get("/login")
    found = CSRF_FIELD.search(page.get_data(as_text=True))
    assert found is not None, "no CSRF token on /login"
    response = client.post(
        "/login",
        data={"csrf_token": found.group(1), "username": USERNAME, "password": PASSWORD},
    )
    assert response.status_code == 302, f"sign-in answered {response.status_code}"
    return client


def get(client: FlaskClient, url: str, headers: dict[str, str] | None = None) -> str:
    """The body of a successful GET (read to the end)."""
    response = client.get(url, headers=headers or {})
    body = response.get_data(as_text=True)
    response.close()
    assert response.status_code == 200, f"{url} answered {response.status_code}"
    return body


def next_url(body: str) -> str | None:
    """The URL htmx follows for the next rows, if the body has one."""
    found = LOAD_MORE.search(body)
    return html.unescape(found.group(1)) if found else None


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """One request to time."""

    name: str
    url: str
    fragment: bool = False
    #: a JSON API request, with the auditor's bearer token instead of the session
    api: bool = False


@dataclass
class Result:
    """Timings of one case."""

    name: str
    url: str
    p50_ms: float
    p99_ms: float
    statements: int
    #: median time spent in SQL per request (sent, executed, rows received)
    sql_ms: float
    entries: int
    kb: float
    entries_plan: str = ""
    entries_db_ms: float = 0.0
    entries_buffers: int = 0
    chart_plan: str = ""
    chart_db_ms: float = 0.0
    chart_buffers: int = 0
    notes: list[str] = field(default_factory=list)


def audit_url(**params: str) -> str:
    return "/audit" + (f"?{urlencode(params)}" if params else "")


def page_cases(busy_user: int, deep_cursor: str, second_page: str) -> list[Case]:
    """The full pages (with their chart), then the htmx fragments of later pages.

    The first case is timed again after the filtered ones, to show how much the
    figures drift during a run.
    """
    return [
        Case("page, no filter", audit_url()),
        Case("fragment, results block (no filter)", audit_url(), fragment=True),
        Case("page, operation=update", audit_url(operation="update")),
        Case(f"page, user_id={busy_user}", audit_url(user_id=str(busy_user))),
        Case("page, since/until (30 days)", audit_url(**MONTH)),
        Case("page, field=email", audit_url(field="email")),
        Case(f"page, actor={USERNAME} (an account)", audit_url(actor=USERNAME)),
        Case(f"page, actor={UNKNOWN_ACTOR} (a label)", audit_url(actor=UNKNOWN_ACTOR)),
        Case("page, no filter (again, last)", audit_url()),
        Case("fragment, page 2 (next cursor)", second_page, fragment=True),
        Case(
            "fragment, page 1,001 (cursor)",
            audit_url(cursor=deep_cursor),
            fragment=True,
        ),
        Case("JSON, no filter", "/api/v1/audit?limit=25", api=True),
        Case("JSON, operation=update", "/api/v1/audit?limit=25&operation=update", api=True),
        Case(f"JSON, user_id={busy_user}", f"/api/v1/audit?limit=25&user_id={busy_user}", api=True),
        Case(
            "JSON, page 1,001 (cursor)",
            f"/api/v1/audit?{urlencode({'limit': 25, 'cursor': deep_cursor})}",
            api=True,
        ),
    ]


def time_case(
    client: FlaskClient,
    statements: Statements,
    case: Case,
    *,
    warmup: int,
    runs: int,
) -> Result:
    """Warm-up requests, then ``runs`` timed ones."""
    headers = HTMX if case.fragment else {}
    for _ in range(warmup):
        get(client, case.url, headers)
    timings: list[float] = []
    counts: list[int] = []
    sql: list[float] = []
    body = ""
    for _ in range(runs):
        statements.reset()
        started = time.perf_counter_ns()
        body = get(client, case.url, headers)
        timings.append((time.perf_counter_ns() - started) / 1e6)
        counts.append(statements.count)
        sql.append(statements.sql_ns / 1e6)
    return Result(
        name=case.name,
        url=case.url,
        p50_ms=statistics.median(timings),
        p99_ms=percentile(timings, 0.99),
        statements=max(counts),
        sql_ms=statistics.median(sql),
        entries=len(ENTRY_ID.findall(body)),
        kb=len(body.encode()) / 1024,
    )


def explain_queries(url: str, statements: Statements, result: Result) -> None:
    """Attach the plans of the entries query and of the chart query (when one was sent)."""
    if statements.entries is not None:
        plan = explain(url, *statements.entries)
        result.entries_plan = plan
        result.entries_db_ms = execution_ms(plan)
        result.entries_buffers = buffers_touched(plan)
    if statements.chart is not None:
        plan = explain(url, *statements.chart)
        result.chart_plan = plan
        result.chart_db_ms = execution_ms(plan)
        result.chart_buffers = buffers_touched(plan)


@dataclass
class Export:
    """A full CSV export."""

    url: str
    rows: int
    seconds: list[float]
    megabytes: float
    statements: int
    #: seconds spent in SQL in each timed export
    sql_seconds: list[float]

    @property
    def rows_per_second(self) -> float:
        return self.rows / statistics.median(self.seconds)


def time_export(client: FlaskClient, statements: Statements, url: str, *, runs: int) -> Export:
    """Stream the export to the end ``runs`` times (after one untimed run)."""
    rows, size = 0, 0
    seconds: list[float] = []
    sql_seconds: list[float] = []
    for attempt in range(runs + 1):
        statements.reset()
        started = time.perf_counter()
        response = client.get(url)
        data = response.get_data()
        response.close()
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, f"{url} answered {response.status_code}"
        if attempt:
            seconds.append(elapsed)
            sql_seconds.append(statements.sql_ns / 1e9)
        size = len(data)
        rows = sum(1 for _ in csv.reader(io.StringIO(data.decode()))) - 1
    return Export(url, rows, seconds, size / 1024 / 1024, statements.count, sql_seconds)


# --------------------------------------------------------------------------- report


def print_table(results: list[Result], export: Export) -> None:
    """The results as a Markdown table."""
    print(
        "| Request | p50 ms | p99 ms | SQL / request | SQL ms (p50) | Entries | KiB "
        "| Entries query (DB ms, buffers) | Chart query (DB ms, buffers) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for r in results:
        chart = f"{r.chart_db_ms:.1f} ms, {r.chart_buffers:,}" if r.chart_plan else "none"
        print(
            f"| {r.name} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.statements} | {r.sql_ms:.1f} "
            f"| {r.entries} "
            f"| {r.kb:.0f} | {r.entries_db_ms:.2f} ms, {r.entries_buffers:,} | {chart} |"
        )
    print()
    print(
        f"CSV export `{export.url}`: {export.rows:,} rows, {export.megabytes:.1f} MiB, "
        f"{export.statements} SQL statements "
        f"({statistics.median(export.sql_seconds):.2f} s in SQL); "
        f"median {statistics.median(export.seconds):.2f} s"
        f" (max {max(export.seconds):.2f} s) of {len(export.seconds)} runs: "
        f"{export.rows_per_second:,.0f} rows/s"
    )


# --------------------------------------------------------------------------- through HTTP


class HttpClient:
    """Sequential GETs to the served app on one ``http.client`` connection, with
    the session cookie of the signed-in auditor.

    The connection is kept for as long as the server keeps it: gunicorn's sync
    workers answer ``Connection: close``, after which the next request opens a
    new one (counted in ``connections``, and part of that request's time, as it
    would be for a client talking to gunicorn directly).
    """

    def __init__(self, port: int, cookie: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookie = cookie
        self.requests = 0
        self.connections = 0

    def get(self, url: str, headers: dict[str, str] | None = None) -> str:
        """The body of a successful GET (read to the end)."""
        if self.connection.sock is None:
            self.connections += 1
        self.connection.request("GET", url, headers={"Cookie": self.cookie, **(headers or {})})
        response = self.connection.getresponse()
        body = response.read()
        self.requests += 1
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status} through HTTP")
        return body.decode()

    def close(self) -> None:
        self.connection.close()


@dataclass
class HttpResult:
    """Timings of one case through HTTP."""

    name: str
    url: str
    p50_ms: float
    p99_ms: float
    max_ms: float
    entries: int
    kb: float

    @property
    def goals_met(self) -> bool:
        return self.p50_ms < GOAL_P50_MS and self.p99_ms < SLOW_P99_MS


def time_http_case(
    client: HttpClient, case: Case, *, warmup: int, runs: int, token: str = ""
) -> HttpResult:
    """Warm-up requests, then ``runs`` timed ones (request sent to body read)."""
    headers = HTMX if case.fragment else {}
    if case.api:
        headers = {"Authorization": f"Bearer {token}"}
    for _ in range(warmup):
        client.get(case.url, headers)
    timings: list[float] = []
    body = ""
    for _ in range(runs):
        started = time.perf_counter_ns()
        body = client.get(case.url, headers)
        timings.append((time.perf_counter_ns() - started) / 1e6)
    return HttpResult(
        name=case.name,
        url=case.url,
        p50_ms=statistics.median(timings),
        p99_ms=percentile(timings, 0.99),
        max_ms=max(timings),
        entries=len(json.loads(body)["items"]) if case.api else len(ENTRY_ID.findall(body)),
        kb=len(body.encode()) / 1024,
    )


def print_http_table(results: list[HttpResult]) -> None:
    """The HTTP results as a Markdown table, each case against the goals."""
    print(
        f"| Request | p50 ms | p99 ms | max ms | p50 < {GOAL_P50_MS:.0f} ms "
        f"| p99 < {SLOW_P99_MS:.0f} ms | Entries | KiB |"
    )
    print("|---|---:|---:|---:|---|---|---:|---:|")
    for r in results:
        p50 = "met" if r.p50_ms < GOAL_P50_MS else "MISSED"
        p99 = "met" if r.p99_ms < SLOW_P99_MS else "MISSED"
        print(
            f"| {r.name} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.max_ms:.1f} | {p50} | {p99} "
            f"| {r.entries} | {r.kb:.0f} |"
        )
    missed = [r.name for r in results if not r.goals_met]
    print()
    if missed:
        print(f"Goals missed in: {'; '.join(missed)}")
    else:
        print(
            f"Every case met both goals (p50 < {GOAL_P50_MS:.0f} ms, p99 < {SLOW_P99_MS:.0f} ms)."
        )


def run_http(args: argparse.Namespace, url: str, workdir: Path) -> None:
    """Generate the data, serve the app under gunicorn, sign in over HTTP, time every case."""
    # The benchmark's own app (schema, account) links nothing in a thread of
    # its own: the served app does, as deployed.
    app = migrated_app(url, AUDIT_SEALER="off")
    generate_history(url, args)
    print(flush=True)
    print("\n".join(machine_report(url)))
    busy_user, deep_cursor = reference_points(url, args.depth)
    token = create_auditor(app)
    with app.app_context():
        db.engine.dispose()

    server = start_app(url, args.workers, workdir)
    client: HttpClient | None = None
    results: list[HttpResult] = []
    try:
        print(
            f"App under gunicorn (gunicorn.conf.py, APP_ENV=production) pid "
            f"{server.process.pid} on {server.base}; WEB_CONCURRENCY={args.workers} sync "
            f"workers; one client, requests one after another; {os.cpu_count()} CPUs shared "
            f"by the client, gunicorn and PostgreSQL; load average "
            f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}\n",
            flush=True,
        )
        client = HttpClient(server.port, sign_in(server.base, USERNAME, PASSWORD))
        second_page = next_url(client.get(audit_url(), HTMX))
        if second_page is None:
            raise RuntimeError("the first page has no link to the next one")
        cases = page_cases(busy_user, deep_cursor, second_page)
        results = time_http_cases(client, cases, args, token)
        if args.compare_encryption:
            print(
                "\nEncrypting every entry's personal values in place "
                "(bench.encrypted_history), then the same cases again...",
                flush=True,
            )
            seconds = encrypt_history(url, os.environ["PRIVACY_MASTER_KEY"])
            print(f"Encrypted in {seconds:.0f} s", flush=True)
            clear_results = results
            results = time_http_cases(client, cases, args, token)
        print(
            f"\n{client.requests:,} requests over {client.connections:,} connections; "
            f"load average after the runs "
            f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}",
            flush=True,
        )
    finally:
        if client is not None:
            client.close()
        server.stop()
    print(
        f"\n### Timeline through HTTP ({args.runs} timed requests per case after "
        f"{args.warmup} untimed)\n"
    )
    if args.compare_encryption:
        print("Personal values in clear (as before encryption):\n")
        print_http_table(clear_results)
        print("\nThe same data, personal values encrypted:\n")
    print_http_table(results)
    if args.compare_encryption:
        print_encryption_comparison(clear_results, results)


def time_http_cases(
    client: HttpClient, cases: list[Case], args: argparse.Namespace, token: str
) -> list[HttpResult]:
    """Every case, one after the other, each printed as it ends."""
    results = []
    for case in cases:
        result = time_http_case(client, case, warmup=args.warmup, runs=args.runs, token=token)
        results.append(result)
        print(
            f"== {result.name} ({result.url}): p50 {result.p50_ms:.1f} ms, "
            f"p99 {result.p99_ms:.1f} ms, max {result.max_ms:.1f} ms, "
            f"{result.entries} entries, {result.kb:.0f} KiB",
            flush=True,
        )
    return results


def print_encryption_comparison(clear: list[HttpResult], encrypted: list[HttpResult]) -> None:
    """Each case's p50 and p99, values in clear against encrypted (goal: p99 within 10%)."""
    print("\n### Decryption's cost per page (same data, same server)\n")
    print("| Request | p50 clear | p50 encrypted | p99 clear | p99 encrypted | p99 x |")
    print("|---|---:|---:|---:|---:|---:|")
    for before, after in zip(clear, encrypted, strict=True):
        print(
            f"| {before.name} | {before.p50_ms:.1f} | {after.p50_ms:.1f} "
            f"| {before.p99_ms:.1f} | {after.p99_ms:.1f} | {after.p99_ms / before.p99_ms:.2f} |"
        )
    worst_before = max(r.p99_ms for r in clear)
    worst_after = max(r.p99_ms for r in encrypted)
    print(
        f"\nWorst p99: {worst_before:.1f} ms in clear, {worst_after:.1f} ms encrypted "
        f"({worst_after / worst_before:.2f}x)."
    )


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_size_options(parser)
    parser.add_argument("--runs", type=int, default=50, help="timed requests per case")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests first")
    parser.add_argument(
        "--depth", type=int, default=1000, help="pages of 25 read before the deep page"
    )
    parser.add_argument("--export-runs", type=int, default=3, help="timed CSV exports")
    parser.add_argument("--plans", action="store_true", help="print every plan in full")
    parser.add_argument(
        "--http",
        action="store_true",
        help="time the pages through HTTP, the app under gunicorn (no SQL counts, plans or export)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="with --http: gunicorn workers (WEB_CONCURRENCY)"
    )
    parser.add_argument(
        "--compare-encryption",
        action="store_true",
        help="with --http: time the cases with personal values in clear, encrypt them in "
        "place, and time the same cases again",
    )
    parser.add_argument(
        "--keep-database", action="store_true", help="with BENCH_DATABASE_URL: do not drop it"
    )
    args = parser.parse_args(argv)
    check_data_size(parser, args)
    return args


def scalar_row(url: str, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    """The first row of a query, through a connection of its own."""
    with psycopg.connect(url, options="-c timezone=UTC") as connection:
        row = connection.execute(sql, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return tuple(row)


def reference_points(url: str, depth: int) -> tuple[int, str]:
    """The busiest profile (its id) and the cursor a reader holds after scrolling
    ``depth`` pages of the default size, said as they are found."""
    busy_user, busy_count = scalar_row(
        url,
        "SELECT user_id, count(*) FROM user_audit GROUP BY user_id "
        "ORDER BY count(*) DESC, user_id LIMIT 1",
    )
    print(f"Busiest profile: {busy_user} with {busy_count:,} entries")
    moment, last_id = scalar_row(
        url,
        'SELECT "timestamp", id FROM user_audit ORDER BY "timestamp" DESC, id DESC '
        "OFFSET %s LIMIT 1",
        (depth * PAGE_SIZE - 1,),
    )
    print(f"Cursor after {depth:,} pages: entry {last_id} at {moment.isoformat()}\n")
    return busy_user, encode_time_id_cursor(moment, last_id)


def run(args: argparse.Namespace, url: str) -> None:
    """Generate the data, then time every case and the export."""
    # Reads only: no sealer thread, which would outlive the database it links in.
    app = migrated_app(url, WTF_CSRF_ENABLED=True, AUDIT_SEALER="off")
    generate_history(url, args)
    print(flush=True)
    print("\n".join(machine_report(url)))

    busy_user, deep_cursor = reference_points(url, args.depth)

    create_auditor(app)
    statements = watch_statements(app)
    client = signed_in_client(app)
    second_page = next_url(get(client, audit_url(), HTMX))
    assert second_page is not None, "the first page has no link to the next one"

    results: list[Result] = []
    for case in page_cases(busy_user, deep_cursor, second_page):
        result = time_case(client, statements, case, warmup=args.warmup, runs=args.runs)
        # One more request, to capture its queries with the values they were sent with.
        statements.entries = statements.chart = None
        statements.reset()
        get(client, case.url, HTMX if case.fragment else {})
        sent = list(statements.texts)
        explain_queries(url, statements, result)
        if result.p99_ms > SLOW_P99_MS:
            result.notes.append(f"p99 {result.p99_ms:.0f} ms")
        results.append(result)
        print(
            f"== {result.name} ({result.url}): p50 {result.p50_ms:.1f} ms, "
            f"p99 {result.p99_ms:.1f} ms, {result.statements} statements, "
            f"{result.entries} entries, {result.kb:.0f} KiB",
            flush=True,
        )
        for line in sent:
            print(f"   sql: {line}")
        for label, plan in (("entries", result.entries_plan), ("chart", result.chart_plan)):
            if not plan:
                continue
            summary, warnings = summarize_plan(plan)
            print(
                f"   {label} plan: {summary}; {execution_ms(plan):.2f} ms, "
                f"{buffers_touched(plan):,} buffers {'; '.join(warnings)}"
            )
            if args.plans or result.notes or warnings:
                print("      " + plan.replace("\n", "\n      "))
        print(flush=True)

    export_url = "/audit/export.csv?operation=delete"
    export = time_export(client, statements, export_url, runs=args.export_runs)
    if statements.entries is not None:
        # The last batch of the export (the oldest entries), as it was sent.
        plan = explain(url, *statements.entries)
        summary, _ = summarize_plan(plan)
        print(
            f"== export, last batch: {summary}; {execution_ms(plan):.2f} ms, "
            f"{buffers_touched(plan):,} buffers"
        )
        if args.plans:
            print("      " + plan.replace("\n", "\n      "))
        print()
    print_table(results, export)


def main(argv: list[str] | None = None) -> int:
    args = start_run(parse_args, argv)
    started = time.perf_counter()
    with database_server(args.keep_database) as url:
        if args.http:
            workdir = Path(tempfile.mkdtemp(prefix="timeline-http-"))
            try:
                run_http(args, url, workdir)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
        else:
            run(args, url)
    print(f"\nWhole run: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
