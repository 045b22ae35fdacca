"""Benchmark of the audit timeline queries (``webapp.services.audit_log.list_entries``).

Fills a throwaway database with realistic profiles and audit entries (in SQL
only), then for each filter combination times the real service call on its
first page and on pages reached through a cursor 1,000 and 10,000 pages deep
(or the last page when there are fewer), and shows the PostgreSQL plan of the
exact statement the service sent.

Run from the project root::

    .venv/bin/python -m bench.timeline_queries --entries 1000000

Without ``BENCH_DATABASE_URL`` an embedded PostgreSQL is started in a temporary
directory and deleted afterwards. With it (a libpq URL of a server on which the
user may create databases), the database ``profile_audit_bench`` is (re)created
there and dropped at the end unless ``--keep-database`` is given.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from flask import Flask
from sqlalchemy import event, func, select, text

from bench._common import (
    CLI_ACTOR,
    add_data_size_options,
    add_summary_option,
    append_summary,
    buffers_touched,
    check_data_size,
    database_server,
    execution_ms,
    explain,
    generate_history,
    machine_report,
    migrated_app,
    percentile,
    start_run,
    summarize_plan,
)
from webapp.extensions import db
from webapp.models import UserAudit
from webapp.services.audit_filter import AuditFilter, parse_audit_filter
from webapp.services.audit_log import filtered_statement, list_entries
from webapp.services.pagination import encode_time_id_cursor

PAGE_SIZE = 50
SLOW_P99_MS = 20.0
# What the timeline must stay under at ten million entries, per page.
TARGET_P99_MS = 50.0


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


# Beyond this a plan is flagged: a page should read about the rows it shows.
BUFFERS_LIMIT = 1_000


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
            buffers = buffers_touched(plan)
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
                execution_ms=execution_ms(plan),
                buffers=buffers,
                warnings=warnings,
            )


# --------------------------------------------------------------------------- report


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
    append_summary(path, lines)


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


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_size_options(parser)
    parser.add_argument("--runs", type=int, default=100, help="timed calls per case")
    parser.add_argument("--warmup", type=int, default=15, help="untimed calls first")
    parser.add_argument(
        "--depth",
        type=int,
        nargs="+",
        default=[1000, 10000],
        help="pages read before each deep page (default: 1000 10000)",
    )
    parser.add_argument("--plans", action="store_true", help="print every plan in full")
    add_summary_option(parser)
    parser.add_argument(
        "--plans-file", type=Path, help="write every plan in full as Markdown to this file"
    )
    parser.add_argument(
        "--keep-database", action="store_true", help="with BENCH_DATABASE_URL: do not drop it"
    )
    args = parser.parse_args(argv)
    check_data_size(parser, args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = start_run(parse_args, argv)
    with database_server(args.keep_database) as url:
        app = migrated_app(url)

        seconds = generate_history(url, args)
        print(flush=True)
        print("\n".join(machine_report(url)))

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
