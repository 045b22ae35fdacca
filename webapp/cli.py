"""``flask`` commands for operators."""

from __future__ import annotations

import click
from flask import Flask
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import User, UserAudit


@click.command("stats")
def stats_command() -> None:
    """Print how many profiles and audit entries the database holds."""
    users = db.session.scalar(select(func.count()).select_from(User))
    active = db.session.scalar(
        select(func.count()).select_from(User).where(User.deleted_at.is_(None))
    )
    entries = db.session.scalar(select(func.count()).select_from(UserAudit))
    click.echo(f"profiles: {users} ({active} active)\naudit entries: {entries}")


def init_app(app: Flask) -> None:
    app.cli.add_command(stats_command)
