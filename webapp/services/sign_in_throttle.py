"""Sign-in throttling that slows a password guesser without locking anyone out.

Three rules, over the failures of the last ``LOGIN_FAILURE_WINDOW_SECONDS``
(defaults in ``webapp.config``, the reasons in README, "Security"):

- one address may fail ``LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS`` times on one
  account; then that address waits before it may try that account again. The
  account's owner elsewhere is not affected.
- one address may fail ``LOGIN_FAILURES_PER_ADDRESS`` times on all accounts
  together: far more than one person's typos, so an office behind one NAT
  address keeps working while someone there mistypes.
- past ``LOGIN_ACCOUNT_DELAY_AFTER`` failures on one account from anywhere
  (an attack spread over many addresses), each next try on it must wait for a
  delay that doubles with every failure (1 s, 2 s, 4 s...) up to
  ``LOGIN_ACCOUNT_DELAY_MAX_SECONDS``: slower, never locked. Addresses the
  account signed in from in the last ``LOGIN_KNOWN_ADDRESS_DAYS`` skip it.

A refused attempt checks no password and counts for nothing, so an attacker
hammering an address or an account cannot stretch the wait of anyone else.

Counting and recording are one step: under transaction-level advisory locks
on the account name and on the address (always in that order, so two
attempts never wait on each other in a cycle), the throttle counts the
failures and adds the attempt as ``pending`` before any password is checked,
and commits at once. A pending attempt counts as a failure, so a burst of
parallel requests gets no more checks than the limits allow. The app's
transactions are READ COMMITTED: each count sees every attempt committed
before the lock was granted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, func, insert, select, text, update

from webapp.extensions import db
from webapp.models import SecurityEvent, SignInAttempt
from webapp.services.errors import ServiceError
from webapp.services.security_events import record_event

#: Outcomes that count as failures: ``pending`` is a check under way.
COUNTED = ("pending", "failed")
#: Attempts deleted at most per sign-in once they no longer count.
PRUNE_BATCH = 100
ACCOUNT_KEY_MAX = 64
_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


class TooManyAttempts(ServiceError):
    """Refused before any password was checked; ``retry_after`` is in seconds."""

    code = "too-many-attempts"
    title = "Too many sign-in attempts"
    status = 429

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Attempt:
    """A password check the throttle let through, to be settled with its outcome."""

    id: int
    account_key: str
    remote_addr: str


@dataclass(frozen=True)
class _Counts:
    now: datetime
    pair: int
    oldest_pair: datetime | None
    account: int
    latest_account: datetime | None
    address: int
    oldest_address: datetime | None


def account_key(username: str) -> str:
    """What the throttle counts an account by: the name as typed, lower-cased."""
    return username.strip().lower()[:ACCOUNT_KEY_MAX]


def account_delay(failures: int) -> int:
    """Seconds between tries on an account that failed ``failures`` times lately."""
    config = current_app.config
    over = failures - config["LOGIN_ACCOUNT_DELAY_AFTER"]
    if over < 0:
        return 0
    ceiling = config["LOGIN_ACCOUNT_DELAY_MAX_SECONDS"]
    # 2 ** over grows without end; past the ceiling only the ceiling matters.
    return ceiling if over >= ceiling.bit_length() else min(2**over, ceiling)


def reserve_attempt(username: str, remote_addr: str | None) -> Attempt:
    """Let one password check for ``username`` from ``remote_addr`` through, or refuse it.

    The attempt is recorded as pending and committed before returning. A
    refusal is a ``login_throttled`` security event and ``TooManyAttempts``.
    """
    key = account_key(username)
    address = remote_addr or ""
    window = timedelta(seconds=current_app.config["LOGIN_FAILURE_WINDOW_SECONDS"])
    db.session.execute(_LOCK, {"key": f"sign-in account {key}"})
    db.session.execute(_LOCK, {"key": f"sign-in address {address}"})
    counts = _count(key, address, window)
    why, retry_at = _refusal(key, address, counts, window)
    if why is not None and retry_at is not None:
        db.session.commit()  # the locks go; nothing was written
        retry_after = max(1, math.ceil((retry_at - counts.now).total_seconds()))
        record_event(
            "login_throttled",
            username=username[:64] or None,
            details={"why": why, "retry_after": retry_after},
        )
        raise TooManyAttempts(
            f"Too many failed sign-in attempts. Try again in {_readable(retry_after)}.",
            retry_after=retry_after,
        )
    attempt_id = db.session.scalar(
        insert(SignInAttempt)
        .values(account_key=key, remote_addr=address, attempted_at=counts.now, outcome="pending")
        .returning(SignInAttempt.id)
    )
    _prune(counts.now - window)
    db.session.commit()
    return Attempt(id=attempt_id, account_key=key, remote_addr=address)


def settle_attempt(attempt: Attempt, *, succeeded: bool) -> None:
    """Record how the check ended; the caller commits (with its security event).

    A success also clears the failures of the same account from the same
    address: the owner's own typos stop counting once they got it right.
    """
    db.session.execute(
        update(SignInAttempt)
        .where(SignInAttempt.id == attempt.id)
        .values(outcome="succeeded" if succeeded else "failed")
    )
    if succeeded:
        db.session.execute(
            update(SignInAttempt)
            .where(
                SignInAttempt.account_key == attempt.account_key,
                SignInAttempt.remote_addr == attempt.remote_addr,
                SignInAttempt.outcome == "failed",
            )
            .values(outcome="cleared")
        )


def _count(key: str, address: str, window: timedelta) -> _Counts:
    now = db.session.scalar(select(func.clock_timestamp()))
    since = now - window
    counted = SignInAttempt.outcome.in_(COUNTED)
    recent = SignInAttempt.attempted_at > since
    from_address = SignInAttempt.remote_addr == address
    account = db.session.execute(
        select(
            func.count(),
            func.max(SignInAttempt.attempted_at),
            func.count().filter(from_address),
            func.min(SignInAttempt.attempted_at).filter(from_address),
        ).where(SignInAttempt.account_key == key, counted, recent)
    ).one()
    by_address = db.session.execute(
        select(func.count(), func.min(SignInAttempt.attempted_at)).where(
            from_address, counted, recent
        )
    ).one()
    return _Counts(
        now=now,
        account=account[0],
        latest_account=account[1],
        pair=account[2],
        oldest_pair=account[3],
        address=by_address[0],
        oldest_address=by_address[1],
    )


def _refusal(
    key: str, address: str, counts: _Counts, window: timedelta
) -> tuple[str | None, datetime | None]:
    """Which rule refuses the attempt and until when, or ``(None, None)``."""
    config = current_app.config
    if counts.pair >= config["LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS"] and counts.oldest_pair:
        # Every failure counted was made within the window: when the oldest
        # leaves it, one more try is allowed.
        return "account and address", counts.oldest_pair + window
    if counts.address >= config["LOGIN_FAILURES_PER_ADDRESS"] and counts.oldest_address:
        return "address", counts.oldest_address + window
    delay = account_delay(counts.account)
    if delay and counts.latest_account:
        retry_at = counts.latest_account + timedelta(seconds=delay)
        if counts.now < retry_at and not _known_address(key, address, counts.now):
            return "account", retry_at
    return None, None


def _known_address(key: str, address: str, now: datetime) -> bool:
    """Whether the account signed in successfully from ``address`` lately."""
    if not address:
        return False
    since = now - timedelta(days=current_app.config["LOGIN_KNOWN_ADDRESS_DAYS"])
    found = db.session.scalar(
        select(SecurityEvent.id)
        .where(
            SecurityEvent.event == "login_succeeded",
            func.lower(SecurityEvent.username) == key,
            SecurityEvent.remote_addr == address,
            SecurityEvent.timestamp >= since,
        )
        .limit(1)
    )
    return found is not None


def _prune(before: datetime) -> None:
    # A few at a time, skipping rows another sign-in is deleting: the table
    # stays about as large as one window's attempts, at no one's expense.
    old = (
        select(SignInAttempt.id)
        .where(SignInAttempt.attempted_at < before)
        .order_by(SignInAttempt.attempted_at)
        .limit(PRUNE_BATCH)
        .with_for_update(skip_locked=True)
    )
    db.session.execute(delete(SignInAttempt).where(SignInAttempt.id.in_(old.scalar_subquery())))


def _readable(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{math.ceil(seconds / 60)} minutes"
