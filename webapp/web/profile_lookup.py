"""Compare and as-of take a profile as typed: an id, or part of a name or email.

What was typed is resolved here, before the services (which take ids), so a
search that matches several profiles lets the reader choose one, and one
that matches none says so beside the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from webapp.models import User
from webapp.services.errors import ValidationFailed
from webapp.services.users import list_users

#: more matching profiles than this are not all listed
CHOICES_MAX = 20


@dataclass(frozen=True)
class ProfileLookup:
    """What the profile field held, and what it names."""

    #: an id for the services: as typed, or the one profile the text matched
    user_id: str | None
    #: the text searched for, when it was not an id
    search: str | None = None
    #: the profiles the text matched, when not exactly one
    choices: Sequence[User] = ()
    truncated: bool = False
    errors: list[str] = field(default_factory=list)


def look_up_profile(raw: str | None) -> ProfileLookup:
    """Resolve the profile field: digits are an id; other text is searched for
    in names and emails (deleted profiles included) and must match one."""
    text = (raw or "").strip()
    if not text or (text.isascii() and text.isdigit()) or text.startswith("-"):
        return ProfileLookup(user_id=raw)
    try:
        page = list_users(query=text, include_deleted=True, limit=CHOICES_MAX)
    except ValidationFailed as error:
        messages = [message for found in error.errors.values() for message in found]
        return ProfileLookup(user_id=None, search=text, errors=messages or [error.detail])
    if len(page.items) == 1:
        return ProfileLookup(user_id=str(page.items[0].id), search=text)
    if not page.items:
        return ProfileLookup(
            user_id=None, search=text, errors=[f"matches no profile's name or email: “{text}”"]
        )
    return ProfileLookup(
        user_id=None, search=text, choices=page.items, truncated=page.next_cursor is not None
    )
