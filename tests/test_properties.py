"""The audit invariant under random sequences of service calls.

A hypothesis state machine creates, edits, soft-deletes and restores profiles
drawn from a small pool of names and emails (so duplicate emails, no-op saves,
email case changes, invalid input and stale versions all happen), predicts the
outcome of every call from a model of its own, and after every step reads the
database through a separate connection to check that:

* each profile's audit entries have versions 1..n with no gap, start with a
  ``create`` whose ``previous_data`` is null, and chain (each entry's
  ``previous_data`` is the previous entry's ``new_data``);
* the last entry's ``new_data`` is the profile's row as it is now, and the
  row's version is the number of entries;
* an accepted change added exactly one entry, a refused one (an exception)
  changed nothing at all;
* no two active profiles share an email, whatever its case.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.ctx import AppContext
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine, text

from tests.support.database import Database, rewrite_history
from webapp.extensions import db
from webapp.models import User
from webapp.services import users
from webapp.services.errors import (
    AlreadyDeleted,
    DuplicateEmail,
    NotDeleted,
    NotFound,
    ServiceError,
    StaleVersion,
    ValidationFailed,
)

SNAPSHOT_FIELDS = ("name", "email", "deleted_at")


@dataclass(frozen=True)
class Input:
    """A raw value sent to a service and what the service should make of it."""

    raw: object
    valid: bool
    cleaned: str | None = None


ABSENT = Input(raw=None, valid=True)  # the key is left out of the mapping altogether


@dataclass
class ModelProfile:
    """What a profile and its history should be."""

    name: str
    email: str
    deleted: bool = False
    operations: list[str] = field(default_factory=lambda: ["create"])
    reasons: list[str | None] = field(default_factory=list)

    @property
    def version(self) -> int:
        return len(self.operations)


def _valid(raw: str, cleaned: str) -> Input:
    return Input(raw=raw, valid=True, cleaned=cleaned)


def _invalid(raw: object) -> Input:
    return Input(raw=raw, valid=False)


def _email(local: str, domain: str, padding: str) -> Input:
    # email-validator keeps the local part's case and lowercases the domain.
    return _valid(f"{padding}{local}@{domain}{padding}", f"{local}@{domain.lower()}")


VALID_NAMES = [
    _valid("Ada", "Ada"),
    _valid("  Ada ", "Ada"),
    _valid("Bob", "Bob"),
    _valid("Zoe\u0308", "Zo\u00eb"),  # NFC-normalized
    _valid("Zo\u00eb", "Zo\u00eb"),
    _valid("x" * 255, "x" * 255),
]
INVALID_NAMES = [
    _invalid(""),
    _invalid("   "),
    _invalid("a\nb"),
    _invalid("\u202eevil"),
    _invalid("x" * 256),
    _invalid(None),
    _invalid(7),
]
# Three addresses, case-insensitively: duplicates are frequent.
VALID_EMAILS = [
    _email(local, domain, padding)
    for local in ("ada", "Ada", "ADA", "bob", "Bob", "cy")
    for domain in ("example.com", "EXAMPLE.com")
    for padding in ("", " ")
]
INVALID_EMAILS = [
    _invalid(""),
    _invalid("not-an-email"),
    _invalid("ada@"),
    _invalid("ada@example.com\x00"),
    _invalid(None),
    _invalid(["ada@example.com"]),
]
VALID_REASONS = [
    Input(raw=None, valid=True, cleaned=None),
    Input(raw="", valid=True, cleaned=None),
    Input(raw="  ", valid=True, cleaned=None),
    _valid("typo", "typo"),
    _valid("  ticket 7\n", "ticket 7"),
]
INVALID_REASONS = [_invalid("nul\x00"), _invalid("r" * 1001), _invalid(3)]


def _pick(*groups: tuple[int, list[Input]]) -> st.SearchStrategy[Input]:
    """An item of one of ``groups``, each group chosen in proportion to its weight."""
    pool = [index for index, (weight, _) in enumerate(groups) for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda index: st.sampled_from(groups[index][1]))


NAMES = _pick((8, VALID_NAMES), (1, INVALID_NAMES), (1, [ABSENT]))
EMAILS = _pick((8, VALID_EMAILS), (1, INVALID_EMAILS), (1, [ABSENT]))
REASONS = _pick((6, VALID_REASONS), (1, INVALID_REASONS))
# How the expected version relates to the profile's real one.
VERSION_MODES = st.sampled_from(["current", "none", "current", "none", "behind", "ahead"])
MISSING_IDS = st.sampled_from([0, -1, 999_999, 2**63])


def _expected_version(mode: str, profile: ModelProfile) -> int | None:
    return {
        "none": None,
        "current": profile.version,
        "behind": profile.version - 1,
        "ahead": profile.version + 1,
    }[mode]


def _iso_utc(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z suffix, worked out independently of the app."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ProfileMachine(RuleBasedStateMachine):
    """Drives the user services and keeps a model of what the database should hold."""

    profiles = Bundle("profiles")

    def __init__(self, app: Flask, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        # Tables are emptied before each test by conftest, not before each
        # example, so every example starts from empty tables itself.
        rewrite_history(engine, "TRUNCATE user_audit, users RESTART IDENTITY CASCADE")
        self.context: AppContext = app.app_context()
        self.context.push()
        self.model: dict[int, ModelProfile] = {}

    def teardown(self) -> None:
        db.session.rollback()
        self.context.pop()  # removes the session, so the next TRUNCATE is not blocked

    # -- reading the database from outside ---------------------------------

    def _rows(self, query: str, **params: object) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(text(query), params)]

    def _fingerprint(self) -> list[list[dict[str, Any]]]:
        return [
            self._rows("SELECT * FROM users ORDER BY id"),
            self._rows("SELECT * FROM user_audit ORDER BY id"),
        ]

    def _entry_count(self) -> int:
        return len(self._rows("SELECT id FROM user_audit"))

    # -- calling a service and checking its outcome ------------------------

    def _call(
        self,
        refusal: type[ServiceError] | None,
        call: Callable[[], User],
        *,
        new_entries: int = 1,
    ) -> User | None:
        """Run ``call``; it must raise exactly ``refusal`` and change nothing, or
        (when ``refusal`` is None) succeed and add ``new_entries`` audit entries."""
        if refusal is not None:
            before = self._fingerprint()
            with pytest.raises(ServiceError) as raised:
                call()
            assert type(raised.value) is refusal, raised.value
            assert self._fingerprint() == before, "a refused call changed the database"
            return None
        count = self._entry_count()
        user = call()
        assert self._entry_count() == count + new_entries
        return user

    def _email_taken(self, email: str, *, by_other_than: int | None = None) -> bool:
        return any(
            not profile.deleted and profile.email.lower() == email.lower()
            for user_id, profile in self.model.items()
            if user_id != by_other_than
        )

    # -- rules ---------------------------------------------------------------

    @rule(
        target=profiles,
        name=NAMES,
        email=EMAILS,
        reason=REASONS,
    )
    def create(self, name: Input, email: Input, reason: Input) -> object:
        fields: dict[str, object] = {}
        if name is not ABSENT:
            fields["name"] = name.raw
        if email is not ABSENT:
            fields["email"] = email.raw
        refusal: type[ServiceError] | None = None
        if name is ABSENT or email is ABSENT or not (name.valid and email.valid and reason.valid):
            refusal = ValidationFailed
        elif self._email_taken(email.cleaned or ""):
            refusal = DuplicateEmail

        user = self._call(refusal, lambda: users.create_user(fields, reason=reason.raw))
        if user is None:
            return multiple()
        assert user.id not in self.model
        assert user.version == 1
        assert name.cleaned is not None
        assert email.cleaned is not None
        self.model[user.id] = ModelProfile(
            name=name.cleaned, email=email.cleaned, reasons=[reason.cleaned]
        )
        return user.id

    @rule(user_id=profiles, data=st.data())
    def update(self, user_id: int, data: st.DataObject) -> None:
        self._update(user_id, data)

    @precondition(lambda self: any(not p.deleted for p in self.model.values()))
    @rule(data=st.data())
    def update_active(self, data: st.DataObject) -> None:
        active = sorted(i for i, p in self.model.items() if not p.deleted)
        self._update(data.draw(st.sampled_from(active), label="user_id"), data)

    def _update(self, user_id: int, data: st.DataObject) -> None:
        profile = self.model[user_id]
        local, domain = profile.email.split("@")
        same_name = _valid(profile.name, profile.name)
        same_email = _valid(profile.email, profile.email)
        other_case = _valid(f"{local.swapcase()}@{domain}", f"{local.swapcase()}@{domain}")
        name = data.draw(
            _pick((2, [ABSENT]), (3, [same_name]), (3, VALID_NAMES), (1, INVALID_NAMES)),
            label="name",
        )
        email = data.draw(
            _pick(
                (2, [ABSENT]),
                (2, [same_email]),
                (2, [other_case]),
                (3, VALID_EMAILS),
                (1, INVALID_EMAILS),
            ),
            label="email",
        )
        partial = data.draw(st.sampled_from([True, True, True, False]), label="partial")
        reason = data.draw(REASONS, label="reason")
        mode = data.draw(VERSION_MODES, label="expected_version")

        changes: dict[str, object] = {}
        if name is not ABSENT:
            changes["name"] = name.raw
        if email is not ABSENT:
            changes["email"] = email.raw
        new_name = name.cleaned if name is not ABSENT and name.cleaned else profile.name
        new_email = email.cleaned if email is not ABSENT and email.cleaned else profile.email

        refusal: type[ServiceError] | None = None
        if not (name.valid and email.valid and reason.valid) or (
            not partial and (name is ABSENT or email is ABSENT)
        ):
            refusal = ValidationFailed
        elif mode in {"behind", "ahead"}:
            refusal = StaleVersion
        elif profile.deleted:
            refusal = AlreadyDeleted
        elif new_email.lower() != profile.email.lower() and self._email_taken(
            new_email, by_other_than=user_id
        ):
            refusal = DuplicateEmail
        changed = (new_name, new_email) != (profile.name, profile.email)

        user = self._call(
            refusal,
            lambda: users.update_user(
                user_id,
                changes,
                expected_version=_expected_version(mode, profile),
                reason=reason.raw,
                partial=partial,
            ),
            new_entries=1 if changed else 0,
        )
        if user is None:
            return
        if changed:
            profile.name, profile.email = new_name, new_email
            profile.operations.append("update")
            profile.reasons.append(reason.cleaned)
        assert (user.name, user.email, user.version) == (
            profile.name,
            profile.email,
            profile.version,
        )

    @rule(user_id=profiles, reason=REASONS, mode=VERSION_MODES)
    def delete(self, user_id: int, reason: Input, mode: str) -> None:
        self._delete_or_restore("delete", user_id, reason, mode)

    @precondition(lambda self: any(not p.deleted for p in self.model.values()))
    @rule(data=st.data(), reason=REASONS, mode=VERSION_MODES)
    def delete_active(self, data: st.DataObject, reason: Input, mode: str) -> None:
        active = sorted(i for i, p in self.model.items() if not p.deleted)
        self._delete_or_restore(
            "delete", data.draw(st.sampled_from(active), label="user_id"), reason, mode
        )

    @rule(user_id=profiles, reason=REASONS, mode=VERSION_MODES)
    def restore(self, user_id: int, reason: Input, mode: str) -> None:
        self._delete_or_restore("restore", user_id, reason, mode)

    @precondition(lambda self: any(p.deleted for p in self.model.values()))
    @rule(data=st.data(), reason=REASONS, mode=VERSION_MODES)
    def restore_deleted(self, data: st.DataObject, reason: Input, mode: str) -> None:
        deleted = sorted(i for i, p in self.model.items() if p.deleted)
        self._delete_or_restore(
            "restore", data.draw(st.sampled_from(deleted), label="user_id"), reason, mode
        )

    def _delete_or_restore(self, operation: str, user_id: int, reason: Input, mode: str) -> None:
        """Soft-delete (``operation`` "delete") or restore a profile, as the model expects."""
        profile = self.model[user_id]
        deleting = operation == "delete"
        refusal: type[ServiceError] | None = None
        if not reason.valid:
            refusal = ValidationFailed
        elif mode in {"behind", "ahead"}:
            refusal = StaleVersion
        elif deleting and profile.deleted:
            refusal = AlreadyDeleted
        elif not deleting and not profile.deleted:
            refusal = NotDeleted
        elif not deleting and self._email_taken(profile.email, by_other_than=user_id):
            refusal = DuplicateEmail

        expected = _expected_version(mode, profile)
        service = users.delete_user if deleting else users.restore_user
        user = self._call(
            refusal, lambda: service(user_id, expected_version=expected, reason=reason.raw)
        )
        if user is None:
            return
        profile.deleted = deleting
        profile.operations.append(operation)
        profile.reasons.append(reason.cleaned)
        assert (user.deleted_at is not None) is deleting
        assert user.version == profile.version

    @precondition(lambda self: bool(self.model))
    @rule(user_id=MISSING_IDS, operation=st.sampled_from(["update", "delete", "restore"]))
    def operate_on_missing_profile(self, user_id: int, operation: str) -> None:
        calls: dict[str, Callable[[], User]] = {
            "update": lambda: users.update_user(user_id, {"name": "Ghost"}),
            "delete": lambda: users.delete_user(user_id),
            "restore": lambda: users.restore_user(user_id),
        }
        self._call(NotFound, calls[operation])

    @rule()
    def end_session(self) -> None:
        """What the end of a request does: the next call starts a fresh session."""
        db.session.remove()

    # -- invariants ----------------------------------------------------------

    @invariant()
    def audit_log_is_whole(self) -> None:
        rows = self._rows("SELECT * FROM users ORDER BY id")
        entries = Database(self.engine).audit()  # personal values decrypted
        assert [row["id"] for row in rows] == sorted(self.model)
        by_user = {
            user_id: list(group)
            for user_id, group in itertools.groupby(
                sorted(entries, key=lambda e: (e["user_id"], e["id"])), key=lambda e: e["user_id"]
            )
        }
        assert set(by_user) <= set(self.model), "audit entries of an unknown profile"

        for row in rows:
            profile = self.model[row["id"]]
            history = by_user.get(row["id"], [])
            assert history, f"profile {row['id']} has no audit entries"
            assert [e["version"] for e in history] == list(range(1, len(history) + 1))
            assert [e["operation"] for e in history] == profile.operations
            assert [e["reason"] for e in history] == profile.reasons
            assert history[0]["previous_data"] is None
            assert history[0]["changed_fields"] == ["name", "email"]
            for earlier, later in itertools.pairwise(history):
                assert later["previous_data"] == earlier["new_data"]
                assert later["changed_fields"] == [
                    f for f in SNAPSHOT_FIELDS if earlier["new_data"][f] != later["new_data"][f]
                ]
                assert later["changed_fields"], "an entry that changes nothing"
            assert history[-1]["new_data"] == {
                "name": row["name"],
                "email": row["email"],
                "deleted_at": _iso_utc(row["deleted_at"]),
            }
            assert row["version"] == len(history)
            assert (row["name"], row["email"], row["deleted_at"] is not None) == (
                profile.name,
                profile.email,
                profile.deleted,
            )

        active = [row["email"].lower() for row in rows if row["deleted_at"] is None]
        assert len(active) == len(set(active)), "two active profiles share an email"


@pytest.mark.usefixtures("app_context")  # binds who is acting, where the app needs it
def test_audit_log_stays_whole_under_random_operations(app: Flask, engine: Engine) -> None:
    run_state_machine_as_test(
        lambda: ProfileMachine(app, engine),
        settings=settings(
            max_examples=25,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
