"""``flask`` commands for operators: staff accounts, API tokens, figures.

Every command acts as ``cli:<operating-system user>``: security events and any
profile change it causes name that actor and the ``cli`` channel, just as the
dashboard and the API name the signed-in account.
"""

from __future__ import annotations

import functools
import os
import pwd
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import ParamSpec, TypeVar

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from webapp.audit.context import Actor, Origin, acting_as
from webapp.extensions import db
from webapp.models import ROLES, Staff, User, UserAudit
from webapp.services import api_tokens
from webapp.services import staff as staff_service
from webapp.services.errors import ServiceError, ValidationFailed
from webapp.timestamps import UTC

P = ParamSpec("P")
R = TypeVar("R")

# Leaves room for the "cli:" prefix in the 100-character actor label column.
_OS_USER_MAX = 90


def os_user() -> str:
    """The operating-system user the command runs as: its effective uid's name, or the uid.

    Never ``$USER`` or ``$LOGNAME``: anyone can set those to any name (``USER=alice
    flask ...``), and under ``sudo`` they name who called it, not who acts.
    """
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        # Containers often run a uid with no passwd entry.
        name = ""
    return (name or str(uid))[:_OS_USER_MAX]


@contextmanager
def acting_from_cli() -> Iterator[Actor]:
    """Attribute everything done inside the block to ``cli:<os user>``."""
    user = os_user()
    actor = Actor(staff_id=None, label=f"cli:{user}", channel_detail=user)
    with acting_as(actor, Origin(channel="cli")):
        yield actor


def operator_command(command: Callable[P, R]) -> Callable[P, R]:
    """Run ``command`` as the CLI actor; refusals become one-line errors, not tracebacks."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with acting_from_cli():
            try:
                return command(*args, **kwargs)
            except ServiceError as error:
                db.session.rollback()
                raise click.ClickException(error.detail) from None
            except OperationalError as error:
                db.session.rollback()
                reason = str(error.orig or error).strip().splitlines()[0]
                raise click.ClickException(
                    f"Cannot use the database in DATABASE_URL: {reason}"
                ) from None

    return run


# --- output helpers ---------------------------------------------------------


def _when(value: datetime | None, missing: str = "never") -> str:
    # Whole seconds keep the columns narrow; the API has the precise values.
    if value is None:
        return missing
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _echo_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(line[i]) for line in (headers, *rows)) for i in range(len(headers))]
    for line in (headers, *rows):
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        click.echo("  ".join(cells).rstrip())


def _staff_named(username: str) -> Staff:
    account = staff_service.find_by_username(username)
    if account is None:
        raise click.ClickException(f"There is no staff account named {username.strip()!r}.")
    return account


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
    _echo_table(
        ("USERNAME", "ROLE", "ACTIVE", "CREATED", "LAST SIGN-IN"),
        [
            (
                account.username,
                account.role,
                "yes" if account.active else "no",
                _when(account.created_at, "-"),
                _when(account.last_login_at),
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
    account = _staff_named(username)
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
    account = _staff_named(username)
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
    account = _staff_named(username)
    password = _read_password(password_stdin)
    staff_service.set_password(account.id, password)
    click.echo(f"The password of {account.username} is changed; its sessions have ended.")


# --- flask token ------------------------------------------------------------

token_group = AppGroup("token", help="Manage API tokens for scripts.")


@token_group.command("create")
@click.argument("username")
@click.option("--name", required=True, help="What the token is for, e.g. the script's name.")
@click.option(
    "--expires-in-days",
    type=int,
    default=None,
    help=f"Stop working after this many days (1 to {api_tokens.MAX_EXPIRY_DAYS}; default: never).",
)
@operator_command
def token_create(username: str, name: str, expires_in_days: int | None) -> None:
    """Create an API token acting as USERNAME and print it.

    Only the token goes to standard output, so TOKEN=$(flask token create ...)
    captures it; everything else goes to standard error.
    """
    owner = _staff_named(username)
    token, secret = api_tokens.create_token(owner, name, expires_in_days=expires_in_days)
    expiry = f"expires {_when(token.expires_at)}" if token.expires_at else "never expires"
    click.echo(
        f"API token {token.id} ({token.name}) acting as {owner.username} ({owner.role}), "
        f"{expiry}.\nIt is shown only now and stored only as a hash: keep it safe. "
        "Send it as the header  Authorization: Bearer <token>",
        err=True,
    )
    click.echo(secret)


@token_group.command("list")
@operator_command
def token_list() -> None:
    """Every API token with its status (never the token itself)."""
    tokens = api_tokens.list_tokens()
    if not tokens:
        click.echo("No API tokens yet.", err=True)
        return
    _echo_table(
        (
            "ID",
            "OWNER",
            "NAME",
            "PREFIX",
            "STATUS",
            "CREATED",
            "CREATED BY",
            "EXPIRES",
            "LAST USED",
        ),
        [
            (
                str(token.id),
                token.staff.username,
                token.name,
                f"{token.prefix}…",
                api_tokens.token_status(token),
                _when(token.created_at, "-"),
                token.created_by_label or "-",
                _when(token.expires_at),
                _when(token.last_used_at),
            )
            for token in tokens
        ],
    )


@token_group.command("revoke")
@click.argument("token_id", type=int)
@operator_command
def token_revoke(token_id: int) -> None:
    """Revoke the API token TOKEN_ID (see `flask token list`); it stops working at once."""
    token = api_tokens.get_token(token_id)
    already = token.revoked_at is not None
    api_tokens.revoke_token(token_id)
    described = f"Token {token.id} ({token.name}, {token.prefix}…) of {token.staff.username}"
    click.echo(f"{described} was already revoked." if already else f"{described} is revoked.")


# --- flask stats ------------------------------------------------------------


@click.command("stats")
@with_appcontext
@operator_command
def stats_command() -> None:
    """Print how many profiles and audit entries the database holds."""
    users = db.session.scalar(select(func.count()).select_from(User))
    active = db.session.scalar(
        select(func.count()).select_from(User).where(User.deleted_at.is_(None))
    )
    entries = db.session.scalar(select(func.count()).select_from(UserAudit))
    click.echo(f"profiles: {users} ({active} active)\naudit entries: {entries}")


def create_cli_app() -> Flask:
    """The application for ``flask`` commands (``FLASK_APP`` in ``.flaskenv``).

    Without a database, or with settings production refuses (a weak key),
    there is nothing a command can do: say so in one line instead of a
    traceback from deep inside the app factory.
    """
    from webapp import create_app
    from webapp.config import settings_from_environment

    if not settings_from_environment()["SQLALCHEMY_DATABASE_URI"]:
        raise click.ClickException(
            "DATABASE_URL is not set. With `make run` serving, export the DATABASE_URL "
            "it prints; otherwise set DATABASE_URL=postgresql://user:password@host/dbname."
        )
    try:
        return create_app()
    except RuntimeError as refused:  # the settings check names the setting, never its value
        raise click.ClickException(str(refused)) from None


def init_app(app: Flask) -> None:
    """Register the command groups on ``app.cli``."""
    app.cli.add_command(stats_command)
    app.cli.add_command(staff_group)
    app.cli.add_command(token_group)

    from webapp.audit_commands import audit_group
    from webapp.demo_commands import demo_group

    app.cli.add_command(audit_group)
    app.cli.add_command(demo_group)
