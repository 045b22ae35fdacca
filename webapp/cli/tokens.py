"""``flask token ...``: API tokens for scripts, shown once and stored as a hash."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from webapp.cli.operator_commands import echo_table, operator_command, staff_named, when
from webapp.services import api_tokens

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
    owner = staff_named(username)
    token, secret = api_tokens.create_token(owner, name, expires_in_days=expires_in_days)
    expiry = f"expires {when(token.expires_at)}" if token.expires_at else "never expires"
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
    echo_table(
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
                when(token.created_at, "-"),
                token.created_by_label or "-",
                when(token.expires_at),
                when(token.last_used_at),
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
