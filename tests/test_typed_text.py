"""Whole numbers and yes/no flags are read one way, with bounds named by the caller."""

from __future__ import annotations

import pytest

from webapp.config import settings_from_environment
from webapp.typed_text import MAX_BIGINT, MAX_INTEGER, parse_flag, parse_whole_number


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", 1),
        (" 42 ", 42),
        (7, 7),
        (str(MAX_BIGINT), MAX_BIGINT),
        (str(MAX_BIGINT + 1), None),
        ("0", None),
        ("-3", None),
        ("+3", None),
        ("1_000", None),
        ("٣", None),  # an Arabic-Indic digit: a digit, but not ASCII
        ("1.0", None),
        ("", None),
        (None, None),
        (True, None),
        (2.0, None),
        ("9" * 5000, None),  # beyond int()'s digit limit: refused, not an error
    ],
)
def test_whole_numbers_within_the_default_bounds(raw, expected):
    assert parse_whole_number(raw) == expected


def test_the_caller_names_the_bounds():
    assert parse_whole_number("0", minimum=0) == 0
    assert parse_whole_number("3650", maximum=3650) == 3650
    assert parse_whole_number("3651", maximum=3650) is None
    assert parse_whole_number(str(MAX_INTEGER), maximum=MAX_INTEGER) == MAX_INTEGER
    assert parse_whole_number(str(MAX_INTEGER + 1), maximum=MAX_INTEGER) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("TRUE", True),
        (" yes ", True),
        ("on", True),
        ("0", False),
        ("False", False),
        ("no", False),
        ("off", False),
        ("maybe", None),
        ("2", None),
    ],
)
def test_flags(raw, expected):
    assert parse_flag(raw) is expected


def test_a_missing_flag_is_the_default():
    assert parse_flag(None, default=True) is True
    assert parse_flag("  ", default=False) is False
    assert parse_flag("") is None


def test_a_setting_that_is_no_flag_stops_the_start(monkeypatch):
    monkeypatch.setenv("DB_POOL_PRE_PING", "sometimes")
    with pytest.raises(RuntimeError, match="DB_POOL_PRE_PING must be true or false"):
        settings_from_environment()


def test_a_setting_that_is_no_whole_number_stops_the_start(monkeypatch):
    monkeypatch.setenv("DB_POOL_SIZE", "-5")
    with pytest.raises(RuntimeError, match="DB_POOL_SIZE must be a whole number"):
        settings_from_environment()
