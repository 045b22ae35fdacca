"""``flask`` commands for operators, one module per group: staff accounts,
API tokens, the audit trail, personal data, demo data, figures.

Every command acts as ``cli:<operating-system user>`` (``operator_commands``).
"""

from __future__ import annotations

import click
from flask import Flask

from webapp.cli.audit import audit_group
from webapp.cli.demo import demo_group
from webapp.cli.privacy import privacy_group
from webapp.cli.staff import staff_group
from webapp.cli.stats import stats_command
from webapp.cli.tokens import token_group


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
    app.cli.add_command(audit_group)
    app.cli.add_command(demo_group)
    app.cli.add_command(privacy_group)
