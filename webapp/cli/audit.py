"""``flask audit ...``: prove the audit trail is whole, export it, from a shell or a scheduler.

``verify`` exits 0 only when everything checks out, 1 when it finds a problem
(named on standard error), so a cron job or CI step can alert on it. The
progress bar appears on a terminal only; pipes and logs get the result line.
``export`` writes the same rows as the timeline's CSV/NDJSON downloads.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import func, select

from webapp.audit.context import current_actor
from webapp.cli.operator_commands import operator_command
from webapp.extensions import db
from webapp.services import audit_export, audit_integrity
from webapp.services.audit_filter import FILTER_PARAMETERS, AuditFilter, Kind, parse_audit_filter
from webapp.services.audit_integrity import Checkpoint
from webapp.services.audit_log import filtered_statement
from webapp.services.errors import ValidationFailed

audit_group = AppGroup(
    "audit", help="Verify the audit trail's hash chain; checkpoints; export entries."
)


def _chain_key() -> bytes:
    return db.session().audit_chain_key


@audit_group.command("verify")
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A file written by `flask audit checkpoint`: also prove that nothing up to it "
    "was removed or rewritten.",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 16),
    default=min(4, os.cpu_count() or 1),
    show_default="number of CPUs, at most 4",
    help="Walk this many ranges of the chain at once, each on its own connection.",
)
@with_appcontext
@operator_command
def verify_command(checkpoint_file: Path | None, jobs: int) -> None:
    """Walk the hash chain and compare every profile with its latest entry.

    Exits with status 1 and names the first bad entry if anything is wrong.
    """
    checkpoint = _read_checkpoint(checkpoint_file) if checkpoint_file else None
    key = _chain_key()
    max_link_delay = timedelta(seconds=current_app.config["AUDIT_MAX_LINK_DELAY_SECONDS"])
    if sys.stderr.isatty():
        total = audit_integrity.chain_length(db.session.connection())
        db.session.rollback()
        with click.progressbar(length=total, label="Verifying", file=sys.stderr) as bar:
            result = audit_integrity.verify(
                db.engine,
                key,
                checkpoint=checkpoint,
                max_link_delay=max_link_delay,
                progress=bar.update,
                workers=jobs,
            )
    else:
        result = audit_integrity.verify(
            db.engine, key, checkpoint=checkpoint, max_link_delay=max_link_delay, workers=jobs
        )
    actor = current_actor()
    audit_integrity.record(result, verified_by=actor.label if actor else "cli")
    seconds = (result.finished_at - result.started_at).total_seconds()  # type: ignore[operator]
    summary = audit_integrity.describe(result)
    waiting = (
        f", the oldest for {result.oldest_unlinked_seconds:.1f} s"
        if result.oldest_unlinked_seconds is not None
        else ""
    )
    details = f"{result.pending_entries} entries waiting for their link{waiting}; {seconds:.1f} s"
    if result.ok:
        click.echo(f"{summary} ({details})")
        click.echo(f"head: link {result.head.seq}, hash {result.head.hash.hex()}")
        return
    click.echo(f"{summary} ({details})", err=True)
    sys.exit(1)


@audit_group.command("checkpoint")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the checkpoint to this file instead of standard output.",
)
@with_appcontext
@operator_command
def checkpoint_command(output: Path | None) -> None:
    """Print the chain's head (link number and hash) as JSON.

    Keep it somewhere the database's administrators cannot write; `flask audit
    verify --checkpoint FILE` then detects removal of any entry up to it.
    """
    checkpoint = audit_integrity.current_checkpoint(db.session.connection())
    db.session.rollback()
    if output is None:
        click.echo(checkpoint.to_json())
    else:
        output.write_text(checkpoint.to_json() + "\n", encoding="utf-8")
        click.echo(f"Checkpoint at link {checkpoint.seq} written to {output}.", err=True)


@audit_group.command("seal")
@with_appcontext
@operator_command
def seal_command() -> None:
    """Link every entry waiting for its link into the hash chain.

    The app's sealer does this within a second of every save; run it on a
    schedule where no web process runs (commands only), or after a migration
    that queued existing entries.
    """
    linked = audit_integrity.link_pending(_chain_key())
    click.echo(f"{linked} entries linked into the chain.")


def _read_checkpoint(path: Path) -> Checkpoint:
    try:
        return Checkpoint.from_json(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise click.ClickException(f"Cannot read {path}: {error.strerror}") from None
    except ValueError as error:
        raise click.ClickException(f"{path} is {error}") from None


# --- flask audit export -------------------------------------------------------

_FORMATS: dict[str, Callable[..., Iterator[bytes]]] = {
    "csv": audit_export.csv_lines,
    "ndjson": audit_export.ndjson_lines,
}


class BadFilter(click.ClickException):
    """A filter value the timeline would refuse too: a usage error (status 2), in one line."""

    exit_code = 2


def _filter_options(command: Callable[..., None]) -> Callable[..., None]:
    """The timeline's filter parameters as options, ``--user-id`` for ``user_id``."""
    for parameter in reversed(FILTER_PARAMETERS):
        flag = "--" + parameter.name.replace("_", "-")
        if parameter.kind is Kind.FLAG:
            option = click.option(flag, parameter.name, is_flag=True, help=parameter.help)
        else:
            option = click.option(
                flag, parameter.name, multiple=parameter.repeatable, help=parameter.help
            )
        command = option(command)
    return command


def _export_filter(options: dict[str, str | tuple[str, ...] | bool | None]) -> AuditFilter:
    """The filter of the options, read by the same parser as the timeline's query string."""
    args: dict[str, list[str]] = {}
    for name, value in options.items():
        if isinstance(value, tuple):
            args[name] = list(value)
        elif isinstance(value, bool):
            args[name] = ["true"] if value else []
        else:
            args[name] = [value] if value is not None else []
    try:
        return parse_audit_filter(args)
    except ValidationFailed as error:
        # The parser names query-string parameters; say which option was wrong.
        problems = "; ".join(
            f"--{name.replace('_', '-')} {messages[0]}" for name, messages in error.errors.items()
        )
        raise BadFilter(problems or error.detail) from None


class _ExportCount:
    """Entries written so far, told chunk by chunk; moves the progress bar if there is one."""

    def __init__(self, progress: Callable[[int], None] | None) -> None:
        self.entries = 0
        self._progress = progress

    def __call__(self, entries: int) -> None:
        self.entries += entries
        if self._progress is not None:
            self._progress(entries)


def _write_chunks(chunks: Iterator[bytes], stream: BinaryIO) -> None:
    """Write the export's UTF-8 chunks as they come, as the web export sends them."""
    for chunk in chunks:
        stream.write(chunk)


@audit_group.command("export")
@click.option(
    "--format",
    "export_format",
    type=click.Choice(tuple(_FORMATS), case_sensitive=False),
    default="csv",
    show_default=True,
    help="CSV (as the timeline's download) or one JSON object per line (as the API).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(writable=True, path_type=Path),
    help="Write to this file instead of standard output; it appears only when complete. "
    "A directory: into a file there named after the filter "
    "(audit_user-42_update_2026-11-01_2026-11-30.csv).",
)
@click.option(
    "--long",
    "long_form",
    is_flag=True,
    help="CSV with one row per changed field (entry, field, before, after).",
)
@click.option("--excel", is_flag=True, help="CSV with a byte order mark, so Excel reads UTF-8.")
@_filter_options
@with_appcontext
@operator_command
def export_command(
    export_format: str,
    output: Path | None,
    long_form: bool,
    excel: bool,
    **filter_options: str | tuple[str, ...] | bool | None,
) -> None:
    """Write the audit entries matching the filters, newest first, as the timeline exports them.

    Filters mean what they mean on the timeline and in the API. Entries are
    read in batches, so any number of them takes little memory. A bad filter
    is refused (status 2) before anything is written.
    """
    audit_filter = _export_filter(filter_options)
    kind = export_format.lower()
    if kind != "csv" and (long_form or excel):
        raise BadFilter("--long and --excel are forms of CSV: leave out --format ndjson")
    if output is not None and output.is_dir():
        form = "-".join(part for part, wanted in (("long", long_form), ("excel", excel)) if wanted)
        output = output / audit_export.export_filename(audit_filter, kind, form=form)
    # One snapshot for the count and every batch: the progress bar's total and
    # the rows agree, and entries saved meanwhile do not turn up halfway through.
    db.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    chunks: Iterator[bytes] = iter(())
    try:
        with _export_progress(audit_filter) as progress:
            count = _ExportCount(progress)
            lines = audit_export.long_csv_lines if long_form else _FORMATS[kind]
            chunks = lines(audit_filter, on_entries=count)
            if excel:
                chunks = audit_export.for_excel(chunks)
            if output is None:
                _write_stdout(chunks)
                return
            _write_file(output, chunks)
    finally:
        # A write that failed (disk full, a closed pipe) leaves the export's COPY
        # open on the connection, which the rollback would wait for forever.
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        db.session.rollback()
    what = "rows" if long_form else "entries"
    click.echo(f"{count.entries} {what} written to {output}.", err=True)


def _write_stdout(chunks: Iterator[bytes]) -> None:
    # Bytes, not text: the export is UTF-8 whatever the locale, as over HTTP.
    sys.stdout.flush()
    stream = sys.stdout.buffer
    try:
        _write_chunks(chunks, stream)
        stream.flush()
    except BrokenPipeError:
        # The reader stopped early (`| head`): stop quietly, as other tools do.
        _silence_stdout()
        sys.exit(1)


@contextmanager
def _export_progress(audit_filter: AuditFilter) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on a terminal (after counting the entries); None in pipes and logs."""
    if not sys.stderr.isatty():
        yield None
        return
    total = db.session.scalar(
        select(func.count()).select_from(filtered_statement(audit_filter).subquery())
    )
    with click.progressbar(length=total or 0, label="Exporting", file=sys.stderr) as bar:
        yield bar.update


def _write_file(output: Path, chunks: Iterator[bytes]) -> None:
    """Write to a temporary file beside ``output`` and rename it when complete, so a
    failure halfway (database gone, disk full) never leaves a truncated export."""
    directory = output.parent
    try:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, renamed or removed
            dir=directory, prefix=f".{output.name}.", suffix=".part", delete=False
        )
    except OSError as error:
        raise click.ClickException(f"Cannot write to {directory}: {error.strerror}") from None
    temporary = Path(handle.name)
    try:
        with handle:
            _write_chunks(chunks, handle)
        os.replace(temporary, output)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise click.ClickException(f"Cannot write {output}: {error.strerror}") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _silence_stdout() -> None:
    """Point standard output at /dev/null so the interpreter's final flush
    does not report the broken pipe a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real descriptor (e.g. under a test runner)
        pass
