"""Benchmark of the write cost of the audit hash chain (``webapp.audit.chain``).

Times single-profile update transactions through the real service layer
(``webapp.services.users.update_user``, acting as the command line) with the
chain and without it, side by side in one run: interleaved rounds, the order
of the two variants alternating from round to round, so that a machine that
gets busier or a table that grows during the run weighs on both alike.

"Without the chain" is exactly the behaviour before the chain existed: the
seam ``webapp.audit.capture.record_entries`` is replaced by the code it had
then, one INSERT of the entries and a statement lowering
``profile_audit.capturing`` again (which the chain's INSERT does in passing),
so the difference between the two variants is the chain and nothing else.

Two workloads: one hot profile updated again and again (single-profile update
throughput), and updates rotating over 100 profiles. For each variant it
reports updates/s (median over rounds), p50/p99 latency per transaction and
the SQL statements sent per transaction.

Run from the project root::

    .venv/bin/python -m bench.chain_cost

Without ``BENCH_DATABASE_URL`` an embedded PostgreSQL is started in a temporary
directory and deleted afterwards (also on errors and on SIGTERM). With it, the
database ``profile_audit_bench`` is (re)created on that server and dropped at
the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from sqlalchemy import Connection, event, insert, text

from bench._common import (
    TimedBlock,
    database_server,
    machine_report,
    migrated_app,
    percentile,
    start_run,
)
from webapp.audit import capture
from webapp.audit.context import Actor, Origin, acting_as
from webapp.extensions import db
from webapp.models import UserAudit
from webapp.services.users import create_user, update_user

CHAIN = "chain"
NO_CHAIN = "no chain"
# The flush's own writes are done: the safety-net trigger watches again.
_CAPTURING_OFF = text("SELECT set_config('profile_audit.capturing', 'off', true)")
# The chain as the application ships it, kept to put it back after each block.
_REAL_RECORD = capture.record_entries


def timed(record: Any, log: StatementLog) -> Any:
    """``record`` that adds its whole time (statements and hashing) to ``log``."""

    def run(connection: Connection, key: bytes, rows: list[dict[str, Any]]) -> None:
        started = time.perf_counter_ns()
        record(connection, key, rows)
        log.add("record entries (whole)", started)

    return run


def record_without_chain(connection: Connection, key: bytes, rows: list[dict[str, Any]]) -> None:
    """The pre-chain behaviour: the entries' INSERT, then the safety net's flag."""
    connection.execute(insert(UserAudit.__table__), rows)
    connection.execute(_CAPTURING_OFF)


@contextmanager
def variant(name: str, log: StatementLog) -> Iterator[None]:
    """Run the block with the chain (``CHAIN``) or without it (``NO_CHAIN``)."""
    record = _REAL_RECORD if name == CHAIN else record_without_chain
    capture.record_entries = timed(record, log)  # type: ignore[assignment]
    try:
        yield
    finally:
        capture.record_entries = _REAL_RECORD  # type: ignore[assignment]


# --------------------------------------------------------------------------- counting


# Short names for the statements of an update transaction, by how they start.
LABELS = (
    ("SELECT users.", "load profile"),
    ("SELECT set_config('profile_audit.capturing', 'on'", "capturing on"),
    ("UPDATE users", "update profile"),
    ("INSERT INTO user_audit", "insert entry"),
    ("WITH chain_head AS", "insert entry + lock chain head"),
    ("SELECT seq, hash", "lock chain head"),
    ("WITH links AS", "append links + head"),
    ("SELECT set_config('profile_audit.capturing', 'off'", "capturing off"),
)


def label(statement: str) -> str:
    for start, name in LABELS:
        if statement.startswith(start):
            return name
    return statement[:30]


@dataclass
class StatementLog:
    """SQL statements the app's engine sent: how many, their time, the last transaction's.

    A statement's time runs from ``before_cursor_execute`` to ``after_cursor_execute``
    (sent, executed, result received); COMMIT is timed from the connection's commit
    event to the session's ``after_commit``. Times are summed per variant.
    """

    count: int = 0
    recording: bool = False
    last: list[str] = field(default_factory=list)
    #: the variant whose times are being summed (None: not summing, e.g. warm-up)
    variant: str | None = None
    milliseconds: dict[str, dict[str, float]] = field(default_factory=dict)
    _started: int = 0
    _commit_started: int = 0

    def add(self, name: str, started: int) -> None:
        if self.variant is not None:
            times = self.milliseconds.setdefault(self.variant, {})
            times[name] = times.get(name, 0.0) + (time.perf_counter_ns() - started) / 1e6

    def listen(self, app: Flask) -> None:
        def before(
            conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
        ) -> None:
            self.count += 1
            if self.recording:
                self.last.append(" ".join(statement.split())[:110])
            self._started = time.perf_counter_ns()

        def after(
            conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
        ) -> None:
            self.add(label(statement), self._started)

        def commit_starts(conn: Any) -> None:
            self._commit_started = time.perf_counter_ns()

        def commit_ended(session: Any) -> None:
            self.add("COMMIT", self._commit_started)

        with app.app_context():
            event.listen(db.engine, "before_cursor_execute", before)
            event.listen(db.engine, "after_cursor_execute", after)
            event.listen(db.engine, "commit", commit_starts)
            event.listen(db.session, "after_commit", commit_ended)


# --------------------------------------------------------------------------- timing


@dataclass
class Block(TimedBlock):
    """One round of one variant: its transactions' latencies and statements."""

    statements: int


@dataclass
class Workload:
    """A named way of picking the profile each update changes."""

    name: str
    profile_ids: list[int]
    blocks: dict[str, list[Block]] = field(default_factory=lambda: {CHAIN: [], NO_CHAIN: []})


class Updater:
    """Makes each update a real change (a new name), so every one writes an entry."""

    def __init__(self) -> None:
        self.serial = 0

    def update(self, user_id: int) -> None:
        self.serial += 1
        update_user(user_id, {"name": f"Bench Person {self.serial}"}, reason="benchmark")
        # As at the end of a request: the session goes, its connection back to the pool.
        db.session.remove()


def run_block(
    updater: Updater,
    log: StatementLog,
    workload: Workload,
    name: str,
    updates: int,
    *,
    summed: bool = True,
) -> Block:
    """``updates`` update transactions of ``workload`` under variant ``name``.

    ``summed``: add the statements' times to the variant's totals (not for warm-up).
    """
    ids = workload.profile_ids
    latencies: list[float] = []
    statements_before = log.count
    log.variant = name if summed else None
    with variant(name, log):
        started = time.perf_counter()
        for n in range(updates):
            moment = time.perf_counter_ns()
            updater.update(ids[n % len(ids)])
            latencies.append((time.perf_counter_ns() - moment) / 1e6)
        seconds = time.perf_counter() - started
    log.variant = None
    return Block(seconds, latencies, log.count - statements_before)


def one_transaction_statements(
    updater: Updater, log: StatementLog, profile_id: int, name: str
) -> list[str]:
    """The statements of one update transaction under variant ``name``."""
    log.last = []
    log.recording = True
    try:
        with variant(name, log):
            updater.update(profile_id)
    finally:
        log.recording = False
    return log.last


# --------------------------------------------------------------------------- report


def summary_row(workload: Workload, name: str) -> dict[str, float]:
    blocks = workload.blocks[name]
    latencies = [value for block in blocks for value in block.latencies_ms]
    transactions = len(latencies)
    return {
        "per_second": statistics.median(block.per_second for block in blocks),
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 0.99),
        "statements": sum(block.statements for block in blocks) / transactions,
        "transactions": transactions,
    }


def print_table(workloads: list[Workload]) -> None:
    print(
        "| Workload | Variant | Updates/s (median of rounds) | p50 ms | p99 ms "
        "| Statements/txn | Transactions |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for workload in workloads:
        for name in (NO_CHAIN, CHAIN):
            row = summary_row(workload, name)
            print(
                f"| {workload.name} | {name} | {row['per_second']:,.0f} | {row['p50']:.2f} "
                f"| {row['p99']:.2f} | {row['statements']:.0f} | {row['transactions']:,} |"
            )
    print()
    print("| Workload | Throughput cost | p50 cost | Per-round cost (median, min..max) |")
    print("|---|---:|---:|---|")
    for workload in workloads:
        chained, plain = summary_row(workload, CHAIN), summary_row(workload, NO_CHAIN)
        # Paired by round: both variants ran back to back, under the same conditions.
        per_round = [
            plain_block.per_second / chain_block.per_second - 1
            for chain_block, plain_block in zip(
                workload.blocks[CHAIN], workload.blocks[NO_CHAIN], strict=True
            )
        ]
        print(
            f"| {workload.name} | {1 - chained['per_second'] / plain['per_second']:+.1%} "
            f"| {chained['p50'] / plain['p50'] - 1:+.1%} "
            f"| {statistics.median(per_round):+.1%} "
            f"({min(per_round):+.1%}..{max(per_round):+.1%}) |"
        )


def print_breakdown(log: StatementLog, workloads: list[Workload]) -> None:
    """Mean milliseconds per transaction in each statement, both workloads together."""
    transactions = {
        name: sum(len(block.latencies_ms) for w in workloads for block in w.blocks[name])
        for name in (NO_CHAIN, CHAIN)
    }
    totals = {
        name: sum(sum(block.latencies_ms) for w in workloads for block in w.blocks[name])
        for name in (NO_CHAIN, CHAIN)
    }
    names = [name for _, name in LABELS] + ["COMMIT", "record entries (whole)"]
    print("| Where (ms per transaction, mean) | no chain | chain | difference |")
    print("|---|---:|---:|---:|")
    for name in names:
        values = [
            log.milliseconds.get(v, {}).get(name, 0.0) / transactions[v] for v in (NO_CHAIN, CHAIN)
        ]
        print(f"| {name} | {values[0]:.3f} | {values[1]:.3f} | {values[1] - values[0]:+.3f} |")
    whole = [totals[v] / transactions[v] for v in (NO_CHAIN, CHAIN)]
    print(f"| whole transaction | {whole[0]:.3f} | {whole[1]:.3f} | {whole[1] - whole[0]:+.3f} |")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="rounds per workload")
    parser.add_argument(
        "--updates", type=int, default=300, help="update transactions per variant and round"
    )
    parser.add_argument("--profiles", type=int, default=100, help="profiles of the rotating case")
    parser.add_argument("--warmup", type=int, default=100, help="untimed updates per variant")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = start_run(parse_args, argv)
    started = time.perf_counter()
    with database_server(keep=False) as url:
        app = migrated_app(url)
        log = StatementLog()
        log.listen(app)
        updater = Updater()
        actor = Actor(staff_id=None, label="cli:bench", channel_detail="bench")
        with app.app_context(), acting_as(actor, Origin(channel="cli")):
            ids = []
            for n in range(args.profiles):
                ids.append(create_user({"name": f"Person {n}", "email": f"p{n}@example.com"}).id)
                db.session.remove()
            workloads = [
                Workload("one profile", ids[:1]),
                Workload(f"{args.profiles} profiles, rotating", ids),
            ]
            for workload in workloads:
                for name in (CHAIN, NO_CHAIN):
                    run_block(updater, log, workload, name, args.warmup, summed=False)
                for round_number in range(args.rounds):
                    # Alternate which variant goes first, so neither always follows the other.
                    order = (CHAIN, NO_CHAIN) if round_number % 2 == 0 else (NO_CHAIN, CHAIN)
                    for name in order:
                        block = run_block(updater, log, workload, name, args.updates)
                        workload.blocks[name].append(block)
                    print(
                        f"  {workload.name}, round {round_number + 1}: "
                        + ", ".join(
                            f"{name} {workload.blocks[name][-1].per_second:,.0f}/s"
                            for name in (NO_CHAIN, CHAIN)
                        )
                        + f" (load average {os.getloadavg()[0]:.2f})",
                        flush=True,
                    )
            statements = {
                name: one_transaction_statements(updater, log, ids[0], name)
                for name in (NO_CHAIN, CHAIN)
            }
            with db.engine.connect() as connection:
                totals = connection.execute(
                    text(
                        "SELECT (SELECT count(*) FROM user_audit), "
                        "(SELECT count(*) FROM audit_chain), "
                        "(SELECT count(*) FROM audit_chain_pending), "
                        "(SELECT seq FROM audit_chain_head)"
                    )
                ).one()
        print()
        for line in machine_report(url):
            if not line.startswith("Relations"):  # the timeline's tables, empty here
                print(line)
        print(
            f"Entries written: {totals[0]:,}; links: {totals[1]:,}; "
            f"pending: {totals[2]:,}; head at link {totals[3]:,}"
        )
        print()
        for name, sent in statements.items():
            print(f"Statements of one update transaction, {name} ({len(sent)}):")
            for statement in sent:
                print(f"  {statement}")
        print()
        print_table(workloads)
        print()
        print_breakdown(log, workloads)
    print(f"\nWhole run: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
