"""How every operator's command runs: as ``cli:<operating-system user>``,
refusals as one-line errors, and its tables and times printed alike.

Security events and any profile change a command causes name that actor and
the ``cli`` channel, just as the dashboard and the API name the signed-in account.
"""

from __future__ import annotations

import functools
import os
import pwd
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import ParamSpec, TypeVar

import click
from flask import current_app
from sqlalchemy.exc import OperationalError

from webapp.audit.context import Actor, Origin, acting_as
from webapp.extensions import db
from webapp.models import Staff
from webapp.services import staff as staff_service
from webapp.services.errors import ServiceError
from webapp.services.master_keys import MasterKeysRefused, refuse_wrong_master_keys
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
    """Run ``command`` as the CLI actor; refusals become one-line errors, not tracebacks.

    Master keys that do not open the database's data keys refuse every
    command before it starts (``master_keys.refuse_wrong_master_keys``).
    """

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with acting_from_cli():
            try:
                refuse_wrong_master_keys(current_app)
                return command(*args, **kwargs)
            except MasterKeysRefused as refused:
                raise click.ClickException(str(refused)) from None
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


# --- output ------------------------------------------------------------------


def when(value: datetime | None, missing: str = "never") -> str:
    # Whole seconds keep the columns narrow; the API has the precise values.
    if value is None:
        return missing
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(line[i]) for line in (headers, *rows)) for i in range(len(headers))]
    for line in (headers, *rows):
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        click.echo("  ".join(cells).rstrip())


def staff_named(username: str) -> Staff:
    account = staff_service.find_by_username(username)
    if account is None:
        raise click.ClickException(f"There is no staff account named {username.strip()!r}.")
    return account
