"""CSV cells that a spreadsheet opens as text, never as formulas.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a
tab or carriage return before one). Set to split on ``;`` or tabs, it also
starts a new cell at every ``;`` or tab inside an unquoted CSV cell:
``ok;=cmd|' /C calc'!A0`` becomes a harmless ``ok`` and a formula. So text
cells get a ``'`` before a formula at their start and after each ``;`` or tab,
and JSON cells (snapshots, details) spell ``;`` as ``\\u003b``, which reads
back as the same JSON value.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A cell of its own in a spreadsheet splitting on ";" or tabs, starting
# (after any spaces, which an import may trim) with a formula character.
_FORMULA_AFTER_SEPARATOR = re.compile(r"([;\t])( *[=+\-@\r])")


def neutralise(cell: str) -> str:
    """Keep a spreadsheet from running any part of a text cell as a formula."""
    cell = _FORMULA_AFTER_SEPARATOR.sub(r"\1'\2", cell)
    return "'" + cell if cell.lstrip(" ").startswith(_FORMULA_STARTS) else cell


def json_cell(value: Any) -> str:
    """A JSON object or array as one cell (empty for ``None``), with no ``;`` to split on.

    Its text starts with ``{`` or ``[``, never a formula character; ``;`` only
    occurs inside its strings, where ``\\u003b`` means the same character,
    and JSON already escapes tabs and carriage returns there.
    """
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, sort_keys=True).replace(";", "\\u003b")


def csv_stream(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """The header, then one CSV line per row (RFC 4180 line ends), as they are made."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in itertools.chain([header], rows):
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
