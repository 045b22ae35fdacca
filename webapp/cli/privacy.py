"""``flask privacy ...``: erase a profile's personal data, give everything held
about it, and look after the keys that make erasure possible (README, "Privacy")."""

from __future__ import annotations

import click
from flask.cli import AppGroup, with_appcontext

from webapp.audit.personal_data import MasterKeyError
from webapp.cli.operator_commands import operator_command
from webapp.services import master_keys, trail_encryption

privacy_group = AppGroup(
    "privacy",
    help="Erase or export a profile's personal data; rotate the master key; encrypt old entries.",
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
