"""Errors services raise; each blueprint turns them into its own kind of response.

Each class carries its HTTP status, so the dashboard and the JSON API answer a
refusal with the same status from this one table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ServiceError(Exception):
    """Base class: a request that was refused and changed nothing."""

    #: short stable identifier, used in problem types and templates
    code = "service-error"
    title = "Request refused"
    #: the HTTP status of this refusal, on a page or in problem+json
    status = 400

    def __init__(self, detail: str, *, errors: Mapping[str, list[str]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors: dict[str, list[str]] = dict(errors or {})


class ValidationFailed(ServiceError):
    """Input broke the rules; ``errors`` maps each bad field to its messages."""

    code = "validation-failed"
    title = "Invalid input"

    @classmethod
    def of_field(cls, field: str, message: str) -> ValidationFailed:
        """One field's problem; the detail names the field before its message."""
        return cls(f"{field} {message}", errors={field: [message]})

    @classmethod
    def of_fields(cls, errors: Mapping[str, list[str]]) -> ValidationFailed:
        """Several fields' problems; the detail names each with its first message."""
        detail = "; ".join(f"{name} {messages[0]}" for name, messages in errors.items())
        return cls(detail, errors=errors)


class NotFound(ServiceError):
    code = "not-found"
    title = "Not found"
    status = 404


class Conflict(ServiceError):
    """The request is valid but clashes with the current state."""

    code = "conflict"
    title = "Conflict"
    status = 409


class DuplicateEmail(Conflict):
    """Another active profile has the email; ``holder_id`` names it when it is known.

    (It is not known when the refusal came from losing a race at the unique
    index rather than from the check before writing.)
    """

    code = "duplicate-email"
    title = "Email already in use"

    def __init__(
        self,
        detail: str,
        *,
        errors: Mapping[str, list[str]] | None = None,
        holder_id: int | None = None,
    ) -> None:
        super().__init__(detail, errors=errors)
        self.holder_id = holder_id


class AlreadyDeleted(Conflict):
    code = "already-deleted"
    title = "Profile is deleted"


class AlreadyErased(Conflict):
    """The profile's personal data was erased: it can no longer be changed."""

    code = "already-erased"
    title = "Profile is erased"


class TrailNotEncrypted(Conflict):
    """The profile's history holds values written before encryption, which
    cannot be encrypted in place (``flask privacy encrypt-trail`` first)."""

    code = "trail-not-encrypted"
    title = "Audit trail not encrypted yet"


class NotDeleted(Conflict):
    code = "not-deleted"
    title = "Profile is not deleted"


class StaleVersion(Conflict):
    """Someone saved the profile since the caller read it.

    ``current`` is the profile as it is now, so the caller can show what changed.
    Its status is a conflict's; the JSON API answers 412 instead when the
    caller named the version it expected (``If-Match``): an HTTP precondition.
    """

    code = "stale-version"
    title = "Profile was changed by someone else"

    def __init__(
        self, detail: str, *, current: Any = None, expected_version: int | None = None
    ) -> None:
        super().__init__(detail)
        self.current = current
        self.expected_version = expected_version
