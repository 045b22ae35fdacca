"""Benchmark of exporting and verifying 1,000,000 audit entries.

Fills a throwaway database with the realistic profiles and audit entries of
``bench/timeline_queries.py`` (same SQL, same seed), seals every entry and
links it into the hash chain the way the application and its sealer would
have (same seal, same ``link_hash``, same key), then:

- times ``webapp.services.audit_integrity.verify`` in-process, split into its
  parts (chain walk, every-entry-is-chained check, drift check), with one and
  two workers;
- runs the real commands as an operator would, each as a subprocess, for its
  wall time, entries per second and peak memory (RSS: its own VmHWM):
  ``flask audit verify``, ``flask audit export --format csv`` and
  ``flask audit export --format ndjson`` (every entry, to a file). The exports
  are the same code as the timeline's downloads; their memory must stay
  constant (under ``EXPORT_RSS_LIMIT_MIB``) whatever the number of entries.

Run from the project root::

    .venv/bin/python -m bench.export_verify --entries 1000000

``--encrypted`` encrypts the generated entries' personal values first, as the
application stores them (``bench/encrypted_history.py``: a data key per profile,
every name and email AES-GCM encrypted), so that the exports decrypt and the
drift check compares decrypted values, as in production; without it the
entries hold clear values, as before encryption (the exports then show them as
they are). ``--profile`` also runs ``verify`` once under cProfile and prints where the time
goes. ``--verify-only`` runs one in-process verify and the command, no exports
(and no cProfile run unless asked). ``--summary FILE`` appends the results as
Markdown. Without ``BENCH_DATABASE_URL`` an embedded PostgreSQL is started in a
temporary directory and deleted afterwards (also on errors and on SIGTERM). With it, the
database ``profile_audit_bench`` is (re)created on that server and dropped at
the end.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import resource
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
from sqlalchemy import text

from bench._common import (
    ROOT,
    add_data_size_options,
    add_summary_option,
    append_summary,
    check_data_size,
    database_server,
    drop_secondary_indexes,
    generate_history,
    machine_report,
    migrated_app,
    start_run,
)
from bench.encrypted_history import encrypt_history
from webapp.audit import chain, seal
from webapp.audit.chain import GENESIS_HASH, ChainHead
from webapp.audit.seal import ENTRY_DIGEST_SQL, digest_seal
from webapp.extensions import db
from webapp.services import audit_integrity

#: Entries read per round trip while building the chain (the walk's own batch size).
READ_BATCH = audit_integrity.WALK_BATCH
#: Verification slower than this is profiled even without ``--profile``.
SLOW_SECONDS = 30.0
#: How often a command's peak memory is read while it runs.
RSS_POLL_SECONDS = 0.05
#: An export holds one batch at a time: more than this means memory grows with the log.
EXPORT_RSS_LIMIT_MIB = 150
#: What ``flask audit verify`` should reach, entries per second.
VERIFY_TARGET_PER_SECOND = 100_000


# --------------------------------------------------------------------------- data


@dataclass
class Build:
    """How sealing and linking the generated entries went."""

    head: ChainHead
    seconds: float
    hashing_seconds: float


def build_chain(app: Flask, url: str, key: bytes) -> Build:
    """Seal and link every entry, in id order, as the application and its sealer would have.

    The generated entries are written by SQL, without seals. Each entry's
    SHA-256 of its canonical bytes is read with ``seal.ENTRY_DIGEST_SQL`` (what
    the sealer and the verifier read), its seal is ``seal.digest_seal`` of it
    (what the application's INSERT writes: the property tests hold the two to
    the same bytes) and its link (encoding 2) is ``chain.link_hash`` over the
    seal. The seals go in with one binary COPY into a temporary table and one
    UPDATE (history's triggers lifted in that transaction only, secondary
    indexes dropped, the table rewritten by VACUUM FULL afterwards, then the
    indexes rebuilt: the table ends as compact as if the entries had been
    inserted with their seals); the links with one binary COPY; then the head
    row is moved forward to the last link (its trigger allows moving forward).
    """
    started = time.perf_counter()
    hashing = 0.0
    seq, previous = 0, GENESIS_HASH
    with app.app_context(), db.engine.connect() as reader, psycopg.connect(url) as writer:
        stream = reader.execution_options(stream_results=True, yield_per=READ_BATCH)
        result = stream.execute(
            text(f"SELECT id, {ENTRY_DIGEST_SQL} AS digest FROM user_audit ORDER BY id")
        )
        writer.execute(
            "CREATE TEMPORARY TABLE entry_seals (id bigint PRIMARY KEY, seal bytea NOT NULL)"
        )
        with writer.cursor() as cursor:
            with (
                cursor.copy(
                    "COPY audit_chain (seq, entry_id, hash, encoding) FROM STDIN (FORMAT BINARY)"
                ) as links_copy,
            ):
                links_copy.set_types(["int8", "int8", "bytea", "int2"])
                seals: list[tuple[int, bytes]] = []
                for partition in result.partitions(READ_BATCH):
                    moment = time.perf_counter()
                    links = []
                    for entry_id, digest in partition:
                        entry_seal = digest_seal(key, bytes(digest))
                        seq += 1
                        previous = chain.link_hash(key, previous, seq, entry_seal)
                        links.append((seq, entry_id, previous, seal.ENCODING))
                        seals.append((entry_id, entry_seal))
                    hashing += time.perf_counter() - moment
                    for link in links:
                        links_copy.write_row(link)
            with cursor.copy("COPY entry_seals (id, seal) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "bytea"])
                for row in seals:
                    copy.write_row(row)
        del seals
        writer.execute(
            "UPDATE audit_chain_head SET seq = %s, hash = %s WHERE id = 1", (seq, previous)
        )
        # The reader's snapshot would keep the index drop below waiting for ever.
        reader.rollback()
        writer.execute("ALTER TABLE user_audit DISABLE TRIGGER USER")
        dropped = drop_secondary_indexes(writer, ("user_audit",))
        writer.execute(
            "UPDATE user_audit SET seal = entry_seals.seal FROM entry_seals "
            # The safety net's entries have none: the application never wrote them.
            "WHERE user_audit.id = entry_seals.id AND NOT user_audit.unattributed"
        )
        writer.execute("ALTER TABLE user_audit ENABLE TRIGGER USER")
        writer.commit()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM FULL user_audit")
        for definition in dropped:
            connection.execute(definition)
        # As autovacuum would have by then: the walk's plan depends on these statistics.
        connection.execute("VACUUM (ANALYZE) user_audit")
        connection.execute("VACUUM (ANALYZE) audit_chain")
    return Build(ChainHead(seq, previous), time.perf_counter() - started, hashing)


# --------------------------------------------------------------------------- timing


@dataclass
class WalkBreakdown:
    """Where the chain walk's time goes: the server, the transfer, the Python loop."""

    server_seconds: float
    fetch_seconds: float
    #: The walk in a one-worker ``verify``, for comparison.
    walk_seconds: float = 0.0


def walk_breakdown(app: Flask, last_seq: int) -> WalkBreakdown:
    """The walk's query alone: executed on the server only (EXPLAIN ANALYZE, no rows
    sent), then fetched in full by one connection as the walk fetches it, rows discarded.
    """
    parameters = {"first": 1, "last": last_seq}
    query = audit_integrity._LINKS_WITH_ENTRIES
    with app.app_context(), db.engine.connect() as connection:
        # The whole walk in one statement runs longer than the app's statement timeout.
        connection.execute(text("SET statement_timeout = 0"))
        driver = connection.connection.dbapi_connection
        plan = driver.execute(
            f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {query}", parameters
        ).fetchone()[0]
        server = float(plan[0]["Execution Time"]) / 1000
        # Fetched as the walk fetches it: a binary server-side cursor.
        cursor = driver.cursor(name="walk_breakdown", binary=True)
        moment = time.perf_counter()
        cursor.execute(query, parameters)
        while cursor.fetchmany(READ_BATCH):
            pass
        fetch = time.perf_counter() - moment
        connection.rollback()
    return WalkBreakdown(server, fetch)


WALK_LABEL = "chain walk (fetch + re-hash every link; summed over workers)"


@dataclass
class Parts:
    """Seconds spent in each part of ``verify``."""

    seconds: dict[str, float] = field(default_factory=dict)


def timing_parts(parts: Parts) -> Callable[[], None]:
    """Time ``verify``'s parts by wrapping the module functions it calls; return an undo."""
    originals: dict[str, Any] = {}
    names = {
        "_walk": WALK_LABEL,
        "_check_unlinked_seals": "seals of unlinked entries",
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


def run_flask(url: str, *arguments: str) -> CommandRun:
    """``flask <arguments>`` as an operator runs it, with the benchmark's database."""
    environment = dict(os.environ)
    environment["DATABASE_URL"] = url
    # As .flaskenv says, in case the command is not run from the project root.
    environment["FLASK_APP"] = "webapp.cli:create_cli_app()"
    flask = Path(sys.executable).parent / "flask"
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        process = subprocess.Popen(  # noqa: S603 - a fixed command, no shell
            [str(flask), *arguments],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        peak_kib = 0
        while True:
            peak_kib = max(peak_kib, _peak_rss_kib(process.pid))
            pid, status = os.waitpid(process.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(RSS_POLL_SECONDS)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        text = output.read().decode(errors="replace")
    return CommandRun(seconds, process.returncode, text, peak_kib)


def _peak_rss_kib(pid: int) -> int:
    """The process's own peak RSS so far (VmHWM), 0 once it has gone.

    Not ``wait4``'s ru_maxrss: Linux carries the parent's peak into a forked
    child's, so every command would report at least this benchmark's own size.
    VmHWM belongs to the memory map the command's exec created.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


@dataclass
class Export:
    """One ``flask audit export`` run and what it wrote."""

    export_format: str
    run: CommandRun
    entries: int
    size_bytes: int


def run_export(url: str, export_format: str, directory: Path) -> Export:
    """Export every entry to a file; count the entries it holds."""
    target = directory / f"audit.{export_format}"
    run = run_flask(url, "audit", "export", "--format", export_format, "--output", str(target))
    if not target.exists():
        return Export(export_format, run, 0, 0)
    lines = 0
    with target.open("rb") as written:
        for _ in written:
            lines += 1
    entries = lines - 1 if export_format == "csv" else lines  # CSV has a header line
    size = target.stat().st_size
    target.unlink()
    return Export(export_format, run, entries, size)


def write_summary(
    path: Path,
    *,
    machine: list[str],
    entries: int,
    verify: CommandRun,
    exports: list[Export],
    breakdown: WalkBreakdown | None = None,
) -> None:
    """Append the commands' figures to ``path`` as Markdown."""
    lines = [
        f"### Export and verify at {entries:,} entries",
        "",
        f"{machine[0]}; {machine[1].split(' on ')[0]}. Each command is a subprocess, "
        "as an operator runs it; peak RSS is its own (VmHWM).",
        "",
        "| Command | Status | Entries | Seconds | Entries/s | Peak RSS MiB | Target |",
        "|---|---:|---:|---:|---:|---:|---|",
        f"| flask audit verify | {verify.returncode} | {entries:,} | {verify.seconds:.1f} "
        f"| {entries / verify.seconds:,.0f} | {verify.max_rss_kib / 1024:.0f} "
        f"| ≥ {VERIFY_TARGET_PER_SECOND:,}/s: "
        f"{'met' if entries / verify.seconds >= VERIFY_TARGET_PER_SECOND else 'MISSED'} |",
    ]
    for export in exports:
        rss = export.run.max_rss_kib / 1024
        verdict = "met" if rss < EXPORT_RSS_LIMIT_MIB and export.entries == entries else "MISSED"
        lines.append(
            f"| flask audit export --format {export.export_format} | {export.run.returncode} "
            f"| {export.entries:,} | {export.run.seconds:.1f} "
            f"| {export.entries / export.run.seconds:,.0f} | {rss:.0f} "
            f"| RSS < {EXPORT_RSS_LIMIT_MIB} MiB, every entry: {verdict} |"
        )
    if breakdown is not None:
        lines += [
            "",
            f"Where verify's time goes: in-process, one worker, {breakdown.walk_seconds:.1f} s "
            f"walking {entries:,} links; the walk's query alone takes "
            f"{breakdown.server_seconds:.1f} s executing on the server and "
            f"{breakdown.fetch_seconds:.1f} s fetched in full by one connection, so the Python "
            f"loop (seal and link HMACs) takes about "
            f"{max(0.0, breakdown.walk_seconds - breakdown.fetch_seconds):.1f} s.",
        ]
    append_summary(path, [*lines, ""])


def print_profile(profiler: cProfile.Profile, limit: int = 25) -> None:
    """The functions with the most time of their own, then by cumulative time."""
    for order in ("tottime", "cumulative"):
        buffer = io.StringIO()
        pstats.Stats(profiler, stream=buffer).strip_dirs().sort_stats(order).print_stats(limit)
        print(f"--- cProfile of verify, by {order}")
        print(buffer.getvalue().split("\n", 6)[-1].rstrip())  # without the banner lines


# --------------------------------------------------------------------------- main


def run_exports(url: str, entries: int, formats: tuple[str, ...]) -> list[Export]:
    """Run ``flask audit export`` of every entry once per format; print each one's figures."""
    exports: list[Export] = []
    with tempfile.TemporaryDirectory(prefix="profile-audit-export-") as directory:
        for export_format in formats:
            export = run_export(url, export_format, Path(directory))
            exports.append(export)
            print(
                f"flask audit export --format {export_format}: exit status "
                f"{export.run.returncode}, {export.entries:,} entries in "
                f"{export.run.seconds:.1f} s = {export.entries / export.run.seconds:,.0f} "
                f"entries/s, {export.size_bytes / 2**20:,.0f} MiB written, "
                f"peak RSS {export.run.max_rss_kib / 1024:.0f} MiB",
                flush=True,
            )
            if export.run.returncode or export.entries != entries:
                print(export.run.output)
    return exports


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_size_options(parser)
    parser.add_argument(
        "--profile", action="store_true", help="also run verify once under cProfile"
    )
    parser.add_argument(
        "--verify-only",
        action="store_true",
        help="one in-process verify (one worker) and the command; no exports",
    )
    parser.add_argument(
        "--exports-only",
        action="store_true",
        help="the two export commands only; no chain built, no verify",
    )
    parser.add_argument(
        "--encrypted",
        action="store_true",
        help="encrypt the generated entries' personal values first, as the application does",
    )
    add_summary_option(parser)
    args = parser.parse_args(argv)
    check_data_size(parser, args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = start_run(parse_args, argv)
    started = time.perf_counter()
    with database_server(keep=False) as url:
        app = migrated_app(url)
        key = app.config["AUDIT_CHAIN_KEY"].encode()

        seconds = generate_history(url, args)
        if args.encrypted:
            # The run's own master key (use_run_keys), which every command inherits.
            encrypt_history(url, os.environ["PRIVACY_MASTER_KEY"])
        if args.exports_only:
            for line in machine_report(url):
                print(line)
            run_exports(url, args.entries, ("csv", "ndjson"))
            print(f"\nWhole run: {time.perf_counter() - started:.0f} s")
            return 0
        build = build_chain(app, url, key)
        print(
            f"Entries sealed and chain built: {build.head.seq:,} links in {build.seconds:.1f} s "
            f"(hashing {build.hashing_seconds:.1f} s)\n",
            flush=True,
        )
        print("\n".join(machine_report(url)))
        with psycopg.connect(url) as connection:
            sizes = connection.execute(
                "SELECT pg_size_pretty(pg_total_relation_size('audit_chain')), "
                "(SELECT count(*) FROM audit_chain_pending)"
            ).fetchone()
        assert sizes is not None
        print(f"audit_chain with its indexes: {sizes[0]}; pending entries: {sizes[1]}")
        print(f"Load average before verifying: {os.getloadavg()[0]:.2f}\n", flush=True)

        # One worker and two, interleaved, twice: the machine's noise hits both.
        walk_seconds: list[float] = []
        for round_number in (1,) if args.verify_only else (1, 2):
            for workers in (1,) if args.verify_only else (1, 2):
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
                if workers == 1:
                    walk_seconds.append(parts.seconds.get(WALK_LABEL, 0.0))
                for label, part in [*parts.seconds.items(), *rest]:
                    print(f"  {label}: {part:.2f} s")
        breakdown = walk_breakdown(app, build.head.seq)
        breakdown.walk_seconds = min(walk_seconds)
        print(
            f"The walk's query alone, all {build.head.seq:,} links on one connection: "
            f"{breakdown.server_seconds:.1f} s executing on the server (EXPLAIN ANALYZE, "
            "canonical bytes and SHA-256 of every entry included), "
            f"{breakdown.fetch_seconds:.1f} s fetched in full (rows discarded); the rest of "
            "a one-worker walk is the Python loop (seal and link HMACs, comparisons)"
        )
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"  benchmark process peak RSS so far: {own / 1024:.0f} MiB\n", flush=True)

        command = run_flask(url, "audit", "verify")
        print(f"flask audit verify: exit status {command.returncode}, {command.seconds:.1f} s wall")
        print(
            f"  {build.head.seq / command.seconds:,.0f} entries/s, "
            f"peak RSS {command.max_rss_kib / 1024:.0f} MiB"
        )
        for line in command.output.strip().splitlines():
            print(f"  > {line}")
        print(flush=True)

        exports = run_exports(url, build.head.seq, () if args.verify_only else ("csv", "ndjson"))
        print()
        if args.summary:
            write_summary(
                args.summary,
                machine=machine_report(url),
                entries=build.head.seq,
                verify=command,
                exports=exports,
                breakdown=breakdown,
            )

        if args.profile or (seconds > SLOW_SECONDS and not args.verify_only):
            profiler = cProfile.Profile()
            _, profiled, _ = verify_in_process(app, key, 1, profiler)
            print(f"Under cProfile: {profiled:.1f} s")
            print_profile(profiler)
    print(f"\nWhole run: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
