"""Benchmark of ``flask audit verify`` on a chain of 1,000,000 audit entries.

Fills a throwaway database with the realistic profiles and audit entries of
``bench/timeline_queries.py`` (same SQL, same seed), links every entry into the
hash chain the way the application would have (same ``link_hash``, same key),
then times ``webapp.services.audit_integrity.verify`` in-process, split into its
parts (chain walk, every-entry-is-chained check, drift check), and runs the
real command ``flask audit verify`` once as a subprocess for its wall time,
output and peak memory (RSS).

Run from the project root::

    .venv/bin/python bench/verify_chain.py --entries 1000000

``--profile`` also runs ``verify`` once under cProfile and prints where the time
goes. Without ``BENCH_DATABASE_URL`` an embedded PostgreSQL is started in a
temporary directory and deleted afterwards (also on errors and on SIGTERM).
With it, the database ``profile_audit_bench`` is (re)created on that server and
dropped at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import text

from webapp import create_app
from webapp.audit import chain
from webapp.audit.chain import GENESIS_HASH, ChainHead
from webapp.config import database_url
from webapp.extensions import db
from webapp.services import audit_integrity

# The project root, so that ``bench`` is importable when this file is run as a script.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from bench.timeline_queries import (  # noqa: E402
    _stop_on_sigterm,
    database_server,
    generate_data,
    machine_report,
)

#: Entries read per round trip while building the chain (the walk's own batch size).
READ_BATCH = audit_integrity.WALK_BATCH
#: Verification slower than this is profiled even without ``--profile``.
SLOW_SECONDS = 30.0


# --------------------------------------------------------------------------- data


@dataclass
class Build:
    """How building the chain went."""

    head: ChainHead
    seconds: float
    hashing_seconds: float


def build_chain(app: Flask, url: str, key: bytes) -> Build:
    """Link every entry, in id order, as the application's appends would have.

    Entries' canonical bytes are read with ``chain.CANONICAL_ENTRY_SQL`` (what
    the application's INSERT returns), hashed with ``chain.link_hash`` and
    loaded with one binary COPY; then the head row is moved forward to the last
    link (its trigger allows moving forward).
    """
    started = time.perf_counter()
    hashing = 0.0
    seq, previous = 0, GENESIS_HASH
    with app.app_context(), db.engine.connect() as reader, psycopg.connect(url) as writer:
        stream = reader.execution_options(stream_results=True, yield_per=READ_BATCH)
        result = stream.execute(
            text(f"SELECT id, {chain.CANONICAL_ENTRY_SQL} AS canonical FROM user_audit ORDER BY id")
        )
        with (
            writer.cursor() as cursor,
            cursor.copy(
                "COPY audit_chain (seq, entry_id, hash) FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(["int8", "int8", "bytea"])
            for partition in result.partitions(READ_BATCH):
                moment = time.perf_counter()
                links = []
                for entry_id, canonical in partition:
                    seq += 1
                    previous = chain.link_hash(key, previous, seq, canonical)
                    links.append((seq, entry_id, previous))
                hashing += time.perf_counter() - moment
                for link in links:
                    copy.write_row(link)
        writer.execute(
            "UPDATE audit_chain_head SET seq = %s, hash = %s WHERE id = 1", (seq, previous)
        )
        writer.commit()
    with psycopg.connect(url, autocommit=True) as connection:
        # As autovacuum would have by then: the walk's plan depends on these statistics.
        connection.execute("VACUUM (ANALYZE) audit_chain")
    return Build(ChainHead(seq, previous), time.perf_counter() - started, hashing)


# --------------------------------------------------------------------------- timing


@dataclass
class Parts:
    """Seconds spent in each part of ``verify``."""

    seconds: dict[str, float] = field(default_factory=dict)


def timing_parts(parts: Parts) -> Callable[[], None]:
    """Time ``verify``'s parts by wrapping the module functions it calls; return an undo."""
    originals: dict[str, Any] = {}
    names = {
        "_walk": "chain walk (fetch + re-hash every link; summed over workers)",
        "_check_every_entry_is_chained": "every entry chained (counts)",
        "find_drift": "drift check (profiles vs latest entry)",
    }
    for attribute, label in names.items():
        original = getattr(audit_integrity, attribute)
        originals[attribute] = original

        def timed(*args: Any, _original: Any = original, _label: str = label, **kwargs: Any) -> Any:
            moment = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                parts.seconds[_label] = parts.seconds.get(_label, 0.0) + (
                    time.perf_counter() - moment
                )

        setattr(audit_integrity, attribute, timed)

    def undo() -> None:
        for attribute, original in originals.items():
            setattr(audit_integrity, attribute, original)

    return undo


def verify_in_process(
    app: Flask, key: bytes, workers: int, profiler: cProfile.Profile | None = None
) -> tuple[audit_integrity.Verification, float, Parts]:
    """One ``verify`` as the command runs it, with ``workers`` ranges at once, timed."""
    parts = Parts()
    undo = timing_parts(parts)
    try:
        with app.app_context():
            started = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            result = audit_integrity.verify(db.engine, key, workers=workers)
            if profiler is not None:
                profiler.disable()
            seconds = time.perf_counter() - started
    finally:
        undo()
    return result, seconds, parts


@dataclass
class CommandRun:
    """One run of ``flask audit verify`` in a subprocess."""

    seconds: float
    returncode: int
    output: str
    max_rss_kib: int


def run_command(url: str) -> CommandRun:
    """``flask audit verify`` as an operator runs it, with the benchmark's database."""
    environment = dict(os.environ)
    environment["DATABASE_URL"] = url
    # As .flaskenv says, in case the command is not run from the project root.
    environment["FLASK_APP"] = "webapp.cli:create_cli_app()"
    flask = Path(sys.executable).parent / "flask"
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        process = subprocess.Popen(  # noqa: S603 - a fixed command, no shell
            [str(flask), "audit", "verify"],
            cwd=_ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        # wait4 gives this child's own resource usage: its peak RSS, in KiB on Linux.
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        text = output.read().decode(errors="replace")
    return CommandRun(seconds, process.returncode, text, usage.ru_maxrss)


def print_profile(profiler: cProfile.Profile, limit: int = 25) -> None:
    """The functions with the most time of their own, then by cumulative time."""
    for order in ("tottime", "cumulative"):
        buffer = io.StringIO()
        pstats.Stats(profiler, stream=buffer).strip_dirs().sort_stats(order).print_stats(limit)
        print(f"--- cProfile of verify, by {order}")
        print(buffer.getvalue().split("\n", 6)[-1].rstrip())  # without the banner lines


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="audit entries")
    parser.add_argument("--users", type=int, default=100_000, help="profiles")
    parser.add_argument("--seed", type=float, default=0.42, help="setseed() for the data")
    parser.add_argument(
        "--profile", action="store_true", help="also run verify once under cProfile"
    )
    args = parser.parse_args(argv)
    if args.users < 1 or args.entries < args.users:
        parser.error("--entries must be at least --users (every profile has a create entry)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    started = time.perf_counter()
    with database_server(keep=False) as url:
        app = create_app({"SQLALCHEMY_DATABASE_URI": database_url(url)})
        with app.app_context():
            upgrade()
        key = app.config["AUDIT_CHAIN_KEY"].encode()

        print(f"Generating {args.users:,} profiles and {args.entries:,} audit entries", flush=True)
        seconds = generate_data(url, users=args.users, entries=args.entries, seed=args.seed)
        print(f"Data generated in {seconds:.1f} s", flush=True)
        build = build_chain(app, url, key)
        print(
            f"Chain built: {build.head.seq:,} links in {build.seconds:.1f} s "
            f"(hashing {build.hashing_seconds:.1f} s)\n",
            flush=True,
        )
        for line in machine_report(url):
            print(line)
        with psycopg.connect(url) as connection:
            sizes = connection.execute(
                "SELECT pg_size_pretty(pg_total_relation_size('audit_chain')), "
                "(SELECT count(*) FROM audit_chain_pending)"
            ).fetchone()
        assert sizes is not None
        print(f"audit_chain with its indexes: {sizes[0]}; pending entries: {sizes[1]}")
        print(f"Load average before verifying: {os.getloadavg()[0]:.2f}\n", flush=True)

        # One worker and two, interleaved, twice: the machine's noise hits both.
        for round_number in (1, 2):
            for workers in (1, 2):
                result, seconds, parts = verify_in_process(app, key, workers)
                print(
                    f"verify() in-process, {workers} worker(s), round {round_number}: "
                    f"{audit_integrity.describe(result)}"
                )
                print(
                    f"  {seconds:.1f} s, {result.entries_checked / seconds:,.0f} entries/s "
                    f"(load average {os.getloadavg()[0]:.2f})"
                )
                # With several workers the walk's time is summed over threads.
                rest = [] if workers > 1 else [("the rest", seconds - sum(parts.seconds.values()))]
                for label, part in [*parts.seconds.items(), *rest]:
                    print(f"  {label}: {part:.2f} s")
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"  benchmark process peak RSS so far: {own / 1024:.0f} MiB\n", flush=True)

        command = run_command(url)
        print(f"flask audit verify: exit status {command.returncode}, {command.seconds:.1f} s wall")
        print(f"  peak RSS {command.max_rss_kib / 1024:.0f} MiB")
        for line in command.output.strip().splitlines():
            print(f"  > {line}")
        print(flush=True)

        if args.profile or seconds > SLOW_SECONDS:
            profiler = cProfile.Profile()
            _, profiled, _ = verify_in_process(app, key, 1, profiler)
            print(f"Under cProfile: {profiled:.1f} s")
            print_profile(profiler)
    print(f"\nWhole run: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
