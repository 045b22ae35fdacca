"""Whole numbers and yes/no flags typed as text: query strings, forms, the environment.

Each is read one way everywhere, with its bounds named by the caller, so an
id, a page size and a number of days differ only in their limits. Neither
function raises: a caller says in its own words what it wanted.
"""

from __future__ import annotations

#: the largest value of a PostgreSQL ``bigint`` (every id column)
MAX_BIGINT = 2**63 - 1
#: the largest value of a PostgreSQL ``integer`` (a profile's version)
MAX_INTEGER = 2**31 - 1

#: the words read as yes and as no, in any letter case
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def parse_whole_number(raw: object, *, minimum: int = 1, maximum: int = MAX_BIGINT) -> int | None:
    """``raw`` as an integer from ``minimum`` to ``maximum``; ``None`` if it is not one.

    Only ASCII digits count (no sign, no ``٣``, no ``1_000``); spaces around
    them are ignored. Text longer than ``maximum`` could be is refused before
    any conversion, so a megabyte of digits costs nothing.
    """
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return None
    text = str(raw).strip()
    if not text.isascii() or not text.isdigit() or len(text) > len(str(maximum)):
        return None
    number = int(text)
    return number if minimum <= number <= maximum else None


def parse_flag(raw: str | None, *, default: bool | None = None) -> bool | None:
    """``raw`` as yes or no; empty or missing text is ``default``; anything else ``None``."""
    text = (raw or "").strip().lower()
    if not text:
        return default
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    return None
