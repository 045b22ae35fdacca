"""Run every benchmark, one after the other, and print one table of their figures.

This is what ``make bench`` runs. Each benchmark is a module of its own (see
bench/README.md), run as ``python -m bench.<module>``, that starts and stops
its own embedded PostgreSQL; they run one at a time so that none measures
another's load. Each appends its results as Markdown to a summary file,
printed at the end (and written to ``--output`` when given). Their full
output goes to the terminal as they run.

Benchmarks print figures; they never fail on speed. The exit status is
non-zero only when a benchmark itself failed (crashed, or could not start).

    .venv/bin/python -m bench.run            # everything, about an hour
    .venv/bin/python -m bench.run --quick    # small sizes, a few minutes
    .venv/bin/python -m bench.run --only timeline-1m export
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Benchmark:
    """One benchmark module and its arguments, full size and quick."""

    name: str
    module: str
    arguments: tuple[str, ...]
    quick_arguments: tuple[str, ...]


BENCHMARKS = (
    Benchmark("write-overhead", "write_overhead", (), ("--quick",)),
    Benchmark("write-scaling", "write_scaling", (), ("--quick",)),
    Benchmark("personal-data-cost", "personal_data_cost", (), ("--quick",)),
    Benchmark("http", "http_load", (), ("--quick",)),
    Benchmark(
        "timeline-1m",
        "timeline_queries",
        ("--entries", "1000000", "--users", "100000"),
        ("--entries", "100000", "--users", "10000", "--runs", "20", "--depth", "100"),
    ),
    Benchmark(
        "timeline-10m",
        "timeline_queries",
        ("--entries", "10000000", "--users", "1000000", "--depth", "1000"),
        ("--entries", "200000", "--users", "20000", "--runs", "20", "--depth", "100"),
    ),
    Benchmark(
        "export",
        "export_verify",
        ("--entries", "1000000", "--users", "100000", "--encrypted"),
        ("--entries", "50000", "--users", "5000", "--encrypted"),
    ),
    Benchmark(
        "trail-encryption",
        "trail_encryption",
        ("--entries", "1000000", "--users", "100000"),
        ("--entries", "20000", "--users", "2000"),
    ),
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[benchmark.name for benchmark in BENCHMARKS],
        help="run only these benchmarks",
    )
    parser.add_argument("--output", type=Path, help="also write the summary to this file")
    return parser.parse_args(argv)


def run(benchmark: Benchmark, summary: Path, *, quick: bool) -> tuple[int, float]:
    """Run one benchmark to the end; its exit status and seconds."""
    arguments = benchmark.quick_arguments if quick else benchmark.arguments
    module = f"bench.{benchmark.module}"
    command = [sys.executable, "-m", module, *arguments, "--summary", str(summary)]
    print(f"\n===== {benchmark.name}: {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT)  # noqa: S603 - our own modules
    try:
        status = process.wait()
    except KeyboardInterrupt:
        # Each script stops its own servers on SIGTERM; give it the time to.
        process.terminate()
        process.wait(timeout=60)
        raise
    return status, time.perf_counter() - started


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    chosen = [b for b in BENCHMARKS if args.only is None or b.name in args.only]
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="profile-audit-bench-summary-") as directory:
        summary = Path(directory) / "summary.md"
        summary.write_text(
            f"## Benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
            f"{' (quick sizes)' if args.quick else ''}\n\n"
            f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}; load average "
            f"{os.getloadavg()[0]:.2f} at the start.\n\n",
            encoding="utf-8",
        )
        timings: list[str] = []
        for benchmark in chosen:
            status, seconds = run(benchmark, summary, quick=args.quick)
            timings.append(f"{benchmark.name} {seconds:.0f} s")
            if status != 0:
                failed.append(benchmark.name)
                with summary.open("a", encoding="utf-8") as file:
                    file.write(f"### {benchmark.name}: FAILED (exit status {status})\n\n")
        with summary.open("a", encoding="utf-8") as file:
            file.write(f"Run times: {', '.join(timings)}.\n")
        text = summary.read_text(encoding="utf-8")
    print("\n" + "=" * 79 + "\n")
    print(text)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    if failed:
        print(f"Failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
