"""Benchmark of what encrypting personal values costs a save, side by side.

Three variants on the same PostgreSQL, in interleaved rounds (the order
rotating from round to round), with ``bench.write_overhead``'s workloads and
ORM code (a single-profile update rotating over 100 profiles, a batch update
of many profiles in one flush, a single insert):

(a) no audit: a copy of ``users`` (``LIKE users INCLUDING ALL``), as
    ``bench.write_overhead``'s variant (a);
(b) Profile Audit as shipped: each entry's personal values encrypted with the
    profile's data key (a new profile's key made, wrapped and inserted in its
    save), the entry sealed, the sealer thread linking after COMMIT;
(c) the same application with personal values left in clear, as before
    encryption: the capture's two encryption steps (the profile's key, the
    snapshot's encryption) replaced by ones that do nothing, during (c)'s
    blocks only; everything else is the same code, tables and session.

Reported per workload: median transactions/s, p50/p99 per transaction, time
relative to (a), and (b) relative to (c), the cost of encryption itself (the
issue's goal: at most 1.10 on single updates and inserts).

    .venv/bin/python -m bench.personal_data_cost            # about 2 minutes
    .venv/bin/python -m bench.personal_data_cost --quick    # smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask_migrate import upgrade
from flask_sqlalchemy.session import Session as FlaskSession
from sqlalchemy import select, text

from bench._common import add_summary_option, append_summary, machine_report, percentile, start_run
from bench.write_overhead import (
    BIND_KEYS,
    NO_AUDIT,
    ROTATING_PROFILES,
    TABLES,
    NoAuditProfile,
    Variant,
    batch_update,
    benchmark_database,
    engines_disposed,
    run_block,
    scoped_sessions,
    seed,
    single_insert,
    single_update,
)
from bench.write_overhead import Block as TimedTransactions
from webapp import create_app
from webapp.audit import capture
from webapp.audit.context import Actor, Origin, acting_as
from webapp.audit.sealer import link_all
from webapp.config import database_url
from webapp.extensions import db
from webapp.models import User

ENCRYPTED = "(b) Profile Audit, personal values encrypted"
CLEAR = "(c) Profile Audit, personal values in clear"
NAMES = (NO_AUDIT, ENCRYPTED, CLEAR)
GOAL = 1.10


@contextmanager
def values_in_clear() -> Iterator[None]:
    """The capture as it was before encryption, for (c)'s blocks."""
    saved = capture.encrypt_snapshot, capture._cipher, capture._new_key

    def clear(_cipher: Any, _entry_id: int, _user_id: int, _side: str, snapshot: Any) -> Any:
        return dict(snapshot)

    capture.encrypt_snapshot = clear  # type: ignore[assignment]
    capture._cipher = lambda user: (None, None)  # type: ignore[assignment,return-value]
    capture._new_key = lambda: (None, None)  # type: ignore[assignment,return-value]
    try:
        yield
    finally:
        capture.encrypt_snapshot, capture._cipher, capture._new_key = saved  # type: ignore[assignment]


class Workload:
    """A kind of transaction and its timed blocks per variant."""

    def __init__(self, name: str, rows: int, transactions: int, run: Any) -> None:
        self.name, self.rows, self.transactions, self.run = name, rows, transactions, run
        self.blocks: dict[str, list[TimedTransactions]] = {name: [] for name in NAMES}


def run_variant(workload: Workload, variant: Variant, name: str, transactions: int) -> Any:
    if name == CLEAR:
        with values_in_clear():
            return run_block(workload, variant, transactions)  # type: ignore[arg-type]
    return run_block(workload, variant, transactions)  # type: ignore[arg-type]


def seed_shared(variant: Variant, profiles: int, prefix: str) -> None:
    """Profiles of one of the two variants that share the ``users`` table."""
    session = variant.sessions()
    session.add_all(
        User(name=f"Person {n}", email=f"{prefix}{n}@example.com") for n in range(profiles)
    )
    session.commit()
    variant.profile_ids = list(
        session.scalars(select(User.id).where(User.email.startswith(f"{prefix}")).order_by(User.id))
    )
    variant.sessions.remove()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    add_summary_option(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = start_run(parse_args, argv)
    rounds = 2 if args.quick else args.rounds
    updates, batches, batch_rows, inserts, warmup = (
        (20, 2, 50, 20, 5) if args.quick else (300, 3, 200, 300, 50)
    )
    with benchmark_database() as url:
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": database_url(url),
                "SQLALCHEMY_BINDS": {BIND_KEYS[NO_AUDIT]: database_url(url)},
                "AUDIT_SEALER": "thread",
            }
        )
        actor = Actor(staff_id=None, label="cli:bench", channel_detail="bench")
        with engines_disposed(app), app.app_context(), acting_as(actor, Origin(channel="cli")):
            upgrade()
            with db.engine.begin() as connection:
                connection.execute(
                    text(f"CREATE TABLE {TABLES[NO_AUDIT]} (LIKE users INCLUDING ALL)")
                )
            variants = {
                NO_AUDIT: Variant(
                    NO_AUDIT,
                    NoAuditProfile,
                    scoped_sessions(FlaskSession),
                    db.engines[BIND_KEYS[NO_AUDIT]],
                ),
                ENCRYPTED: Variant(ENCRYPTED, User, db.session, db.engine),
                CLEAR: Variant(CLEAR, User, db.session, db.engine),
            }
            profiles = max(2 * batch_rows, ROTATING_PROFILES)
            seed(variants[NO_AUDIT], profiles)
            seed_shared(variants[ENCRYPTED], profiles, "encrypted")
            with values_in_clear():
                seed_shared(variants[CLEAR], profiles, "clear")
            # (b) and (c) share the profiles table: their new profiles' emails must differ.
            variants[CLEAR].inserted = 10_000_000
            app.extensions["audit_sealer"].ensure_running()
            workloads = [
                Workload("single-profile update", 1, updates, single_update),
                Workload(f"{batch_rows}-row batch update", batch_rows, batches, batch_update),
                Workload("single insert", 1, inserts, single_insert),
            ]
            for workload in workloads:
                for name in NAMES:
                    run_variant(workload, variants[name], name, warmup if workload.rows == 1 else 1)
            for round_number in range(rounds):
                shift = round_number % len(NAMES)
                for workload in workloads:
                    for name in NAMES[shift:] + NAMES[:shift]:
                        block = run_variant(workload, variants[name], name, workload.transactions)
                        workload.blocks[name].append(block)
                print(
                    f"  round {round_number + 1}/{rounds} done "
                    f"(load average {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
            link_all(db.engine, app.config["AUDIT_CHAIN_KEY"].encode())
        machine = machine_report(url)
    lines = report(workloads, rounds)
    print()
    print("\n".join(line for line in machine if line.startswith(("Machine", "PostgreSQL"))))
    print("\n".join(lines))
    append_summary(args.summary, ["## Personal data encryption: cost per save", "", *lines])
    return 0


def report(workloads: list[Workload], rounds: int) -> list[str]:
    lines = [
        f"{rounds} interleaved rounds. Time x (a): median txn/s of (a) over the variant's. "
        f"(b) x (c): the cost of encryption, per round paired, median (goal ≤ {GOAL:.2f} on "
        "single updates and inserts).",
        "",
        "| Workload | Variant | Txn/s (median) | p50 ms | p99 ms | Time x (a) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    verdicts = []
    for workload in workloads:
        medians = {
            name: statistics.median(block.per_second for block in workload.blocks[name])
            for name in NAMES
        }
        for name in NAMES:
            latencies = [ms for block in workload.blocks[name] for ms in block.latencies_ms]
            lines.append(
                f"| {workload.name} | {name} | {medians[name]:,.1f} "
                f"| {statistics.median(latencies):.2f} | {percentile(latencies, 0.99):.2f} "
                f"| {medians[NO_AUDIT] / medians[name]:.2f}x |"
            )
        paired = [
            clear.per_second / encrypted.per_second
            for clear, encrypted in zip(
                workload.blocks[CLEAR], workload.blocks[ENCRYPTED], strict=True
            )
        ]
        cost = statistics.median(paired)
        goal = "" if workload.rows > 1 else (" (met)" if cost <= GOAL else " (missed)")
        verdicts.append(
            f"- {workload.name}: (b) x (c) = {cost:.3f}, per round "
            f"{min(paired):.2f}..{max(paired):.2f}{goal}"
        )
    return [*lines, "", *verdicts]


if __name__ == "__main__":
    started = time.perf_counter()
    status = main()
    print(f"({time.perf_counter() - started:.0f} s)")
    raise SystemExit(status)
