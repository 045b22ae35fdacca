"""``flask privacy ...``: erase a profile's personal data, give everything held
about it, and look after the keys that make erasure possible (README, "Privacy")."""

from __future__ import annotations

from flask.cli import AppGroup

privacy_group = AppGroup(
    "privacy",
    help="Erase or export a profile's personal data; rotate the master key; encrypt old entries.",
)
