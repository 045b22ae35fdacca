"""``flask stats``: how much the database holds."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import func, select

from webapp.cli.operator_commands import operator_command
from webapp.extensions import db
from webapp.models import User, UserAudit

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
