"""Benchmark of write throughput with 1, 4 and 16 concurrent writers, over a network.

Each writer is a process of its own (as a gunicorn worker is), with its own
application, engine and, when audited, its own sealer thread. It updates its
own 10 profiles, one per transaction, through the ORM (load the profile, set
its name, commit) while ``acting_as`` a command-line actor, for a fixed time.
Three variants, every one on the same PostgreSQL and through the same proxy:

- not audited: the same ORM updates on a scratch copy of ``users``
  (``LIKE users INCLUDING ALL``) without any audit, as variant (a) of
  ``bench/write_overhead.py``;
- Profile Audit: the real ``User`` model and ``db.session``: entries sealed in
  their own INSERT, the safety net checked at COMMIT, and each process's
  sealer thread linking the entries after COMMIT;
- head lock, previous design (simulated statements): ``bench/head_lock.py``,
  the previous design's statements, where every audited save locked the one
  chain-head row until its COMMIT.

The application reaches PostgreSQL through ``bench/latency_proxy.py`` (asyncio,
a subprocess of its own), listening on 127.0.0.1 and forwarding to the server's
unix socket with 0.5 ms added each way: 1 ms per round trip, a database on
another machine of the same network. A lock held until COMMIT then costs the
round trips of the rest of the transaction, not just server time. The added
round trip is measured (``SELECT 1`` through the proxy and directly) and
printed.

Every cell (writers x variant) starts its writers afresh, lets each warm up,
then releases them together (a barrier) for ``--seconds``; transactions per
second are summed over writers. Rounds rotate the order of the variants.
Reported: transactions/s per cell (median over rounds), p50/p99 latency, the
link delay of the audited cells (entry timestamp to its link's ``linked_at``),
and the goals: audited at 16 writers at least 0.8x unaudited at 16, and at
least 8x audited at 1.

Run from the project root::

    .venv/bin/python -m bench.write_scaling            # about 4 minutes
    .venv/bin/python -m bench.write_scaling --quick    # 1.5 s cells, one round

``--summary FILE`` appends the results as Markdown. Without
``BENCH_DATABASE_URL`` an embedded PostgreSQL is started in a temporary
directory and deleted afterwards (also on errors and on SIGTERM); with it, the
server must be reachable by a unix socket (``host=/path``) for the proxy.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from flask import Flask
from flask_migrate import upgrade
from flask_sqlalchemy.session import Session as FlaskSession
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import text

from bench import head_lock
from bench._common import (
    ROOT,
    add_summary_option,
    append_summary,
    database_server,
    machine_report,
    percentile,
    start_run,
)
from bench.write_overhead import (
    BIND_KEYS,
    HEAD_LOCK,
    NO_AUDIT,
    TABLES,
    HeadLockProfile,
    NoAuditProfile,
    Variant,
    scoped_sessions,
    seed,
    update_one,
)
from webapp import create_app
from webapp.audit.context import Actor, Origin, acting_as
from webapp.audit.sealer import link_all
from webapp.config import database_url
from webapp.extensions import db
from webapp.models import User

WRITER_COUNTS = (1, 4, 16)
PROFILES_PER_WRITER = 10
#: Added latency each way (ms): 1 ms per round trip.
DELAY_MS = 0.5
#: Untimed transactions per writer before the barrier.
WARMUP_TRANSACTIONS = 5
#: How long a writer waits after its window for its sealer to link what it wrote.
SEALER_CATCH_UP_SECONDS = 5.0
#: How long the parent waits for writers to get ready and to report.
WRITER_TIMEOUT_SECONDS = 120.0
GOAL_VERSUS_UNAUDITED = 0.8
GOAL_VERSUS_ONE_WRITER = 8.0

NOT_AUDITED = "not audited"
AUDITED = "Profile Audit (sealer running)"
PREVIOUS = "head lock, previous design (simulated statements)"
VARIANTS = (NOT_AUDITED, AUDITED, PREVIOUS)

ACTOR = Actor(staff_id=None, label="cli:bench", channel_detail="bench")

_LINK_DELAYS = text(
    "SELECT count(*) AS entries, count(c.entry_id) AS linked, "
    "percentile_disc(0.5) WITHIN GROUP (ORDER BY d.ms) AS p50, "
    "percentile_disc(0.99) WITHIN GROUP (ORDER BY d.ms) AS p99 "
    "FROM user_audit a LEFT JOIN audit_chain c ON c.entry_id = a.id "
    "CROSS JOIN LATERAL (SELECT extract(epoch FROM c.linked_at - a.timestamp) * 1000 AS ms) d "
    "WHERE a.timestamp >= :start AND a.timestamp < :end"
)


# --------------------------------------------------------------------------- the network


def socket_path(url: str) -> str:
    """PostgreSQL's unix socket for the libpq URL ``url``."""
    params = conninfo_to_dict(url)
    host = str(params.get("host") or "")
    if not host.startswith("/"):
        raise SystemExit(f"The proxy forwards to a unix socket; {url!r} names none")
    return f"{host}/.s.PGSQL.{params.get('port') or 5432}"


def proxied_url(url: str, port: int) -> str:
    """``url`` with its host replaced by the proxy's 127.0.0.1:``port``."""
    params = conninfo_to_dict(url)
    user = params.get("user") or ""
    password = f":{params['password']}" if params.get("password") else ""
    return f"postgresql://{user}{password}@127.0.0.1:{port}/{params['dbname']}"


@contextmanager
def latency_proxy(url: str, delay_ms: float) -> Iterator[int]:
    """Run ``bench.latency_proxy`` in a subprocess; yield its port; stop it by its PID."""
    command = [
        sys.executable,
        "-m",
        "bench.latency_proxy",
        "--socket",
        socket_path(url),
        "--delay-ms",
        str(delay_ms),
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)  # noqa: S603
    try:
        assert process.stdout is not None
        line = process.stdout.readline().split()
        if len(line) != 2 or line[0] != "port":
            raise SystemExit(f"The latency proxy did not start: {line!r}")
        yield int(line[1])
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def round_trip_ms(url: str, runs: int = 300) -> float:
    """Median time of ``SELECT 1`` on one connection to ``url``."""
    with psycopg.connect(url, autocommit=True) as connection:
        for _ in range(20):
            connection.execute("SELECT 1")
        times = []
        for _ in range(runs):
            moment = time.perf_counter_ns()
            connection.execute("SELECT 1")
            times.append((time.perf_counter_ns() - moment) / 1e6)
    return statistics.median(times)


# --------------------------------------------------------------------------- writers


def make_app(url: str, *, sealer: bool) -> Flask:
    """The application, with the scratch variants' engines, on ``url``."""
    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": database_url(url),
            "SQLALCHEMY_BINDS": {
                BIND_KEYS[NO_AUDIT]: database_url(url),
                BIND_KEYS[HEAD_LOCK]: database_url(url),
            },
            "AUDIT_SEALER": "thread" if sealer else "off",
        }
    )


def variant_for(name: str) -> Variant:
    """The variant's model and sessions (in an app context)."""
    if name == AUDITED:
        return Variant(name, User, db.session, db.engine)
    if name == NOT_AUDITED:
        return Variant(
            name, NoAuditProfile, scoped_sessions(FlaskSession), db.engines[BIND_KEYS[NO_AUDIT]]
        )
    head_lock.install_listeners()
    return Variant(
        name,
        HeadLockProfile,
        scoped_sessions(head_lock.HeadLockSession),
        db.engines[BIND_KEYS[HEAD_LOCK]],
    )


@dataclass
class WriterResult:
    """What one writer did in its window."""

    transactions: int
    seconds: float
    latencies_ms: list[float]
    unlinked_at_exit: int = 0


def writer(
    name: str,
    url: str,
    profile_ids: list[int],
    serial_start: int,
    duration: float,
    barrier: Any,
    results: Any,
) -> None:
    """One writer process: warm up, wait for the others, update profiles for ``duration``."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        app = make_app(url, sealer=name == AUDITED)
    except BaseException:
        barrier.abort()  # the others and the parent stop waiting
        raise
    try:
        with app.app_context(), acting_as(ACTOR, Origin(channel="cli")):
            variant = variant_for(name)
            variant.serial = serial_start
            try:
                for n in range(WARMUP_TRANSACTIONS):
                    update_one(variant, profile_ids[n % len(profile_ids)])
            except BaseException:
                barrier.abort()
                raise
            barrier.wait(WRITER_TIMEOUT_SECONDS)
            latencies: list[float] = []
            started = time.perf_counter()
            end = started + duration
            n = 0
            while time.perf_counter() < end:
                moment = time.perf_counter_ns()
                update_one(variant, profile_ids[n % len(profile_ids)])
                latencies.append((time.perf_counter_ns() - moment) / 1e6)
                n += 1
            seconds = time.perf_counter() - started
            unlinked = 0
            if name == AUDITED:
                unlinked = _wait_for_sealer(app)
            results.put(WriterResult(len(latencies), seconds, latencies, unlinked))
    finally:
        sealer = app.extensions.get("audit_sealer")
        if sealer is not None:
            sealer.stop()
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()


def _wait_for_sealer(app: Flask) -> int:
    """Give the sealers time to link what was written; return how many still wait."""
    deadline = time.monotonic() + SEALER_CATCH_UP_SECONDS
    while True:
        with db.engine.connect() as connection:
            waiting = connection.execute(text("SELECT count(*) FROM audit_chain_pending"))
            count = waiting.scalar_one()
        if count == 0 or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


@dataclass
class Cell:
    """One run of ``writers`` writers of one variant."""

    per_second: float
    latencies_ms: list[float]
    link_delay: tuple[int, int, float | None, float | None] | None = None
    unlinked_at_exit: int = 0


def run_cell(
    context: Any,
    name: str,
    writers: int,
    url: str,
    profile_ids: list[int],
    duration: float,
    serial: int,
) -> Cell:
    """Start ``writers`` processes, release them together, collect their counts."""
    barrier = context.Barrier(writers + 1)
    results = context.Queue()
    processes = [
        context.Process(
            target=writer,
            args=(
                name,
                url,
                profile_ids[w * PROFILES_PER_WRITER : (w + 1) * PROFILES_PER_WRITER],
                serial + w * 1_000_000,
                duration,
                barrier,
                results,
            ),
            daemon=True,
        )
        for w in range(writers)
    ]
    for process in processes:
        process.start()
    try:
        barrier.wait(WRITER_TIMEOUT_SECONDS)
        window_start = datetime.now(UTC)
        collected: list[WriterResult] = []
        for _ in processes:
            collected.append(results.get(timeout=duration + WRITER_TIMEOUT_SECONDS))
        window_end = datetime.now(UTC)
        for process in processes:
            process.join(WRITER_TIMEOUT_SECONDS)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(10)
    cell = Cell(
        per_second=sum(r.transactions / r.seconds for r in collected),
        latencies_ms=[value for r in collected for value in r.latencies_ms],
        unlinked_at_exit=max(r.unlinked_at_exit for r in collected),
    )
    if name == AUDITED:
        with db.engine.connect() as connection:
            row = connection.execute(_LINK_DELAYS, {"start": window_start, "end": window_end}).one()
        cell.link_delay = (
            row.entries,
            row.linked,
            None if row.p50 is None else float(row.p50),
            None if row.p99 is None else float(row.p99),
        )
    return cell


# --------------------------------------------------------------------------- main


def setup(app: Flask, writers: int) -> dict[str, list[int]]:
    """Migrate, create the scratch tables, seed every variant's profiles."""
    upgrade()
    with db.engine.begin() as connection:
        connection.execute(text(f"CREATE TABLE {TABLES[NO_AUDIT]} (LIKE users INCLUDING ALL)"))
        head_lock.setup(connection)
    profiles: dict[str, list[int]] = {}
    with acting_as(ACTOR, Origin(channel="cli")):
        for name in VARIANTS:
            variant = variant_for(name)
            seed(variant, writers * PROFILES_PER_WRITER)
            profiles[name] = variant.profile_ids
    # The seeds' entries, linked before any cell starts (the setup app runs no sealer).
    link_all(db.engine, app.config["AUDIT_CHAIN_KEY"].encode())
    return profiles


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of every cell")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every cell")
    parser.add_argument("--quick", action="store_true", help="1.5 s cells, one round")
    add_summary_option(parser)
    return parser.parse_args(argv)


def results_lines(
    cells: dict[tuple[str, int], list[Cell]], added_rtt_ms: float, direct_rtt_ms: float
) -> list[str]:
    """The table, the link delays and the goals, as Markdown."""

    def rate(name: str, writers: int) -> float:
        return statistics.median(cell.per_second for cell in cells[(name, writers)])

    lines = [
        "| Writers | " + " | ".join(f"{name} txn/s (p50 / p99 ms)" for name in VARIANTS) + " |",
        "|---:|" + "---:|" * len(VARIANTS),
    ]
    for writers in WRITER_COUNTS:
        values = []
        for name in VARIANTS:
            latencies = [v for cell in cells[(name, writers)] for v in cell.latencies_ms]
            values.append(
                f"{rate(name, writers):,.0f} ({statistics.median(latencies):.1f} / "
                f"{percentile(latencies, 0.99):.1f})"
            )
        lines.append(f"| {writers} | " + " | ".join(values) + " |")
    lines.append("")
    lines.append(
        f"Through the asyncio proxy: {DELAY_MS} ms added each way; measured round trip "
        f"(SELECT 1) {direct_rtt_ms + added_rtt_ms:.2f} ms via the proxy, "
        f"{direct_rtt_ms:.2f} ms direct (+{added_rtt_ms:.2f} ms). Txn/s: summed over writers, "
        "median over rounds; p50/p99: per transaction, over every round."
    )
    lines.append("")
    for writers in WRITER_COUNTS:
        delays = [cell.link_delay for cell in cells[(AUDITED, writers)] if cell.link_delay]
        entries = sum(d[0] for d in delays)
        linked = sum(d[1] for d in delays)
        p50s = [d[2] for d in delays if d[2] is not None]
        p99s = [d[3] for d in delays if d[3] is not None]
        if p50s:
            lines.append(
                f"- Link delay, {AUDITED}, {writers} writer(s): {linked:,} of {entries:,} "
                f"entries linked; p50 {max(p50s):.0f} ms, p99 {max(p99s):.0f} ms "
                "(worst round)"
            )
    lines.append("")
    audited_16, unaudited_16, audited_1 = (
        rate(AUDITED, 16),
        rate(NOT_AUDITED, 16),
        rate(AUDITED, 1),
    )
    versus_unaudited = audited_16 / unaudited_16
    versus_one = audited_16 / audited_1
    lines.append(
        f"- Goal: audited@16 ≥ {GOAL_VERSUS_UNAUDITED}x unaudited@16: {versus_unaudited:.2f}x "
        f"— {'met' if versus_unaudited >= GOAL_VERSUS_UNAUDITED else 'MISSED'}"
    )
    lines.append(
        f"- Goal: audited@16 ≥ {GOAL_VERSUS_ONE_WRITER:.0f}x audited@1: {versus_one:.1f}x "
        f"— {'met' if versus_one >= GOAL_VERSUS_ONE_WRITER else 'MISSED'} "
        f"(unaudited: {unaudited_16 / rate(NOT_AUDITED, 1):.1f}x; previous design, "
        f"simulated: {rate(PREVIOUS, 16) / rate(PREVIOUS, 1):.1f}x)"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = start_run(parse_args, argv)
    duration = 1.5 if args.quick else args.seconds
    rounds = 1 if args.quick else args.rounds
    started = time.perf_counter()
    # Writers are forked from this process before it holds any connection or thread.
    context = multiprocessing.get_context("fork")
    cells: dict[tuple[str, int], list[Cell]] = {
        (name, writers): [] for name in VARIANTS for writers in WRITER_COUNTS
    }
    with ExitStack() as stack:
        url = stack.enter_context(database_server(keep=False))
        stack.callback(signal.signal, signal.SIGTERM, signal.SIG_IGN)
        app = make_app(url, sealer=False)
        with app.app_context():
            profiles = setup(app, max(WRITER_COUNTS))
            for engine in db.engines.values():
                engine.dispose()
        port = stack.enter_context(latency_proxy(url, DELAY_MS))
        proxied = proxied_url(url, port)
        direct_rtt = round_trip_ms(url)
        added_rtt = round_trip_ms(proxied) - direct_rtt
        print(f"Proxy on 127.0.0.1:{port}: round trip +{added_rtt:.2f} ms", flush=True)
        serial = 0
        for round_number in range(rounds):
            shift = round_number % len(VARIANTS)
            order = VARIANTS[shift:] + VARIANTS[:shift]
            for writers in WRITER_COUNTS:
                for name in order:
                    serial += 100_000_000
                    with app.app_context():
                        cell = run_cell(
                            context, name, writers, proxied, profiles[name], duration, serial
                        )
                        for engine in db.engines.values():
                            engine.dispose()
                    cells[(name, writers)].append(cell)
                    print(
                        f"  round {round_number + 1}/{rounds}, {writers:>2} writer(s), "
                        f"{name}: {cell.per_second:,.0f} txn/s"
                        + (
                            f", link delay p50 {cell.link_delay[2]:.0f} ms p99 "
                            f"{cell.link_delay[3]:.0f} ms"
                            if cell.link_delay and cell.link_delay[2] is not None
                            else ""
                        )
                        + f" (load average {os.getloadavg()[0]:.2f})",
                        flush=True,
                    )
        machine = machine_report(url)
    lines = results_lines(cells, added_rtt, direct_rtt)
    print()
    print(machine[0])
    print(
        f"{rounds} round(s) of {duration:g} s per cell; writers are processes, "
        f"{PROFILES_PER_WRITER} profiles each"
    )
    print()
    print("\n".join(lines))
    if args.summary is not None:
        summary = [
            "### Write scaling (concurrent writers, 1 ms round trip)",
            "",
            f"{machine[0].removeprefix('Machine: ')}; {rounds} round(s) of {duration:g} s "
            f"per cell; writers are processes, {PROFILES_PER_WRITER} profiles each; load "
            f"average {os.getloadavg()[0]:.2f} at the end.",
            "",
            *lines,
            "",
        ]
        append_summary(args.summary, summary)
    print(f"\nWhole run: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
