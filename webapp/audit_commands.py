"""``flask audit ...``: prove the audit trail is whole, from a shell or a scheduler.

``verify`` exits 0 only when everything checks out, 1 when it finds a problem
(named on standard error), so a cron job or CI step can alert on it. The
progress bar appears on a terminal only; pipes and logs get the result line.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from flask.cli import AppGroup, with_appcontext

from webapp.audit.context import current_actor
from webapp.cli import operator_command
from webapp.extensions import db
from webapp.services import audit_integrity
from webapp.services.audit_integrity import Checkpoint

audit_group = AppGroup("audit", help="Verify the audit trail's hash chain; checkpoints.")


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
    if sys.stderr.isatty():
        total = audit_integrity.chain_length(db.session.connection())
        db.session.rollback()
        with click.progressbar(length=total, label="Verifying", file=sys.stderr) as bar:
            result = audit_integrity.verify(
                db.engine, key, checkpoint=checkpoint, progress=bar.update, workers=jobs
            )
    else:
        result = audit_integrity.verify(db.engine, key, checkpoint=checkpoint, workers=jobs)
    actor = current_actor()
    audit_integrity.record(result, verified_by=actor.label if actor else "cli")
    seconds = (result.finished_at - result.started_at).total_seconds()  # type: ignore[operator]
    summary = audit_integrity.describe(result)
    details = f"{result.pending_entries} entries waiting to be sealed; {seconds:.1f} s"
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
    """Seal into the chain the entries the database's safety net wrote.

    The application does this on every save; run it after a migration that
    queued existing entries, or when nothing has been saved since a raw write.
    """
    sealed = audit_integrity.seal_pending(_chain_key())
    click.echo(f"{sealed} entries sealed into the chain.")


def _read_checkpoint(path: Path) -> Checkpoint:
    try:
        return Checkpoint.from_json(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise click.ClickException(f"Cannot read {path}: {error.strerror}") from None
    except ValueError as error:
        raise click.ClickException(f"{path} is {error}") from None
