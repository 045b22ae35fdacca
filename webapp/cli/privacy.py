"""``flask privacy ...``: erase a profile's personal data, give everything held
about it, and look after the keys that make erasure possible (README, "Privacy")."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import click
from flask.cli import AppGroup, with_appcontext

from webapp.audit.personal_data import MasterKeyError
from webapp.cli.operator_commands import operator_command
from webapp.services import master_keys, privacy, trail_encryption
from webapp.typed_text import MAX_BIGINT

privacy_group = AppGroup(
    "privacy",
    help="Erase or export a profile's personal data; rotate the master key; encrypt old entries.",
)


# --- flask privacy erase / export -------------------------------------------------


@privacy_group.command("erase")
@click.argument("user_id", type=click.IntRange(1, MAX_BIGINT))
@click.option(
    "--reason",
    required=True,
    help="Why: the request or legal ground, kept on the profile's `erase` entry.",
)
@with_appcontext
@operator_command
def erase_command(user_id: int, reason: str) -> None:
    """Erase profile USER_ID's personal data, for good.

    Its data key is destroyed, so every name and email its history holds reads
    [erased] from now on; the profile is anonymised and deleted, and an `erase`
    entry records who, when and why. The entries stay and `flask audit verify`
    still passes. Refused (status 1, nothing changed) when the profile does not
    exist or is already erased.
    """
    user = privacy.erase_user(user_id, reason=reason)
    click.echo(
        f"Profile {user.id} erased: its data key is destroyed, its history shows "
        f"[erased], the profile is now {user.name!r} <{user.email}>."
    )


@privacy_group.command("export")
@click.argument("user_id", type=click.IntRange(1, MAX_BIGINT))
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the document to this file instead of standard output.",
)
@with_appcontext
@operator_command
def export_command(user_id: int, output: Path | None) -> None:
    """Print everything held about profile USER_ID as one JSON document.

    The profile as stored, the state of its data key and every audit entry of
    it, oldest first, personal values decrypted (a subject access request).
    Each export is kept as a `personal_data_exported` security event.
    """
    if output is None:
        document = privacy.personal_data(user_id)
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    # The file is opened before the data is read: an export that cannot be
    # written is refused before it is recorded as an access. Written beside
    # the target and renamed when complete, readable by its owner only.
    try:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, renamed or removed
            "w",
            encoding="utf-8",
            dir=output.parent,
            prefix=f".{output.name}.",
            suffix=".part",
            delete=False,
        )
    except OSError as error:
        raise click.ClickException(f"Cannot write to {output.parent}: {error.strerror}") from None
    temporary = Path(handle.name)
    try:
        with handle:
            document = privacy.personal_data(user_id)
            json.dump(document, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
        os.replace(temporary, output)
    except OSError as error:
        raise click.ClickException(f"Cannot write {output}: {error.strerror}") from None
    finally:
        temporary.unlink(missing_ok=True)
    entries = len(document["history"])
    click.echo(
        f"Personal data of profile {user_id} ({entries} entries) written to {output}.", err=True
    )


# --- keys and migration: flask privacy rotate-master-key / encrypt-trail ------------


@privacy_group.command("rotate-master-key")
@with_appcontext
@operator_command
def rotate_master_key_command() -> None:
    """Re-wrap every profile's data key under the current master key.

    \b
    To rotate the master key:
    1. In every process (web, workers, commands), set
       PRIVACY_PREVIOUS_MASTER_KEY to the current key and PRIVACY_MASTER_KEY
       to a new random one, and restart them: both keys are read meanwhile.
    2. Run this command. It re-wraps, in short transactions, every data key
       not yet wrapped by the new key; entries are not touched. Run it again
       whenever in doubt: keys already re-wrapped are skipped.
    3. Remove PRIVACY_PREVIOUS_MASTER_KEY everywhere and destroy the old key
       (backups of profile_data_keys taken before step 2 need the old key).

    Recorded as the security event master_key_rotated.
    """
    try:
        rotation = master_keys.rotate_master_key()
    except MasterKeyError as error:
        raise click.ClickException(str(error)) from None
    if not rotation.rewrapped_total:
        click.echo(
            f"Nothing to re-wrap: all {rotation.already_current} data keys are wrapped by "
            f"master key {rotation.current_key_id} (PRIVACY_MASTER_KEY)"
            f"{f'; {rotation.erased} erased' if rotation.erased else ''}."
        )
        return
    sources = ", ".join(f"{count} from {key_id}" for key_id, count in rotation.rewrapped.items())
    click.echo(
        f"{rotation.rewrapped_total} data keys re-wrapped under master key "
        f"{rotation.current_key_id} ({sources}) in {rotation.batches} batches; "
        f"{rotation.already_current} were already; {rotation.erased} erased."
    )
    click.echo("Once every process runs with the new key, remove PRIVACY_PREVIOUS_MASTER_KEY.")


@privacy_group.command("encrypt-trail")
@with_appcontext
@operator_command
def encrypt_trail_command() -> None:
    """Encrypt the personal values of entries written before encryption.

    Verifies the chain first and refuses a trail that does not verify; then,
    in one transaction, gives every profile a data key and an email index,
    encrypts every clear value, seals again the entries that had a seal and
    re-links the chain under AUDIT_CHAIN_KEY, recorded as the security event
    audit_trail_encrypted. Writers of entries wait while it runs; run it as
    the owner of the tables. A second run finds nothing to do. Earlier
    checkpoints no longer match afterwards: save a new one.
    """
    result = trail_encryption.encrypt_trail()
    for line in trail_encryption.describe(result):
        click.echo(line)
