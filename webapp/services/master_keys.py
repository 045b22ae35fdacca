"""Custody of the master keys that wrap every profile's data key.

Two things: refusing to run with master keys that do not open the data keys
the database holds (a wrong key must stop the process at start, never show
ciphertext or ``[unreadable]`` in place of values), and rotating the master
key: re-wrapping every data key under the current ``PRIVACY_MASTER_KEY``.

A rotation, as the ``flask privacy rotate-master-key`` command's help says:
set ``PRIVACY_PREVIOUS_MASTER_KEY`` to the old key and ``PRIVACY_MASTER_KEY``
to the new one in every process, run the command (it re-wraps the keys still
wrapped by the old one, in short transactions, and can be run again at any
time), then remove ``PRIVACY_PREVIOUS_MASTER_KEY``. No entry is touched: the
data keys stay the same, only the way they are kept changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from webapp.audit.personal_data import (
    MasterKeyError,
    UnknownMasterKey,
    data_keys,
    key_provider,
)
from webapp.extensions import db
from webapp.models import ProfileDataKey
from webapp.services.security_events import record_event

#: Data keys re-wrapped per transaction.
ROTATION_BATCH = 1_000
_CHECKED = "privacy_master_keys_checked"


class MasterKeysRefused(RuntimeError):
    """The configured master keys do not open the data keys the database holds."""


def refuse_wrong_master_keys(app: Flask) -> None:
    """Stop here, with one line naming the setting (never its value), when
    ``PRIVACY_MASTER_KEY`` (with ``PRIVACY_PREVIOUS_MASTER_KEY`` during a
    rotation) does not open every data key in the database.

    Called where the app starts serving (``wsgi.py``, ``make run``) and before
    every operator command; checked once per app. A database without the keys'
    table (not migrated yet) holds no key to open, so it passes; a database
    that cannot be reached raises the driver's error, which callers report.
    """
    if app.extensions.get(_CHECKED):
        return
    with app.app_context():
        try:
            check_master_keys()
        except UnknownMasterKey:
            raise MasterKeysRefused(
                "PRIVACY_MASTER_KEY does not open the data keys in the database: "
                + _unknown_keys_advice()
            ) from None
        except MasterKeyError:
            raise MasterKeysRefused(
                "PRIVACY_MASTER_KEY does not open the data keys in the database: a data key "
                "does not unwrap under the master key it names, so its row was altered; "
                "restore profile_data_keys from a backup."
            ) from None
        except ProgrammingError as error:
            if getattr(error.orig, "sqlstate", None) != _UNDEFINED_TABLE:
                raise
        finally:
            db.session.rollback()
    app.extensions[_CHECKED] = True


def exit_unless_master_keys_open(app: Flask) -> None:
    """``refuse_wrong_master_keys`` for a server about to serve: a refusal, or a
    database that cannot be reached to check the keys with, ends the process
    with one line on standard error (status 1) instead of a traceback."""
    try:
        refuse_wrong_master_keys(app)
    except MasterKeysRefused as refused:
        raise SystemExit(f"Refusing to start: {refused}") from None
    except OperationalError as error:
        reason = str(error.orig or error).strip().splitlines()[0]
        raise SystemExit(
            "Refusing to start: PRIVACY_MASTER_KEY cannot be checked against the database "
            f"in DATABASE_URL: {reason}"
        ) from None


def check_master_keys() -> int:
    """Raise ``MasterKeyError`` (``UnknownMasterKey``) when a data key is wrapped
    by a master key this process lacks, or does not unwrap under the one it
    names; return how many master keys are in use. One data key per master key
    is tried: they all share it."""
    provider = key_provider()
    one_per_master_key = (
        select(func.min(ProfileDataKey.user_id))
        .where(ProfileDataKey.wrapped_key.is_not(None))
        .group_by(ProfileDataKey.master_key_id)
    )
    rows = db.session.execute(
        select(ProfileDataKey.master_key_id, ProfileDataKey.wrapped_key).where(
            ProfileDataKey.user_id.in_(one_per_master_key)
        )
    ).all()
    for key_id, wrapped in rows:
        provider.unwrap(key_id, bytes(wrapped))
    return len(rows)


_UNDEFINED_TABLE = "42P01"
_MASTER_KEY_IDS = text(
    "SELECT DISTINCT master_key_id FROM profile_data_keys WHERE wrapped_key IS NOT NULL "
    "ORDER BY master_key_id"
)


def _unknown_keys_advice() -> str:
    """Which master keys the data keys need that this process lacks (by their
    public ids), and what to set."""
    provider = key_provider()
    unknown = [
        key_id
        for key_id in db.session.execute(_MASTER_KEY_IDS).scalars()
        if not provider.knows(key_id)
    ]
    return (
        f"data keys are wrapped by master key {', '.join(unknown)}, and PRIVACY_MASTER_KEY "
        f"is master key {provider.current_key_id}. Set PRIVACY_MASTER_KEY to the key that "
        "wrapped them or, during a rotation, set the key being replaced as "
        "PRIVACY_PREVIOUS_MASTER_KEY until `flask privacy rotate-master-key` has run."
    )


@dataclass
class Rotation:
    """What a rotation did."""

    #: the id of the master key every data key is wrapped by now
    current_key_id: str
    #: data keys re-wrapped, by the id of the master key they were wrapped by
    rewrapped: dict[str, int] = field(default_factory=dict)
    #: data keys already wrapped by the current key (left as they were)
    already_current: int = 0
    #: data keys destroyed by erasure (nothing to wrap)
    erased: int = 0
    batches: int = 0

    @property
    def rewrapped_total(self) -> int:
        return sum(self.rewrapped.values())


# Keyset batches in user_id order, locked so that an erasure meanwhile waits
# for the batch (or the batch for it) instead of having its key written back.
_NEXT_BATCH = text(
    "SELECT user_id, master_key_id, wrapped_key FROM profile_data_keys "
    "WHERE user_id > :after AND wrapped_key IS NOT NULL AND master_key_id <> :current "
    "ORDER BY user_id LIMIT :limit FOR UPDATE"
)
_REWRAP = text(
    "UPDATE profile_data_keys k SET master_key_id = :current, wrapped_key = r.wrapped_key "
    "FROM unnest(CAST(:user_ids AS bigint[]), CAST(:wrapped AS bytea[])) "
    "AS r(user_id, wrapped_key) "
    "WHERE k.user_id = r.user_id AND k.wrapped_key IS NOT NULL"
)
_COUNTS = text(
    "SELECT count(*) FILTER (WHERE wrapped_key IS NULL) AS erased, "
    "count(*) FILTER (WHERE master_key_id = :current) AS current FROM profile_data_keys"
)


def rotate_master_key(
    *, batch: int = ROTATION_BATCH, progress: Callable[[int], None] | None = None
) -> Rotation:
    """Re-wrap every data key not wrapped by the current master key under it.

    Each batch is its own transaction, so a rotation of millions of profiles
    holds no lock for long, and one that stops halfway is finished by running
    it again (keys already re-wrapped are skipped). Every master key in use is
    checked first: a data key wrapped by a key this process lacks refuses the
    rotation before anything changes. Entries are never touched. A rotation
    that re-wrapped keys is recorded as the security event ``master_key_rotated``.
    """
    provider = key_provider()
    current = provider.current_key_id
    try:
        check_master_keys()
    except UnknownMasterKey:
        advice = _unknown_keys_advice()
        db.session.rollback()
        raise MasterKeysRefused(f"Cannot rotate: {advice}") from None
    result = Rotation(current_key_id=current)
    after = 0
    while True:
        rows = db.session.execute(
            _NEXT_BATCH, {"after": after, "current": current, "limit": batch}
        ).all()
        if not rows:
            db.session.commit()
            break
        user_ids, wrapped = [], []
        for user_id, key_id, old in rows:
            plain = provider.unwrap(key_id, bytes(old))
            user_ids.append(user_id)
            wrapped.append(provider.wrap(plain))
            result.rewrapped[key_id] = result.rewrapped.get(key_id, 0) + 1
        db.session.execute(_REWRAP, {"current": current, "user_ids": user_ids, "wrapped": wrapped})
        db.session.commit()
        # The cache is keyed by the wrapped bytes the rows held.
        for old_row in rows:
            data_keys.forget(bytes(old_row.wrapped_key))
        after = user_ids[-1]
        result.batches += 1
        if progress is not None:
            progress(len(rows))
    counts = db.session.execute(_COUNTS, {"current": current}).one()
    result.erased = counts.erased
    result.already_current = counts.current - result.rewrapped_total
    if result.rewrapped_total:
        record_event(
            "master_key_rotated",
            details={
                "master_key_id": current,
                "rewrapped": result.rewrapped_total,
                "from_master_key_ids": sorted(result.rewrapped),
            },
        )
    else:
        db.session.rollback()
    return result
