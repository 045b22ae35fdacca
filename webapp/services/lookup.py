"""One row by its id, or ``NotFound``: how every service fetches what a caller names."""

from __future__ import annotations

from typing import TypeVar

from webapp.extensions import db
from webapp.services.errors import NotFound
from webapp.typed_text import MAX_BIGINT

M = TypeVar("M")


def get_or_not_found(model: type[M], row_id: int, missing: str) -> M:
    """The ``model`` row with primary key ``row_id``; ``NotFound(missing)`` when there is none.

    An id no ``bigint`` column can hold is simply not there: asking the
    database about it would fail instead of answering.
    """
    row = db.session.get(model, row_id) if 0 < row_id <= MAX_BIGINT else None
    if row is None:
        raise NotFound(missing)
    return row
