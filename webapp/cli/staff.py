"""``flask staff ...``: who may sign in to the dashboard, and as what."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from webapp.cli.operator_commands import echo_table, operator_command, staff_named, when
from webapp.models import ROLES
from webapp.services import staff as staff_service
from webapp.services.errors import ValidationFailed


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        # Only the first line: a trailing newline from `echo` or a here-string
        # is not part of the password, but leading or inner spaces are.
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
        if not password:
            raise click.ClickException(
                "--password-stdin expects the password on the first line of standard input."
            )
        return staff_service.clean_password(password)
    while True:
        password = str(click.prompt("Password", hide_input=True))
        try:
            staff_service.clean_password(password)
        except ValidationFailed as error:
            # Say why before asking again; the typed value is never echoed.
            click.echo(f"Error: {error.detail}. Try again.", err=True)
            continue
        if str(click.prompt("Repeat the password", hide_input=True)) == password:
            return password
        click.echo("Error: the two passwords differ. Try again.", err=True)


_password_stdin = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of prompting.",
)


# --- flask staff ------------------------------------------------------------

staff_group = AppGroup("staff", help="Manage staff accounts (who may sign in, and as what).")


@staff_group.command("create")
@click.argument("username")
@click.option(
    "--role",
    required=True,
    type=click.Choice(ROLES, case_sensitive=False),
    help="What the account may do.",
)
@_password_stdin
@operator_command
def staff_create(username: str, role: str, password_stdin: bool) -> None:
    """Create an active account USERNAME with ROLE; asks for its password."""
    # Refuse a bad or taken name before asking for a password twice.
    name = staff_service.clean_username(username)
    if staff_service.find_by_username(name) is not None:
        raise click.ClickException(f"The username {name} is already taken.")
    password = _read_password(password_stdin)
    account = staff_service.create_staff(name, password, role)
    click.echo(f"Created the {account.role} account {account.username}.")


@staff_group.command("list")
@operator_command
def staff_list() -> None:
    """Every staff account, sorted by username."""
    accounts = staff_service.list_staff()
    if not accounts:
        click.echo("No staff accounts yet.", err=True)
        return
    echo_table(
        ("USERNAME", "ROLE", "ACTIVE", "CREATED", "LAST SIGN-IN"),
        [
            (
                account.username,
                account.role,
                "yes" if account.active else "no",
                when(account.created_at, "-"),
                when(account.last_login_at),
            )
            for account in accounts
        ],
    )


@staff_group.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES, case_sensitive=False))
@operator_command
def staff_set_role(username: str, role: str) -> None:
    """Give USERNAME the role ROLE."""
    account = staff_named(username)
    if account.role == role:
        click.echo(f"{account.username} already has the role {role}.")
        return
    staff_service.set_role(account.id, role)
    click.echo(f"{account.username} now has the role {role}.")


@staff_group.command("deactivate")
@click.argument("username")
@operator_command
def staff_deactivate(username: str) -> None:
    """Stop USERNAME: its sessions end at once and its API tokens stop working."""
    account = staff_named(username)
    if not account.active:
        click.echo(f"{account.username} was already deactivated.")
        return
    staff_service.deactivate(account.id)
    click.echo(
        f"{account.username} is deactivated: its sessions have ended "
        "and its API tokens no longer work."
    )


@staff_group.command("set-password")
@click.argument("username")
@_password_stdin
@operator_command
def staff_set_password(username: str, password_stdin: bool) -> None:
    """Set a new password for USERNAME; its sessions end at once."""
    account = staff_named(username)
    password = _read_password(password_stdin)
    staff_service.set_password(account.id, password)
    click.echo(f"The password of {account.username} is changed; its sessions have ended.")
