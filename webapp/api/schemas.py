"""The API's resources, declared once as pydantic types.

Each shape is a ``TypedDict`` with its rules (lengths, bounds, enums,
descriptions) beside its fields. Pydantic writes the responses from them
(``respond``: its serialiser, faster than ``json.dumps``, see ``bench/api_schemas.py``)
and generates their JSON Schemas, which are the OpenAPI document's
``components.schemas`` (``component_schemas``). Plain dicts built by
``webapp.api.representations`` fill them: the rows are flat and the shapes
nested, which no declaration spares.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, NotRequired, TypeVar

from flask import Response, current_app
from pydantic import ConfigDict, Field, TypeAdapter, WithJsonSchema
from pydantic.json_schema import GenerateJsonSchema
from typing_extensions import TypedDict

from webapp.audit.snapshot import SNAPSHOT_FIELDS
from webapp.http.problems import TYPE_PREFIX
from webapp.models import CHANNELS, OPERATIONS
from webapp.request_id import CLIENT_ID_PATTERN
from webapp.services.pagination import Page
from webapp.services.profile_rules import EMAIL_MAX, NAME_MAX, REASON_MAX
from webapp.services.security_events import EVENTS

T = TypeVar("T")

# Characters profile_rules never stores: control characters, line and
# paragraph separators, bidirectional controls (stricter than the server only
# in refusing them at the edges too, where it trims whitespace first).
_BIDI = r"\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_FORBIDDEN = rf"\u0000-\u001f\u007f-\u009f\u2028\u2029{_BIDI}"
# Characters that show nothing (profile_rules.looks_blank, within the Basic
# Multilingual Plane): a name needs at least one other character.
_INVISIBLE = (
    r"\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    r"\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
)
NAME_PATTERN = rf"^[^{_FORBIDDEN}]*[^\s{_FORBIDDEN}{_INVISIBLE}][^{_FORBIDDEN}]*$"
SEARCH_PATTERN = rf"^[^{_FORBIDDEN}]*$"
# A reason may also hold newlines and tabs.
_REASON_FORBIDDEN = rf"\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029{_BIDI}"
REASON_PATTERN = rf"^[^{_REASON_FORBIDDEN}]*$"
# ...and a required one at least one character that shows.
REQUIRED_REASON_PATTERN = (
    rf"^[^{_REASON_FORBIDDEN}]*[^\s{_REASON_FORBIDDEN}{_INVISIBLE}][^{_REASON_FORBIDDEN}]*$"
)

SCHEMA_REF = "#/components/schemas/{model}"
STRICT = ConfigDict(extra="forbid")

Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
BigId = Annotated[int, WithJsonSchema({"type": "integer", "format": "int64", "minimum": 1})]
Count = Annotated[int, Field(ge=0)]
Operation = Literal[OPERATIONS]  # type: ignore[valid-type]
SnapshotField = Literal[SNAPSHOT_FIELDS]  # type: ignore[valid-type]
Channel = Literal[CHANNELS]  # type: ignore[valid-type]
Event = Literal[EVENTS]  # type: ignore[valid-type]


Name = Annotated[
    str,
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": NAME_MAX,
            "pattern": NAME_PATTERN,
            "description": (
                f"1 to {NAME_MAX} characters once surrounding whitespace is trimmed, not all "
                "of them invisible (zero-width or format characters, fillers); no control "
                "characters, line separators or bidirectional controls."
            ),
        }
    ),
]
Email = Annotated[
    str,
    WithJsonSchema(
        {
            "type": "string",
            "format": "email",
            "maxLength": EMAIL_MAX,
            "description": (
                f"A syntactically valid address (no DNS check), at most {EMAIL_MAX} "
                "characters; the domain is stored lowercased. Unique among active "
                "profiles, case-insensitively."
            ),
        }
    ),
]
Reason = Annotated[
    str | None,
    WithJsonSchema(
        {
            "type": ["string", "null"],
            "maxLength": REASON_MAX,
            "pattern": REASON_PATTERN,
            "description": (
                f"Why the change is made, stored on its audit entry. At most {REASON_MAX} "
                "characters once trimmed; newlines and tabs allowed, other control "
                "characters not. Blank means none."
            ),
        }
    ),
]
RequiredReason = Annotated[
    str,
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": REASON_MAX,
            "pattern": REQUIRED_REASON_PATTERN,
            "description": (
                f"Why, stored on the audit entry: required, at most {REASON_MAX} characters "
                "once trimmed, not all of them invisible; newlines and tabs allowed, other "
                "control characters not."
            ),
        }
    ),
]


def _described(kind: Any, description: str) -> Any:
    return Annotated[kind, Field(description=description)]


class User(TypedDict):
    """A user profile."""

    __pydantic_config__ = STRICT  # type: ignore[misc]
    id: BigId
    name: Annotated[str, Field(min_length=1, max_length=NAME_MAX)]
    email: Annotated[str, Field(max_length=EMAIL_MAX)]
    created_at: Timestamp
    updated_at: Timestamp
    deleted_at: _described(Timestamp | None, "When it was soft-deleted; `null` while active.")
    version: _described(Annotated[int, Field(ge=1)], "Bumped by every change; the `ETag`.")


class Snapshot(TypedDict):
    """A profile's audited fields at one moment."""

    __pydantic_config__ = STRICT  # type: ignore[misc]
    name: str
    email: str
    deleted_at: Timestamp | None


class TokenCreator(TypedDict):
    """Who created an API token."""

    __pydantic_config__ = STRICT  # type: ignore[misc]
    id: _described(BigId | None, "The staff account's id; `null` for a command.")
    label: _described(str, "The username, or `cli:<os user>`.")


class ActingToken(TypedDict):
    """An API token, as named on audit entries."""

    __pydantic_config__ = STRICT  # type: ignore[misc]
    id: BigId
    name: _described(str, "Unique among its owner's tokens, whatever the case.")
    created_by: _described(
        TokenCreator | None, "Who created the token; `null` when it was not recorded."
    )


class Actor(TypedDict):
    """Who made a change."""

    __pydantic_config__ = STRICT  # type: ignore[misc]
    id: _described(BigId | None, "The staff account's id.")
    label: _described(str | None, "A readable name: the username, or `cli:<os user>`.")
    channel: _described(
        Channel | None,
        "How the change came in; `database` is a write that bypassed the app, recorded "
        "by the database's safety net.",
    )
    channel_detail: _described(
        str | None,
        "The API token's name, the operating-system user of a command, or the program "
        "named by a database client.",
    )
    token: _described(
        ActingToken | None,
        "The API token the change came through (`null` for other channels): it acts as "
        "the account above, and was created by `created_by`, possibly someone else.",
    )


class AuditEntry(TypedDict):
    """One change of one profile."""

    __pydantic_config__ = STRICT  # type: ignore[misc]
    id: BigId
    user_id: BigId
    operation: Operation
    timestamp: Timestamp
    version: _described(Annotated[int, Field(ge=1)], "The profile's version after the change.")
    changed_fields: list[SnapshotField]
    previous_data: _described(Snapshot | None, "`null` for a create.")
    new_data: Snapshot
    reason: str | None
    actor: Actor
    remote_addr: str | None
    request_id: _described(str | None, "The server's id of the request that made the change.")
    client_request_id: _described(
        str | None, "The `X-Request-ID` the client sent with it, if well-formed."
    )
    unattributed: _described(bool, "Written by the database's safety net, not the app.")


class SecurityEvent(TypedDict):
    """A sign-in, an account or token change, or a refusal."""

    __pydantic_config__ = STRICT  # type: ignore[misc]
    id: BigId
    timestamp: Timestamp
    event: Event
    count: _described(
        Annotated[int, Field(ge=1)],
        "How many times it happened: more than 1 for a kind anyone can repeat, counted "
        "in its window instead of listed again.",
    )
    last_seen: _described(Timestamp, "When it last happened (`timestamp` is the first time).")
    staff_id: _described(BigId | None, "The account the event is about.")
    username: _described(str | None, "The username given or affected (failed sign-ins too).")
    actor: _described(str | None, "Who did it.")
    remote_addr: str | None
    request_id: _described(str | None, "The server's id of the request (of the first occurrence).")
    client_request_id: _described(str | None, "The `X-Request-ID` the client sent, if well-formed.")
    details: _described(dict[str, Any], "Event-specific details.")


class ChainHead(TypedDict):
    """A link of the audit hash chain."""

    __pydantic_config__ = STRICT  # type: ignore[misc]
    seq: _described(Count, "Number of the newest link.")
    hash: _described(Annotated[str, Field(pattern="^[0-9a-f]{64}$")], "Its HMAC-SHA-256, hex.")


class AuditVerification(TypedDict):
    """One `flask audit verify` run."""

    __pydantic_config__ = STRICT  # type: ignore[misc]
    ok: bool
    started_at: Timestamp
    finished_at: Timestamp
    entries_checked: Count
    head: ChainHead
    pending_entries: Count
    drifted_profiles: Count
    checkpoint_seq: int | None
    first_bad_entry_id: int | None
    problem: str | None
    verified_by: str


class AuditVerificationStatus(TypedDict):
    """The audit chain now."""

    __pydantic_config__ = STRICT  # type: ignore[misc]
    last_verification: _described(
        AuditVerification | None, "The last verification run, `null` if none yet."
    )
    head: ChainHead
    pending_entries: _described(Count, "Entries committed but not linked into the chain yet.")
    oldest_unlinked_entry_seconds: _described(
        Annotated[float, Field(ge=0)] | None,
        "How long the oldest entry not linked yet has waited; `null` when none waits.",
    )
    unsealed_results_ignored: _described(
        Count,
        "Verification results newer than `last_verification` that the application did "
        "not seal: written by hand, ignored, and a sign of tampering.",
    )


class PersonalProfile(TypedDict):
    """A profile as stored now, erasure included."""

    __pydantic_config__ = STRICT  # type: ignore[misc]
    id: BigId
    name: _described(str, "After an erasure: `Erased profile`.")
    email: _described(str, "After an erasure: `erased-<id>@erased.invalid`.")
    created_at: Timestamp
    updated_at: Timestamp
    deleted_at: _described(Timestamp | None, "When it was soft-deleted; `null` while active.")
    erased_at: _described(Timestamp | None, "When its personal data was erased; `null` if never.")
    version: Annotated[int, Field(ge=1)]


class DataKeyState(TypedDict):
    """The key the profile's personal values in its history are encrypted with."""

    __pydantic_config__ = STRICT  # type: ignore[misc]
    state: _described(
        Literal["held", "erased", "none"],
        "`held`: the values are readable; `erased`: the key was destroyed and every personal "
        "value of the history reads `[erased]`; `none`: no key was ever made.",
    )
    created_at: Timestamp | None
    erased_at: Timestamp | None


class PersonalData(TypedDict):
    """Everything held about one profile, its history decrypted (GDPR Art. 15)."""

    __pydantic_config__ = STRICT  # type: ignore[misc]
    profile: PersonalProfile
    data_key: DataKeyState
    history: _described(list[AuditEntry], "Every audit entry of the profile, oldest first.")
    generated_at: Timestamp


_NEXT_CURSOR = "Pass back as `cursor` for the next page; `null` at the end."


class UserPage(TypedDict):
    """One page of profiles, in id order."""

    __pydantic_config__ = STRICT  # type: ignore[misc]
    items: list[User]
    next_cursor: _described(str | None, _NEXT_CURSOR)


class AuditPage(TypedDict):
    """One page of audit entries, newest first."""

    __pydantic_config__ = STRICT  # type: ignore[misc]
    items: list[AuditEntry]
    next_cursor: _described(str | None, _NEXT_CURSOR)


class SecurityEventPage(TypedDict):
    """One page of security events, newest first."""

    __pydantic_config__ = STRICT  # type: ignore[misc]
    items: list[SecurityEvent]
    next_cursor: _described(str | None, _NEXT_CURSOR)


# --- request bodies: what the document says of them; profile_rules reads them,
# with the dashboard's forms, and read_json_object refuses keys they lack


class ProfileInput(TypedDict):
    """A whole profile (create, replace). Unknown fields are refused."""

    __pydantic_config__ = STRICT  # type: ignore[misc]
    name: Name
    email: Email
    reason: NotRequired[Reason]


class ProfilePatch(TypedDict, total=False):
    """Some of a profile's fields. Unknown fields are refused."""

    __pydantic_config__ = STRICT  # type: ignore[misc]
    name: Name
    email: Email
    reason: Reason


class ReasonOnly(TypedDict, total=False):
    """Just the reason for a delete or restore."""

    __pydantic_config__ = STRICT  # type: ignore[misc]
    reason: Reason


class ErasureRequest(TypedDict):
    """Why a profile's personal data is erased (the request or legal ground)."""

    __pydantic_config__ = STRICT  # type: ignore[misc]
    reason: RequiredReason


def body_fields(shape: type) -> tuple[str, ...]:
    """The keys a request body of ``shape`` may hold."""
    return tuple(shape.__annotations__)


RESOURCES: tuple[type, ...] = (
    User,
    UserPage,
    AuditEntry,
    AuditPage,
    SecurityEvent,
    SecurityEventPage,
    AuditVerificationStatus,
    ProfileInput,
    ProfilePatch,
    ReasonOnly,
    PersonalData,
    ErasureRequest,
)
_ADAPTERS: dict[type, TypeAdapter[Any]] = {shape: TypeAdapter(shape) for shape in RESOURCES}


class _Schemas(GenerateJsonSchema):
    """JSON Schema 2020-12, as OpenAPI 3.1 takes it, without a title on every field."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def component_schemas() -> dict[str, Any]:
    """Every resource's JSON Schema and those it refers to, by name."""
    schemas: dict[str, Any] = {}
    for shape, adapter in _ADAPTERS.items():
        schema = adapter.json_schema(ref_template=SCHEMA_REF, schema_generator=_Schemas)
        schemas.update(schema.pop("$defs", {}))
        schemas[shape.__name__] = schema
    for schema in schemas.values():
        schema.pop("title", None)
    return {**schemas, "TimeBound": TIME_BOUND, "Problem": PROBLEM}


# --- written as JSON Schema: not a resource the API returns from a row

TIME_BOUND: dict[str, Any] = {
    "description": "An ISO 8601 date or datetime.",
    "anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}],
    "examples": ["2026-01-31", "2026-01-31T12:00:00Z"],
}
PROBLEM: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem detail: every error of this API.",
    "required": ["type", "title", "status", "detail", "request_id"],
    "additionalProperties": False,
    "properties": {
        "type": {
            "type": "string",
            "format": "uri",
            "description": (
                f"`about:blank` for plain HTTP errors, or `{TYPE_PREFIX}<code>` for this API's own."
            ),
        },
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "request_id": {
            "type": "string",
            "pattern": CLIENT_ID_PATTERN,
            "description": "The request's id, as in `X-Request-ID`: quote it in reports.",
        },
        "errors": {
            "type": "object",
            "description": "Each bad field or query parameter and its messages.",
            "additionalProperties": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        },
        "current": {
            "$ref": SCHEMA_REF.format(model="User"),
            "description": "On a refused write (409, 412): the profile as it is now.",
        },
    },
}


def respond(shape: type, value: Any, status: int = 200) -> Response:
    """``value`` written as JSON by the shape's serialiser."""
    body = _ADAPTERS[shape].dump_json(value)
    return current_app.response_class(body, status=status, mimetype="application/json")


def respond_page(shape: type, page: Page[T], item_json: Callable[[T], Any]) -> Response:
    """One page of a list: its items in their JSON shape and the next page's cursor."""
    items = [item_json(item) for item in page.items]
    return respond(shape, {"items": items, "next_cursor": page.next_cursor})
