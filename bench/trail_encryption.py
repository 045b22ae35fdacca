"""Benchmark of ``flask privacy encrypt-trail`` on 1,000,000 entries written before encryption.

Fills a throwaway database with the realistic history of
``bench/timeline_queries.py`` (same SQL, same seed: every personal value in
clear, no profile with a data key or an email index), seals and links every
entry as the application did before encryption (``bench/export_verify.py``'s
``build_chain``: sealed entries, links of encoding 2), then:

- runs ``webapp.services.trail_encryption.encrypt_trail`` in-process, as the
  command does (as ``cli:<user>``), timing each of its stages, with the peak
  memory of this process while it runs;
- checks the result with ``audit_integrity.verify`` (chain and seals; the
  time it takes is printed too) and that no clear value is left;
- runs it a second time, which must find nothing to do.

Run from the project root::

    .venv/bin/python -m bench.trail_encryption --entries 1000000

``--summary FILE`` appends the results as Markdown. Without
``BENCH_DATABASE_URL`` an embedded PostgreSQL is started in a temporary
directory and deleted afterwards (also on errors and on SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import psycopg

from bench._common import (
    add_data_size_options,
    add_summary_option,
    append_summary,
    check_data_size,
    database_server,
    generate_history,
    machine_report,
    migrated_app,
    start_run,
)
from bench.export_verify import build_chain
from webapp.cli.operator_commands import acting_from_cli
from webapp.extensions import db
from webapp.services import audit_integrity, trail_encryption

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _reset_peak_rss() -> None:
    # Writing 5 resets the process's peak resident set size (Linux).
    if _CLEAR_REFS.exists():
        _CLEAR_REFS.write_text("5")


def _peak_rss_mib() -> float:
    if not _STATUS.exists():
        return 0.0
    for line in _STATUS.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _rss_mib() -> float:
    if not _STATUS.exists():
        return 0.0
    for line in _STATUS.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_size_options(parser)
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
        generate_history(url, args)
        build = build_chain(app, url, key)
        print(
            f"Entries sealed and linked as before encryption: {build.head.seq:,} links in "
            f"{build.seconds:.1f} s\n",
            flush=True,
        )
        print("\n".join(machine_report(url)))
        load = os.getloadavg()[0]
        print(f"Load average before encrypting: {load:.2f}\n", flush=True)

        rss_before = _rss_mib()
        _reset_peak_rss()
        moment = time.perf_counter()
        with app.app_context(), acting_from_cli():
            result = trail_encryption.encrypt_trail(clock=time.perf_counter)
        seconds = time.perf_counter() - moment
        peak = _peak_rss_mib()
        for line in trail_encryption.describe(result):
            print(line)
        rate = result.entries_encrypted / seconds
        print(
            f"\nencrypt_trail: {seconds:.1f} s, {rate:,.0f} entries encrypted/s "
            f"({result.entries_encrypted:,} entries, {result.links_rewritten:,} links, "
            f"{result.data_keys_made:,} data keys, {result.email_indexes_filled:,} email indexes)"
        )
        print(f"  peak RSS {peak:.0f} MiB (from {rss_before:.0f} MiB before the run)")
        for stage, stage_seconds in result.seconds.items():
            print(f"  {stage}: {stage_seconds:.1f} s")

        moment = time.perf_counter()
        with app.app_context():
            verification = audit_integrity.verify(db.engine, key, workers=2)
        verify_seconds = time.perf_counter() - moment
        whole = verification.problem is None and verification.forged_entries == 0
        print(
            f"\nverify() afterwards, 2 workers: {verify_seconds:.1f} s, chain and seals "
            f"{'OK' if whole else 'FAILED'}: {verification.entries_checked:,} entries, "
            f"problem {verification.problem}, forged {verification.forged_entries}"
        )
        with psycopg.connect(url) as connection:
            clear = connection.execute(
                "SELECT count(*) FROM user_audit WHERE "
                "jsonb_typeof(new_data -> 'name') = 'string' "
                "OR jsonb_typeof(previous_data -> 'name') = 'string' "
                "OR jsonb_typeof(new_data -> 'email') = 'string' "
                "OR jsonb_typeof(previous_data -> 'email') = 'string'"
            ).fetchone()
        print(f"entries still holding a clear value: {clear[0] if clear else '?'}")

        moment = time.perf_counter()
        with app.app_context(), acting_from_cli():
            again = trail_encryption.encrypt_trail()
        again_seconds = time.perf_counter() - moment
        print(
            f"second run: {again_seconds:.2f} s, "
            f"{'nothing to do' if not again.did_anything else 'DID SOMETHING'}"
        )
        print(f"\nWhole run: {time.perf_counter() - started:.0f} s")
        append_summary(
            args.summary,
            [
                "",
                "### `flask privacy encrypt-trail`",
                "",
                "| Entries | Duration | Entries/s | Peak RSS | verify afterwards | Second run |",
                "|---:|---:|---:|---:|---|---:|",
                f"| {result.entries_encrypted:,} | {seconds:.1f} s | {rate:,.0f} | "
                f"{peak:.0f} MiB | {'OK' if whole else 'FAILED'} ({verify_seconds:.1f} s) | "
                f"{again_seconds:.2f} s |",
            ],
        )
    return 0 if whole and not again.did_anything else 1


if __name__ == "__main__":
    raise SystemExit(main())
