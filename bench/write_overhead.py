"""Benchmark of the write overhead of audit capture, at the ORM level.

Four variants on the same PostgreSQL, each on a table with the columns,
constraints and indexes of ``users`` (``CREATE TABLE ... (LIKE users INCLUDING
ALL)``, so only the audit differs), written by the same ORM code (load the
profile, set attributes, commit) through sessions built like ``db.session``,
each on an engine of its own with the app's engine options:

(a) no audit at all;
(b) Profile Audit as shipped: the real ``User`` model and ``db.session`` with the
    app's flush listeners (each entry sealed in its own INSERT), the safety net
    checked at COMMIT, and the process's sealer thread linking the entries into
    the hash chain after COMMIT, as it does in every application process: its
    work runs in this process, beside the timed transactions, so it counts;
(c) SQLAlchemy-Continuum with its default options (validity strategy, version
    table plus transaction table); its listeners are attached to its own mapped
    class, session class and engine only, so they cost the other variants nothing;
(d) a plain PL/pgSQL AFTER INSERT/UPDATE/DELETE row trigger writing the
    operation, a timestamp and ``to_jsonb(OLD)``/``to_jsonb(NEW)`` to a log table:
    the floor of auditing inside the database;
(e) the previous design's statements, simulated (``bench/head_lock.py``): the
    same snapshots, then a ``set_config`` statement, the entry INSERT whose CTE
    locks a single chain-head row ``FOR UPDATE`` (held until COMMIT), and a
    second statement inserting the link and moving the head, on scratch copies
    of the audit tables of its own. It is not the old code, only its statements,
    to show what the lock-free linking changed side by side.

Three workloads, each transaction timed from session creation to the session's
removal: a single-profile update (the name; rotating over 100 profiles), a batch
update of 500 profiles in one transaction (one flush), and a single insert.
Interleaved rounds, the order of the variants rotating from round to round, so
that a machine getting busier or tables growing weigh on all alike. Reported:
median transactions/s over rounds (rows/s for the batch), p50/p99 per
transaction, time relative to (a), SQL statements and this process's CPU time
per transaction, whether the targets are met ((b) at most 1.3x (a) on single
updates, single inserts and 500-row batches, and never slower than (c)), the
bytes per audit row of each variant's audit storage after VACUUM (heap, indexes
and TOAST), and the link delay of (b)'s single updates: p50/p99 from an entry's
timestamp to its link's ``linked_at``, over the entries of those blocks.

Run from the project root::

    .venv/bin/python -m bench.write_overhead            # about 3-4 minutes
    .venv/bin/python -m bench.write_overhead --quick    # smoke run, about 30 s

(``--quick`` runs two short rounds with 50-row batches: it checks that the
script works, its numbers mean little.)

``--summary FILE`` appends the results as Markdown to FILE. Without
``BENCH_DATABASE_URL`` an embedded PostgreSQL is started in a temporary
directory and deleted afterwards (also on errors and on SIGTERM). With it, the
database ``profile_audit_bench`` is (re)created on that server and dropped at
the end.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version as installed_version
from typing import Any

from flask import Flask
from flask_migrate import upgrade
from flask_sqlalchemy.session import Session as FlaskSession
from flask_sqlalchemy.session import _app_ctx_id
from sqlalchemy import Engine, MetaData, event, inspect, select, text
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapper,
    column_property,
    configure_mappers,
    scoped_session,
    sessionmaker,
)
from sqlalchemy_continuum import versioning_manager

from bench import head_lock
from bench._common import (
    TimedBlock,
    add_summary_option,
    append_summary,
    database_server,
    machine_report,
    percentile,
    start_run,
)
from webapp import create_app
from webapp.audit.context import Actor, Origin, acting_as
from webapp.audit.sealer import link_all
from webapp.config import database_url
from webapp.extensions import db
from webapp.models import User

BATCH_ROWS = 500
ROTATING_PROFILES = 100
TARGET_SINGLE_UPDATE = 1.3

NO_AUDIT = "(a) no audit"
PROFILE_AUDIT = "(b) Profile Audit"
CONTINUUM = "(c) Continuum"
TRIGGER = "(d) PL/pgSQL trigger"
HEAD_LOCK = "(e) head lock, previous design (simulated statements)"
VARIANT_NAMES = (NO_AUDIT, PROFILE_AUDIT, CONTINUUM, TRIGGER, HEAD_LOCK)
#: The scratch variants whose tables are copies of ``users``.
SCRATCH_VARIANTS = (NO_AUDIT, CONTINUUM, TRIGGER, HEAD_LOCK)

# Bind keys: each scratch variant gets an engine of its own, created by
# Flask-SQLAlchemy from the same options as the app's.
BIND_KEYS = {
    NO_AUDIT: "bench_no_audit",
    CONTINUUM: "bench_continuum",
    TRIGGER: "bench_trigger",
    HEAD_LOCK: "bench_head_lock",
}
TABLES = {
    NO_AUDIT: "users_no_audit",
    PROFILE_AUDIT: "users",
    CONTINUUM: "users_continuum",
    TRIGGER: "users_trigger",
    HEAD_LOCK: head_lock.PROFILES,
}
TRIGGER_LOG = "users_trigger_log"

SCRATCH_SQL = [
    *(
        f"CREATE TABLE {TABLES[name]} (LIKE users INCLUDING ALL)"
        for name in (NO_AUDIT, CONTINUUM, TRIGGER)
    ),
    f"""CREATE TABLE {TRIGGER_LOG} (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        operation text NOT NULL,
        at timestamptz NOT NULL DEFAULT clock_timestamp(),
        old_data jsonb,
        new_data jsonb
    )""",
    f"""CREATE FUNCTION {TRIGGER_LOG}_row() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {TRIGGER_LOG} (operation, old_data, new_data)
        VALUES (TG_OP,
                CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
                CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
        RETURN NULL;
    END
    $$""",
    f"CREATE TRIGGER {TRIGGER_LOG} AFTER INSERT OR UPDATE OR DELETE ON {TABLES[TRIGGER]} "
    f"FOR EACH ROW EXECUTE FUNCTION {TRIGGER_LOG}_row()",
]


# --------------------------------------------------------------------------- models


def profile_mapping(table_name: str, metadata: MetaData) -> dict[str, Any]:
    """The class attributes that map ``webapp.models.User``'s columns and options to a copy.

    Derived from the model itself (columns, ``active_history``, the version
    counter, ``eager_defaults``), so the scratch classes follow it when it changes.
    Constraints and indexes come from ``LIKE users INCLUDING ALL``; nothing is
    created from this metadata but Continuum's own tables.
    """
    user = inspect(User)
    table = User.__table__.to_metadata(metadata, name=table_name)
    properties = {
        attribute.key: column_property(
            table.c[attribute.columns[0].name], active_history=attribute.active_history
        )
        for attribute in user.column_attrs
    }
    return {
        "__table__": table,
        "__mapper_args__": {
            "properties": properties,
            "version_id_col": table.c[user.version_id_col.name],
            "eager_defaults": user.eager_defaults,
        },
    }


class NoAuditBase(DeclarativeBase):
    metadata = MetaData(info={"bind_key": BIND_KEYS[NO_AUDIT]})


class TriggerBase(DeclarativeBase):
    metadata = MetaData(info={"bind_key": BIND_KEYS[TRIGGER]})


class ContinuumBase(DeclarativeBase):
    metadata = MetaData(info={"bind_key": BIND_KEYS[CONTINUUM]})


class HeadLockBase(DeclarativeBase):
    metadata = MetaData(info={"bind_key": BIND_KEYS[HEAD_LOCK]})


NoAuditProfile: type[Any] = type(
    "NoAuditProfile", (NoAuditBase,), profile_mapping(TABLES[NO_AUDIT], NoAuditBase.metadata)
)
TriggerProfile: type[Any] = type(
    "TriggerProfile", (TriggerBase,), profile_mapping(TABLES[TRIGGER], TriggerBase.metadata)
)
HeadLockProfile: type[Any] = type(
    "HeadLockProfile", (HeadLockBase,), profile_mapping(TABLES[HEAD_LOCK], HeadLockBase.metadata)
)


class ContinuumSession(FlaskSession):
    """The session class Continuum's listeners are attached to, and no other."""


def continuum_model(engine: Engine) -> type[Any]:
    """The Continuum-versioned profile class, its version and transaction tables created.

    Does what ``make_versioned()`` does, but attaches the listeners to this one
    class, session class and engine: by default they go on every mapper, session
    and engine of the process and would slow the other variants down too.
    """
    manager = versioning_manager
    manager.user_cls = None  # no relationship to a user table
    manager.apply_class_configuration_listeners(Mapper)

    ContinuumProfile: type[Any] = type(  # noqa: N806 - a class
        "ContinuumProfile",
        (ContinuumBase,),
        {**profile_mapping(TABLES[CONTINUUM], ContinuumBase.metadata), "__versioned__": {}},
    )

    configure_mappers()
    manager.track_operations(ContinuumProfile)
    manager.track_session(ContinuumSession)
    event.listen(engine, "before_execute", manager.track_association_operations)
    event.listen(engine, "rollback", manager.clear_connection)
    event.listen(engine, "set_connection_execution_options", manager.track_cloned_connections)
    version_table = manager.version_class_map[ContinuumProfile].__table__
    transaction_table = manager.transaction_cls.__table__
    ContinuumBase.metadata.create_all(engine, tables=[version_table, transaction_table])
    return ContinuumProfile


def continuum_tables() -> tuple[str, str]:
    """Names of Continuum's version table and transaction table."""
    version_class = next(iter(versioning_manager.version_class_map.values()))
    return version_class.__table__.name, versioning_manager.transaction_cls.__table__.name


# --------------------------------------------------------------------------- variants


@dataclass
class Variant:
    """One way of auditing: its mapped class, sessions, and what it has written."""

    name: str
    model: Any
    sessions: scoped_session[Any]
    engine: Engine
    profile_ids: list[int] = field(default_factory=list)
    #: numbers the names and emails written, so every variant writes the same data
    serial: int = 0
    inserted: int = 0


def scoped_sessions(session_class: type[FlaskSession]) -> scoped_session[Any]:
    """Sessions made the way Flask-SQLAlchemy makes ``db.session``, of another class."""
    # The same options as the application's sessions (expire_on_commit among them).
    options = {k: v for k, v in db.session.session_factory.kw.items() if k != "class_"}
    factory = sessionmaker(**{**options, "class_": session_class})
    return scoped_session(factory, scopefunc=_app_ctx_id)


def update_one(variant: Variant, profile_id: int) -> None:
    """One transaction: load a profile, change its name, commit."""
    session = variant.sessions()
    profile = session.get(variant.model, profile_id)
    variant.serial += 1
    profile.name = f"Bench Person {variant.serial}"
    session.commit()
    # As at the end of a request: the session goes, its connection back to the pool.
    variant.sessions.remove()


def update_batch(variant: Variant, profile_ids: list[int]) -> None:
    """One transaction: load profiles, change every name, commit (one flush)."""
    session = variant.sessions()
    model = variant.model
    for profile in session.scalars(
        select(model).where(model.id.in_(profile_ids)).order_by(model.id)
    ):
        variant.serial += 1
        profile.name = f"Bench Person {variant.serial}"
    session.commit()
    variant.sessions.remove()


def insert_one(variant: Variant) -> None:
    """One transaction: create a profile, commit."""
    session = variant.sessions()
    variant.inserted += 1
    number = variant.inserted
    session.add(variant.model(name=f"New Person {number}", email=f"new{number}@example.com"))
    session.commit()
    variant.sessions.remove()


def seed(variant: Variant, profiles: int) -> None:
    """The profiles the updates change, created by the variant's own ORM code."""
    session = variant.sessions()
    model = variant.model
    session.add_all(
        model(name=f"Person {n}", email=f"person{n}@example.com") for n in range(profiles)
    )
    session.commit()
    variant.profile_ids = list(session.scalars(select(model.id).order_by(model.id)))
    variant.sessions.remove()


# --------------------------------------------------------------------------- timing


@dataclass
class Block(TimedBlock):
    """One round of one variant in one workload."""

    #: this process's CPU time (the ORM, the listeners, the driver), not the server's
    cpu_seconds: float


@dataclass
class Workload:
    """A kind of transaction, and its blocks per variant."""

    name: str
    #: rows changed per transaction
    rows: int
    #: transactions per variant and round
    transactions: int
    run: Callable[[Variant, int], None]
    blocks: dict[str, list[Block]] = field(
        default_factory=lambda: {name: [] for name in VARIANT_NAMES}
    )
    statements: dict[str, int] = field(default_factory=dict)


def single_update(variant: Variant, n: int) -> None:
    update_one(variant, variant.profile_ids[n % ROTATING_PROFILES])


def batch_update(variant: Variant, n: int) -> None:
    # Alternate halves: consecutive batches change different rows.
    half = len(variant.profile_ids) // 2
    start = (n % 2) * half
    update_batch(variant, variant.profile_ids[start : start + half])


def single_insert(variant: Variant, n: int) -> None:
    insert_one(variant)


def run_block(workload: Workload, variant: Variant, transactions: int) -> Block:
    """``transactions`` transactions of ``workload`` by ``variant``, each timed."""
    # Garbage left by the previous block is collected outside the timing.
    gc.collect()
    latencies: list[float] = []
    cpu_started = time.process_time()
    started = time.perf_counter()
    for n in range(transactions):
        moment = time.perf_counter_ns()
        workload.run(variant, n)
        latencies.append((time.perf_counter_ns() - moment) / 1e6)
    return Block(time.perf_counter() - started, latencies, time.process_time() - cpu_started)


def count_statements(workload: Workload, variant: Variant) -> int:
    """SQL statements (and COMMIT) one untimed transaction of ``workload`` sends."""
    count = 0

    def counted(*args: Any) -> None:
        nonlocal count
        # Not the sealer thread's statements: they belong to no one transaction.
        if threading.current_thread() is threading.main_thread():
            count += 1

    # On the Engine class: Continuum writes through a session of its own whose
    # connection does not report to the variant's engine's listeners.
    event.listen(Engine, "before_cursor_execute", counted)
    event.listen(Engine, "commit", counted)
    try:
        workload.run(variant, 0)
    finally:
        event.remove(Engine, "before_cursor_execute", counted)
        event.remove(Engine, "commit", counted)
    return count


# --------------------------------------------------------------------------- checks


def schema_check(app: Flask) -> list[str]:
    """Differences between the tables' columns, constraints, indexes and triggers."""
    with app.app_context(), db.engine.connect() as connection:

        def shape(table: str) -> dict[str, list[str]]:
            def rows(sql: str) -> list[str]:
                result = connection.execute(text(sql), {"t": table}).scalars()
                return sorted(str(value).replace(table, "T") for value in result)

            return {
                "columns": rows(
                    "SELECT attname || ' ' || format_type(atttypid, atttypmod) || "
                    "CASE WHEN attnotnull THEN ' not null' ELSE '' END || ' ' "
                    "|| CAST(attidentity AS text) "
                    "FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) AND attnum > 0 "
                    "AND NOT attisdropped"
                ),
                "defaults": rows(
                    "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef "
                    "WHERE adrelid = CAST(:t AS regclass)"
                ),
                "constraints": rows(
                    "SELECT CAST(contype AS text) || ' ' || pg_get_constraintdef(oid) "
                    # Constraint triggers are compared with the triggers.
                    "FROM pg_constraint WHERE conrelid = CAST(:t AS regclass) AND contype <> 't'"
                ),
                # The index names differ; their definitions must not.
                "indexes": rows(
                    "SELECT regexp_replace(indexdef, 'INDEX \\S+ ON', 'INDEX ON') "
                    "FROM pg_indexes WHERE tablename = :t"
                ),
                "triggers": rows(
                    "SELECT tgname FROM pg_trigger WHERE tgrelid = CAST(:t AS regclass) "
                    "AND NOT tgisinternal"
                ),
            }

        reference = shape("users")
        problems = []
        for name in SCRATCH_VARIANTS:
            other = shape(TABLES[name])
            for aspect, values in reference.items():
                expected = values
                if aspect == "triggers":
                    # users carries the safety net, the trigger variant its log
                    # trigger, the simulation the previous safety net.
                    expected = {
                        TRIGGER: [TRIGGER_LOG.replace(TABLES[name], "T")],
                        HEAD_LOCK: ["T_safety_net"],
                    }.get(name, [])
                if other[aspect] != expected:
                    problems.append(f"{name}: {aspect} {other[aspect]} instead of {expected}")
        return problems


def version_check(app: Flask) -> str:
    """Whether every variant's table ends with the same rows and version counters."""
    with app.app_context(), db.engine.connect() as connection:
        counters = {
            name: tuple(
                connection.execute(
                    text(f"SELECT count(*), sum(version), max(version) FROM {TABLES[name]}")
                ).one()
            )
            for name in VARIANT_NAMES
        }
    if len(set(counters.values())) == 1:
        rows, total, highest = counters[NO_AUDIT]
        return (
            f"Version counters: identical in all {len(counters)} tables ({rows:,} profiles, "
            f"versions summing to {total:,}, highest {highest:,})."
        )
    return "Version counters DIFFER between the tables: " + ", ".join(
        f"{name} {value}" for name, value in counters.items()
    )


# --------------------------------------------------------------------------- storage


@dataclass
class Storage:
    """The relations holding one variant's audit rows."""

    label: str
    relations: list[str]
    rows_relation: str
    rows: int = 0
    bytes: int = 0

    @property
    def per_row(self) -> float:
        return self.bytes / self.rows if self.rows else float("nan")


def measure_storage(app: Flask) -> list[Storage]:
    """Each variant's audit storage after VACUUM: heap, indexes and TOAST per audit row."""
    version_table, transaction_table = continuum_tables()
    storages = [
        Storage(f"{PROFILE_AUDIT}: entries (user_audit)", ["user_audit"], "user_audit"),
        Storage(
            f"{PROFILE_AUDIT}: entries + chain (user_audit, audit_chain)",
            ["user_audit", "audit_chain"],
            "user_audit",
        ),
        Storage(
            f"{CONTINUUM}: {version_table} + {transaction_table}",
            [version_table, transaction_table],
            version_table,
        ),
        Storage(f"{TRIGGER}: {TRIGGER_LOG}", [TRIGGER_LOG], TRIGGER_LOG),
        Storage(
            f"{HEAD_LOCK}: entries + chain",
            [head_lock.ENTRIES, head_lock.LINKS],
            head_lock.ENTRIES,
        ),
    ]
    relations = sorted({relation for storage in storages for relation in storage.relations})
    with app.app_context():
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            for relation in relations:
                connection.execute(text(f'VACUUM (ANALYZE) "{relation}"'))
        with db.engine.connect() as connection:
            for storage in storages:
                storage.bytes = sum(
                    connection.execute(
                        text("SELECT pg_total_relation_size(CAST(:r AS regclass))"),
                        {"r": f'"{relation}"'},
                    ).scalar_one()
                    for relation in storage.relations
                )
                storage.rows = connection.execute(
                    text(f'SELECT count(*) FROM "{storage.rows_relation}"')
                ).scalar_one()
    return storages


# --------------------------------------------------------------------------- report


@dataclass
class Row:
    """The summary of one variant in one workload."""

    per_second: float
    p50: float
    p99: float
    ratio: float
    round_ratios: list[float]
    transactions: int
    cpu_ms: float


def summarize(workload: Workload) -> dict[str, Row]:
    rows: dict[str, Row] = {}
    baseline = workload.blocks[NO_AUDIT]
    for name in VARIANT_NAMES:
        blocks = workload.blocks[name]
        latencies = [value for block in blocks for value in block.latencies_ms]
        per_second = statistics.median(block.per_second for block in blocks)
        rows[name] = Row(
            per_second=per_second,
            p50=statistics.median(latencies),
            p99=percentile(latencies, 0.99),
            # Time relative to (a): how many times as long a transaction takes.
            ratio=statistics.median(block.per_second for block in baseline) / per_second,
            # Paired by round: both ran in the same round, under the same conditions.
            round_ratios=[
                plain.per_second / block.per_second
                for plain, block in zip(baseline, blocks, strict=True)
            ],
            transactions=len(latencies),
            cpu_ms=sum(block.cpu_seconds for block in blocks) * 1000 / len(latencies),
        )
    return rows


def results_tables(workloads: list[Workload], storages: list[Storage]) -> list[str]:
    """The results as Markdown: throughput and latency, targets, storage."""
    lines = [
        "| Workload | Variant | Txn/s (median) | Rows/s (median) | p50 ms | p99 ms "
        "| Time x (a) | Per-round x (a), min..max | Statements/txn | Client CPU ms/txn | Txns |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    summaries = {workload.name: summarize(workload) for workload in workloads}
    for workload in workloads:
        for name, row in summaries[workload.name].items():
            ratios = row.round_ratios
            lines.append(
                f"| {workload.name} | {name} | {row.per_second:,.1f} "
                f"| {row.per_second * workload.rows:,.0f} | {row.p50:.2f} | {row.p99:.2f} "
                f"| {row.ratio:.2f}x | {min(ratios):.2f}..{max(ratios):.2f} "
                f"| {workload.statements.get(name, 0):,} | {row.cpu_ms:.2f} "
                f"| {row.transactions:,} |"
            )
    lines.append("")
    lines.append(
        "Time x (a): median txn/s of (a) over the variant's; per round: the same, paired by "
        "round. p99: nearest rank (the maximum when a variant ran fewer than 100 transactions). "
        "Statements: SQL statements and COMMIT of one transaction (the pool's ping not counted)."
    )
    lines.append("")
    for workload in workloads:
        ours = summaries[workload.name][PROFILE_AUDIT].ratio
        previous = summaries[workload.name][HEAD_LOCK].ratio
        lines.append(
            f"- Target: {PROFILE_AUDIT} ≤ {TARGET_SINGLE_UPDATE:.1f}x {NO_AUDIT} on "
            f"{workload.name}: {ours:.2f}x — "
            f"{'met' if ours <= TARGET_SINGLE_UPDATE else 'MISSED'} "
            f"(previous design, simulated: {previous:.2f}x)"
        )
    comparisons = [
        f"{workload.name} {summaries[workload.name][PROFILE_AUDIT].ratio:.2f}x vs "
        f"{summaries[workload.name][CONTINUUM].ratio:.2f}x"
        for workload in workloads
    ]
    never_slower = all(
        summaries[w.name][PROFILE_AUDIT].ratio <= summaries[w.name][CONTINUUM].ratio
        for w in workloads
    )
    lines.append(
        f"- Target: {PROFILE_AUDIT} never slower than {CONTINUUM}: "
        + "; ".join(comparisons)
        + f" — {'met' if never_slower else 'MISSED'}"
    )
    lines.append("")
    lines.append("| Audit storage (after VACUUM) | Audit rows | Total size | Bytes/audit row |")
    lines.append("|---|---:|---:|---:|")
    for storage in storages:
        lines.append(
            f"| {storage.label} | {storage.rows:,} | {storage.bytes / 1024 / 1024:,.1f} MiB "
            f"| {storage.per_row:,.0f} |"
        )
    lines.append("")
    lines.append(
        f"{HEAD_LOCK}: a simulation of the previous design's statements (set_config, the "
        "entry INSERT locking the chain head FOR UPDATE in a CTE, then links + head UPDATE) "
        "on scratch tables of its own; not the previous code."
    )
    return lines


def server_version(app: Flask) -> str:
    with app.app_context(), db.engine.connect() as connection:
        return str(connection.execute(text("SHOW server_version")).scalar_one()).split()[0]


# --------------------------------------------------------------------------- main


@dataclass(frozen=True)
class Sizes:
    """Transactions per variant and round, per workload."""

    updates: int
    batches: int
    inserts: int
    warmup: int
    #: rows per batch; the profiles seeded are twice as many
    batch_rows: int = BATCH_ROWS


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="rounds of every workload")
    parser.add_argument(
        "--quick", action="store_true", help="a tiny run (about 30 s) to check that it works"
    )
    add_summary_option(parser)
    return parser.parse_args(argv)


@contextmanager
def benchmark_database() -> Iterator[str]:
    """``database_server``, whose stopping and deleting a late SIGTERM cannot interrupt."""
    with ExitStack() as stack:
        url = stack.enter_context(database_server(keep=False))
        # Runs first on the way out, before the server is stopped.
        stack.callback(signal.signal, signal.SIGTERM, signal.SIG_IGN)
        yield url


@contextmanager
def engines_disposed(app: Flask) -> Iterator[None]:
    """Stop the sealer, close every pooled connection before the server is stopped."""
    try:
        yield
    finally:
        sealer = app.extensions.get("audit_sealer")
        if sealer is not None:
            sealer.stop()
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()


# --------------------------------------------------------------------------- link delay

#: Entries still unlinked this long after the last round are reported as such.
LINK_WAIT_SECONDS = 30.0

_LINK_DELAYS = text(
    "SELECT count(*) AS entries, count(c.entry_id) AS linked, "
    "percentile_disc(0.5) WITHIN GROUP (ORDER BY d.ms) AS p50, "
    "percentile_disc(0.99) WITHIN GROUP (ORDER BY d.ms) AS p99, max(d.ms) AS worst "
    "FROM user_audit a "
    "JOIN unnest(CAST(:starts AS timestamptz[]), CAST(:ends AS timestamptz[])) AS w(s, e) "
    "  ON a.timestamp >= w.s AND a.timestamp < w.e "
    "LEFT JOIN audit_chain c ON c.entry_id = a.id "
    "CROSS JOIN LATERAL (SELECT extract(epoch FROM c.linked_at - a.timestamp) * 1000 AS ms) d"
)


@dataclass
class LinkDelay:
    """From an entry's timestamp to its link's ``linked_at``, over some entries."""

    entries: int
    linked: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    def describe(self) -> str:
        if not self.linked:
            return f"{self.entries:,} entries, none linked"
        return (
            f"{self.linked:,} of {self.entries:,} entries linked; p50 {self.p50_ms:.1f} ms, "
            f"p99 {self.p99_ms:.1f} ms, max {self.max_ms:.1f} ms"
        )


def link_delays(windows: list[tuple[datetime, datetime]]) -> LinkDelay:
    """Link delays of the entries written in ``windows`` (once the sealer has caught up)."""
    deadline = time.monotonic() + LINK_WAIT_SECONDS
    with db.engine.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.execute(text("SELECT count(*) FROM audit_chain_pending"))
            if waiting.scalar_one() == 0:
                break
            connection.rollback()
            time.sleep(0.1)
        row = connection.execute(
            _LINK_DELAYS,
            {"starts": [start for start, _ in windows], "ends": [end for _, end in windows]},
        ).one()
    return LinkDelay(
        row.entries,
        row.linked,
        None if row.p50 is None else float(row.p50),
        None if row.p99 is None else float(row.p99),
        None if row.worst is None else float(row.worst),
    )


def setup_variants(app: Flask, profiles: int) -> dict[str, Variant]:
    """Migrate, create the scratch tables and Continuum's, seed every variant's profiles."""
    upgrade()
    with db.engine.begin() as connection:
        for statement in SCRATCH_SQL:
            connection.execute(text(statement))
        head_lock.setup(connection)
    head_lock.install_listeners()
    problems = schema_check(app)
    if problems:
        raise SystemExit("The tables differ:\n  " + "\n  ".join(problems))
    continuum = continuum_model(db.engines[BIND_KEYS[CONTINUUM]])
    variants = {
        NO_AUDIT: Variant(
            NO_AUDIT,
            NoAuditProfile,
            scoped_sessions(FlaskSession),
            db.engines[BIND_KEYS[NO_AUDIT]],
        ),
        # The application's own session and model, listeners and all.
        PROFILE_AUDIT: Variant(PROFILE_AUDIT, User, db.session, db.engine),
        CONTINUUM: Variant(
            CONTINUUM,
            continuum,
            scoped_sessions(ContinuumSession),
            db.engines[BIND_KEYS[CONTINUUM]],
        ),
        TRIGGER: Variant(
            TRIGGER,
            TriggerProfile,
            scoped_sessions(FlaskSession),
            db.engines[BIND_KEYS[TRIGGER]],
        ),
        HEAD_LOCK: Variant(
            HEAD_LOCK,
            HeadLockProfile,
            scoped_sessions(head_lock.HeadLockSession),
            db.engines[BIND_KEYS[HEAD_LOCK]],
        ),
    }
    for variant in variants.values():
        seed(variant, profiles)
    return variants


def main(argv: list[str] | None = None) -> int:
    args = start_run(parse_args, argv)
    rounds = 2 if args.quick else args.rounds
    # --quick checks the code paths: Continuum's 500-row batches alone would take longer.
    sizes = Sizes(20, 1, 10, 5, batch_rows=50) if args.quick else Sizes(300, 2, 200, 50)
    started = time.perf_counter()
    with benchmark_database() as url:
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": database_url(url),
                "SQLALCHEMY_BINDS": {key: database_url(url) for key in BIND_KEYS.values()},
                # As in production: a sealer thread links (b)'s entries after COMMIT.
                "AUDIT_SEALER": "thread",
            }
        )
        actor = Actor(staff_id=None, label="cli:bench", channel_detail="bench")
        with (
            engines_disposed(app),
            app.app_context(),
            acting_as(actor, Origin(channel="cli")),
        ):
            variants = setup_variants(app, max(2 * sizes.batch_rows, ROTATING_PROFILES))
            app.extensions["audit_sealer"].ensure_running()
            #: When (b)'s single-update blocks ran: their entries' link delays.
            delay_windows: list[tuple[datetime, datetime]] = []
            workloads = [
                Workload("single-profile update", 1, sizes.updates, single_update),
                Workload(
                    f"{sizes.batch_rows}-row batch update",
                    sizes.batch_rows,
                    sizes.batches,
                    batch_update,
                ),
                Workload("single insert", 1, sizes.inserts, single_insert),
            ]
            for workload in workloads:
                for variant in variants.values():
                    # The counted transaction warms the batch up; the others get more.
                    workload.statements[variant.name] = count_statements(workload, variant)
                    if workload.rows == 1:
                        run_block(workload, variant, sizes.warmup)
            for round_number in range(rounds):
                # Rotate the order, so no variant always follows the same one.
                shift = round_number % len(VARIANT_NAMES)
                order = VARIANT_NAMES[shift:] + VARIANT_NAMES[:shift]
                for workload in workloads:
                    for name in order:
                        block_started = datetime.now(UTC)
                        block = run_block(workload, variants[name], workload.transactions)
                        workload.blocks[name].append(block)
                        if name == PROFILE_AUDIT and workload is workloads[0]:
                            delay_windows.append((block_started, datetime.now(UTC)))
                print(
                    f"  round {round_number + 1}/{rounds}: "
                    + "; ".join(
                        f"{workload.name} "
                        + ", ".join(
                            f"{name[:3]} {workload.blocks[name][-1].per_second:,.0f}/s"
                            for name in VARIANT_NAMES
                        )
                        for workload in workloads
                    )
                    + f" (load average {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
            delay = link_delays(delay_windows)
            # Whatever the sealer has not linked yet, so that storage counts the chain whole.
            link_all(db.engine, app.config["AUDIT_CHAIN_KEY"].encode())
            versions = version_check(app)
            storages = measure_storage(app)
            postgres = server_version(app)
        machine = machine_report(url)
    print()
    for line in machine:
        if line.startswith(("Machine", "PostgreSQL", "Settings")):
            print(line)
    print(
        f"SQLAlchemy {installed_version('SQLAlchemy')}, "
        f"SQLAlchemy-Continuum {installed_version('SQLAlchemy-Continuum')}; "
        f"{rounds} rounds; per variant and round: {sizes.updates} single updates, "
        f"{sizes.batches} batches of {sizes.batch_rows}, {sizes.inserts} inserts"
    )
    print(versions)
    print()
    tables = results_tables(workloads, storages)
    tables += [
        "",
        f"Link delay of {PROFILE_AUDIT}'s single-profile updates (entry timestamp to its "
        f"link's linked_at, the process's sealer thread linking after COMMIT): {delay.describe()}",
    ]
    print("\n".join(tables))
    if args.summary is not None:
        summary = [
            "### Write overhead",
            "",
            f"{machine[0].removeprefix('Machine: ')}; PostgreSQL {postgres}; "
            f"SQLAlchemy-Continuum {installed_version('SQLAlchemy-Continuum')}; "
            f"{rounds} rounds.",
            "",
            *tables,
            "",
        ]
        append_summary(args.summary, summary)
    print(f"\nWhole run: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
