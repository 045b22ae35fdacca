"""Keyset pagination: opaque cursors and the page they continue."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from webapp.services.errors import ValidationFailed
from webapp.timestamps import iso_utc, parse_iso_datetime
from webapp.typed_text import parse_whole_number

T = TypeVar("T")

#: the longest cursor accepted (a page's own cursors are far shorter)
CURSOR_MAX_LENGTH = 200


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of results and the cursor of the next one (``None`` at the end)."""

    items: Sequence[T]
    next_cursor: str | None


def _bad_cursor() -> ValidationFailed:
    return ValidationFailed(
        "cursor is not valid: pass back a next_cursor value unchanged",
        errors={"cursor": ["is not a cursor this list issued"]},
    )


def encode_id_cursor(last_id: int) -> str:
    return _encode([last_id])


def decode_id_cursor(token: str) -> int:
    values = _decode(token)
    if len(values) != 1:
        raise _bad_cursor()
    return _id(values[0])


def encode_time_id_cursor(moment: datetime, last_id: int) -> str:
    return _encode([iso_utc(moment), last_id])


def decode_time_id_cursor(token: str) -> tuple[datetime, int]:
    values = _decode(token)
    if len(values) != 2 or not isinstance(values[0], str):
        raise _bad_cursor()
    try:
        moment = parse_iso_datetime(values[0])
    except ValueError:
        raise _bad_cursor() from None
    return moment, _id(values[1])


def _encode(values: list[object]) -> str:
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(token: str) -> list[object]:
    if not token or len(token) > CURSOR_MAX_LENGTH:
        raise _bad_cursor()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _bad_cursor() from None
    if not isinstance(values, list):
        raise _bad_cursor()
    return values


def _id(value: object) -> int:
    if not isinstance(value, int):  # a cursor holds its id as a JSON number, never as text
        raise _bad_cursor()
    number = parse_whole_number(value)
    if number is None:
        raise _bad_cursor()
    return number


def parse_limit(raw: str | None, *, default: int, maximum: int) -> int:
    """The page size asked for: an integer from 1 to ``maximum``."""
    if raw is None or raw == "":
        return default
    limit = parse_whole_number(raw, maximum=maximum)
    if limit is None:
        raise ValidationFailed.of_field("limit", f"must be an integer from 1 to {maximum}")
    return limit
