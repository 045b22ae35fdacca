"""Two snapshots of a profile side by side, their text compared word by word.

The one diff of the dashboard: the timeline, a profile's history and the
comparison of two versions all show changes through it (and through the
``diff_table`` macro of ``templates/audit/_macros.html``).

Characters are the wrong unit for names and emails: a rewritten value came
out as scattered fragments ("Alexand[e]r"). Words, punctuation and spaces
are compared instead, and a value of which too little survives is shown as
replaced whole.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from webapp.audit.snapshot import SNAPSHOT_FIELDS

#: Below this share of unchanged text (of both values together), a changed
#: string is shown as replaced whole: a few kept letters help nobody read it.
MIN_SURVIVING_SHARE = 0.4

# A word, a run of spaces, or one other character (punctuation, "@", ".").
_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")


@dataclass(frozen=True)
class Segment:
    """A run of a value's text: ``same``, ``del`` (only before) or ``ins`` (only after)."""

    kind: str
    text: str


@dataclass(frozen=True)
class DiffLine:
    """One key of two snapshots side by side.

    ``status`` is ``same``, ``added``, ``removed`` or ``changed``. Each side
    is a list of segments of its value written as JSON; a side is empty when
    the key is missing there.
    """

    key: str
    status: str
    before: list[Segment]
    after: list[Segment]


def tokens(text: str) -> list[str]:
    """``text`` cut into words, runs of whitespace and single other characters."""
    return _TOKEN.findall(text)


def _merge(segments: list[Segment]) -> list[Segment]:
    merged: list[Segment] = []
    for segment in segments:
        if not segment.text:
            continue
        if merged and merged[-1].kind == segment.kind:
            merged[-1] = Segment(segment.kind, merged[-1].text + segment.text)
        else:
            merged.append(segment)
    return merged


def diff_words(before: str, after: str) -> tuple[list[Segment], list[Segment]]:
    """Both texts as segments, the words that differ marked on each side.

    A space or punctuation mark kept between two changes is counted as part
    of the change, so a rewritten phrase reads as one deletion and one
    insertion. When less than ``MIN_SURVIVING_SHARE`` of the text is kept,
    each side is one segment: the whole value, deleted or inserted.
    """
    old, new = tokens(before), tokens(after)
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    # (kind, before text, after text) chunks; "equal" ones may be absorbed.
    chunks: list[tuple[str, str, str]] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        chunks.append((tag, "".join(old[i1:i2]), "".join(new[j1:j2])))
    for index in range(1, len(chunks) - 1):
        tag, text, _ = chunks[index]
        between_changes = chunks[index - 1][0] != "equal" and chunks[index + 1][0] != "equal"
        if tag == "equal" and between_changes and not re.search(r"\w", text):
            chunks[index] = ("replace", text, text)

    kept = sum(len(text.strip()) for tag, text, _ in chunks if tag == "equal")
    total = len(before.strip()) + len(after.strip())
    if total and 2 * kept / total < MIN_SURVIVING_SHARE:
        return [Segment("del", before)] if before else [], [Segment("ins", after)] if after else []

    old_side: list[Segment] = []
    new_side: list[Segment] = []
    for tag, old_text, new_text in chunks:
        if tag == "equal":
            old_side.append(Segment("same", old_text))
            new_side.append(Segment("same", new_text))
        else:
            old_side.append(Segment("del", old_text))
            new_side.append(Segment("ins", new_text))
    return _merge(old_side), _merge(new_side)


def _json_text(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _string_body(text: str) -> str:
    # The inside of a JSON string literal: escapes as JSON would write them.
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _quoted(segments: list[Segment]) -> list[Segment]:
    """A string's segments written as a JSON string literal."""
    inner = [Segment(segment.kind, _string_body(segment.text)) for segment in segments]
    return [Segment("same", '"'), *inner, Segment("same", '"')]


def diff_snapshots(
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    changed: Iterable[str] = (),
) -> list[DiffLine]:
    """Line up two snapshots key by key; ``None`` stands for "no profile".

    Keys come in snapshot order, then any others alphabetically, so older
    entries with extra keys still show everything they hold. A key the entry
    records as ``changed`` whose two values read the same (both ``[erased]``
    once a profile's key is destroyed) is still shown as changed.
    """
    recorded = set(changed)
    old = dict(before or {})
    new = dict(after or {})
    extra = sorted((set(old) | set(new)) - set(SNAPSHOT_FIELDS))
    lines: list[DiffLine] = []
    for key in (*SNAPSHOT_FIELDS, *extra):
        in_old, in_new = key in old, key in new
        if not in_old and not in_new:
            continue
        if in_old and not in_new:
            lines.append(DiffLine(key, "removed", [Segment("del", _json_text(old[key]))], []))
        elif in_new and not in_old:
            lines.append(DiffLine(key, "added", [], [Segment("ins", _json_text(new[key]))]))
        elif old[key] == new[key]:
            same = [Segment("same", _json_text(old[key]))]
            lines.append(DiffLine(key, "changed" if key in recorded else "same", same, same))
        elif isinstance(old[key], str) and isinstance(new[key], str):
            old_side, new_side = diff_words(old[key], new[key])
            lines.append(DiffLine(key, "changed", _quoted(old_side), _quoted(new_side)))
        else:
            lines.append(
                DiffLine(
                    key,
                    "changed",
                    [Segment("del", _json_text(old[key]))],
                    [Segment("ins", _json_text(new[key]))],
                )
            )
    return lines
