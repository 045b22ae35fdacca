"""The rules a profile's fields obey: one rule set for HTML forms and JSON.

Each ``clean_*`` function takes raw input, returns the normalized value or
raises ``FieldError`` with a message fit to show next to the field.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

from email_validator import EmailNotValidError, validate_email

from webapp.services.errors import ValidationFailed

NAME_MAX = 255
EMAIL_MAX = 255
REASON_MAX = 1000
SEARCH_MAX = 255
PROFILE_FIELDS: tuple[str, ...] = ("name", "email")

# Never stored: control characters (Cc, including NUL, which PostgreSQL
# cannot store), lone surrogates (Cs, not encodable as UTF-8), line and
# paragraph separators (Zl, Zp) and the bidirectional controls (embeddings,
# overrides, isolates and marks) that can make a name, and the text around
# it, display as something else. Joiners (Cf) stay: some scripts and emoji
# need them.
_FORBIDDEN_CATEGORIES = {"Cc", "Cs", "Zl", "Zp"}
BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
)
# Characters that show nothing by themselves: whitespace, format characters
# (zero-width spaces, word joiners, byte order marks, soft hyphens,
# bidirectional marks) and the default-ignorable or blank code points that
# pass for letters (Hangul fillers, the Braille blank, variation selectors,
# tags). A name made only of them looks blank, so it is blank.
_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Zs", "Zl", "Zp"}
_INVISIBLE_RANGES = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x2060, 0x206F),
    (0x2800, 0x2800),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)


class FieldError(ValueError):
    """One field's value broke a rule; the message says which."""


def _has_forbidden_characters(value: str, *, allow: str = "") -> bool:
    return any(
        (unicodedata.category(char) in _FORBIDDEN_CATEGORIES or char in BIDI_CONTROLS)
        and char not in allow
        for char in value
    )


_BIDI_SPELT_OUT = {ord(char): f"[U+{ord(char):04X}]" for char in BIDI_CONTROLS}


def spell_out_bidi_controls(text: str) -> str:
    """``text`` with each bidirectional control written as its code point (``[U+202E]``).

    For showing stored text that may hold one (older rows, a username typed
    at the sign-in form): printed as such, it would reorder what follows it.
    """
    return text.translate(_BIDI_SPELT_OUT)


def _invisible(char: str) -> bool:
    if char.isspace() or unicodedata.category(char) in _INVISIBLE_CATEGORIES:
        return True
    code = ord(char)
    return any(low <= code <= high for low, high in _INVISIBLE_RANGES)


def looks_blank(text: str) -> bool:
    """Whether ``text`` shows nothing: empty, or only characters that are invisible."""
    return all(_invisible(char) for char in text)


def _require_text(value: object) -> str:
    if not isinstance(value, str):
        raise FieldError("must be a string")
    return value


def clean_name(value: object) -> str:
    """Trim surrounding whitespace; 1 to 255 characters, some of them visible, no
    control characters or bidirectional controls."""
    # Surrounding whitespace (a pasted tab or newline included) is trimmed
    # before the character rules apply.
    text = unicodedata.normalize("NFC", _require_text(value)).strip()
    if looks_blank(text):
        raise FieldError("must not be blank")
    if _has_forbidden_characters(text):
        raise FieldError("must not contain control characters")
    if len(text) > NAME_MAX:
        raise FieldError(f"must be at most {NAME_MAX} characters (got {len(text)})")
    return text


def clean_email(value: object) -> str:
    """Normalize with email-validator (syntax only, no DNS); at most 255 characters."""
    text = _require_text(value).strip()
    if not text:
        raise FieldError("must not be blank")
    if _has_forbidden_characters(text):
        raise FieldError("must not contain control characters")
    if len(text) > EMAIL_MAX * 2:
        raise FieldError(f"must be at most {EMAIL_MAX} characters")
    try:
        normalized = validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise FieldError(f"is not a valid email address: {error}") from None
    if len(normalized) > EMAIL_MAX:
        raise FieldError(f"must be at most {EMAIL_MAX} characters")
    return normalized


def clean_reason(value: object) -> str | None:
    """An optional free-text reason for the change; blank means none."""
    if value is None:
        return None
    text = _require_text(value)
    if _has_forbidden_characters(text, allow="\n\t"):
        raise FieldError("must not contain control characters other than newlines and tabs")
    text = text.strip()
    if len(text) > REASON_MAX:
        raise FieldError(f"must be at most {REASON_MAX} characters")
    return None if looks_blank(text) else text


def clean_search(value: str) -> str:
    """A search string for names and emails."""
    text = value.strip()
    if _has_forbidden_characters(text):
        raise FieldError("must not contain control characters")
    if len(text) > SEARCH_MAX:
        raise FieldError(f"must be at most {SEARCH_MAX} characters")
    return text


_CLEANERS = {"name": clean_name, "email": clean_email}


def clean_profile(data: Mapping[str, object], *, partial: bool) -> dict[str, str]:
    """Validate profile fields; every problem is reported at once.

    With ``partial`` only the fields present are checked (PATCH, inline edits);
    otherwise name and email are both required.
    """
    errors: dict[str, list[str]] = {}
    cleaned: dict[str, str] = {}
    for key in data:
        if key not in _CLEANERS:
            errors.setdefault(key, []).append("is not a profile field")
    for field, cleaner in _CLEANERS.items():
        if field not in data:
            if not partial:
                errors.setdefault(field, []).append("is required")
            continue
        try:
            cleaned[field] = cleaner(data[field])
        except FieldError as error:
            errors.setdefault(field, []).append(str(error))
    if errors:
        raise ValidationFailed.of_fields(errors)
    return cleaned
