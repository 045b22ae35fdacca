"""CPU cost of the API's input and output shapes: hand-written code against schema libraries.

Measures, in-process and without a database, what one request spends on its
shapes: a profile (read and check a JSON body of name, email and reason,
then write the profile as JSON) and a 50-entry timeline page (write 50 audit
entries as JSON). Each variant is timed with ``timeit`` (CPU time of this
process, best of ``--repeat`` runs), on the same objects:

- ``hand``: today's code (``webapp.api.representations`` + ``json.dumps``);
- ``pydantic``: pydantic v2 models read from the objects' attributes and
  written with ``model_dump_json`` (what spectree and flask-openapi3 do);
- ``pydantic-typed-dict``: the hand-built dicts written by a pydantic
  ``TypeAdapter`` of a ``TypedDict`` (its Rust serialiser, no validation);
- ``marshmallow``: marshmallow 4 schemas' ``load``/``dump`` + ``json.dumps``
  (what flask-smorest and APIFlask do).

Run from the project root (needs the candidate libraries installed)::

    .venv/bin/python -m bench.api_schemas [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import time
import timeit
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from typing_extensions import TypedDict

from webapp.api.representations import audit_entry_json, user_json


def _now() -> datetime:
    return datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


USER = SimpleNamespace(
    id=42,
    name="Ada Lovelace",
    email="ada@example.com",
    created_at=_now(),
    updated_at=_now(),
    deleted_at=None,
    version=3,
)
BODY = b'{"name": "Ada Lovelace", "email": "ada@example.com", "reason": "legal name"}'
ENTRIES = [
    SimpleNamespace(
        id=1000 + n,
        user_id=n,
        operation="update",
        timestamp=_now(),
        version=2,
        changed_fields=["name"],
        previous_data={"name": f"Old {n}", "email": f"u{n}@example.com", "deleted_at": None},
        new_data={"name": f"New {n}", "email": f"u{n}@example.com", "deleted_at": None},
        reason="legal name" if n % 2 else None,
        actor_id=7,
        actor_label="audrey",
        channel="api",
        channel_detail="nightly",
        token_id=3 if n % 2 else None,
        token_name="nightly",  # noqa: S106 - a token's name, not a secret
        token_created_by_id=1,
        token_created_by="root",  # noqa: S106 - who created it
        remote_addr="192.0.2.1",
        request_id="0" * 32,
        client_request_id=None,
        unattributed=False,
    )
    for n in range(50)
]


def hand_profile() -> bytes:
    body = json.loads(BODY)
    assert set(body) <= {"name", "email", "reason"}
    return json.dumps(user_json(USER)).encode()


def hand_page() -> bytes:
    return json.dumps(
        {"items": [audit_entry_json(e) for e in ENTRIES], "next_cursor": None}
    ).encode()


def pydantic_variants() -> dict[str, tuple[Any, Any]]:
    from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid", from_attributes=True)

    class ProfileInput(Strict):
        name: str = Field(max_length=255)
        email: str = Field(max_length=320)
        reason: str | None = Field(default=None, max_length=500)

    class User(Strict):
        id: int
        name: str
        email: str
        created_at: datetime
        updated_at: datetime
        deleted_at: datetime | None
        version: int

    class Snapshot(Strict):
        name: str
        email: str
        deleted_at: str | None

    class Creator(Strict):
        id: int | None
        label: str

    class Token(Strict):
        id: int
        name: str
        created_by: Creator | None

    class Actor(Strict):
        id: int | None
        label: str | None
        channel: str | None
        channel_detail: str | None
        token: Token | None

    class Entry(Strict):
        id: int
        user_id: int
        operation: str
        timestamp: datetime
        version: int
        changed_fields: list[str]
        previous_data: Snapshot | None
        new_data: Snapshot
        reason: str | None
        actor: Actor
        remote_addr: str | None
        request_id: str | None
        client_request_id: str | None
        unattributed: bool

    class Page(Strict):
        items: list[Entry]
        next_cursor: str | None

    def profile() -> bytes:
        ProfileInput.model_validate_json(BODY)
        return User.model_validate(USER).model_dump_json().encode()

    def page() -> bytes:
        # The entries' nested shape is built from the row's columns first, as
        # any library needs (the row is flat).
        items = [Entry.model_validate(audit_entry_json(e)) for e in ENTRIES]
        return Page(items=items, next_cursor=None).model_dump_json().encode()

    class UserDict(TypedDict):
        id: int
        name: str
        email: str
        created_at: str | None
        updated_at: str | None
        deleted_at: str | None
        version: int

    class SnapshotDict(TypedDict):
        name: str
        email: str
        deleted_at: str | None

    class EntryDict(TypedDict):
        id: int
        user_id: int
        operation: str
        timestamp: str | None
        version: int
        changed_fields: list[str]
        previous_data: SnapshotDict | None
        new_data: SnapshotDict
        reason: str | None
        actor: dict[str, Any]
        remote_addr: str | None
        request_id: str | None
        client_request_id: str | None
        unattributed: bool

    class PageDict(TypedDict):
        items: list[EntryDict]
        next_cursor: str | None

    body_adapter = TypeAdapter(ProfileInput)
    user_adapter = TypeAdapter(UserDict)
    page_adapter = TypeAdapter(PageDict)

    def profile_typed() -> bytes:
        body_adapter.validate_json(BODY)
        return user_adapter.dump_json(user_json(USER))

    def page_typed() -> bytes:
        return page_adapter.dump_json(
            {"items": [audit_entry_json(e) for e in ENTRIES], "next_cursor": None}
        )

    return {"pydantic": (profile, page), "pydantic-typed-dict": (profile_typed, page_typed)}


def marshmallow_variant() -> tuple[Any, Any]:
    from marshmallow import Schema, fields, validate

    class ProfileInput(Schema):
        name = fields.String(required=True, validate=validate.Length(max=255))
        email = fields.String(required=True, validate=validate.Length(max=320))
        reason = fields.String(allow_none=True, validate=validate.Length(max=500))

    class User(Schema):
        id = fields.Integer()
        name = fields.String()
        email = fields.String()
        created_at = fields.DateTime()
        updated_at = fields.DateTime()
        deleted_at = fields.DateTime(allow_none=True)
        version = fields.Integer()

    class Snapshot(Schema):
        name = fields.String()
        email = fields.String()
        deleted_at = fields.String(allow_none=True)

    class Creator(Schema):
        id = fields.Integer(allow_none=True, attribute="token_created_by_id")
        label = fields.String(attribute="token_created_by")

    class Token(Schema):
        id = fields.Integer(attribute="token_id")
        name = fields.String(attribute="token_name")
        created_by = fields.Function(
            lambda e: Creator().dump(e) if e.token_created_by is not None else None
        )

    class Actor(Schema):
        id = fields.Integer(allow_none=True, attribute="actor_id")
        label = fields.String(allow_none=True, attribute="actor_label")
        channel = fields.String(allow_none=True)
        channel_detail = fields.String(allow_none=True)
        token = fields.Function(lambda e: Token().dump(e) if e.token_id is not None else None)

    class Entry(Schema):
        id = fields.Integer()
        user_id = fields.Integer()
        operation = fields.String()
        timestamp = fields.DateTime()
        version = fields.Integer()
        changed_fields = fields.List(fields.String())
        previous_data = fields.Nested(Snapshot, allow_none=True)
        new_data = fields.Nested(Snapshot)
        reason = fields.String(allow_none=True)
        actor = fields.Function(lambda e: Actor().dump(e))
        remote_addr = fields.String(allow_none=True)
        request_id = fields.String(allow_none=True)
        client_request_id = fields.String(allow_none=True)
        unattributed = fields.Boolean()

    body_schema, user_schema, entries_schema = ProfileInput(), User(), Entry(many=True)

    def profile() -> bytes:
        body_schema.load(json.loads(BODY))
        return json.dumps(user_schema.dump(USER)).encode()

    def page() -> bytes:
        return json.dumps({"items": entries_schema.dump(ENTRIES), "next_cursor": None}).encode()

    return profile, page


def measure(call: Any, repeat: int) -> float:
    """Microseconds of CPU per call, best of ``repeat`` runs of about 0.2 s each."""
    timer = timeit.Timer(call, timer=time.process_time)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    variants: dict[str, tuple[Any, Any]] = {"hand": (hand_profile, hand_page)}
    variants.update(pydantic_variants())
    variants["marshmallow"] = marshmallow_variant()
    timings = {
        name: (measure(profile, args.repeat), measure(page, args.repeat))
        for name, (profile, page) in variants.items()
    }
    base_profile, base_page = timings["hand"]
    print("| Variant | profile µs | x hand | 50-entry page µs | x hand |")
    print("|---|---:|---:|---:|---:|")
    for name, (p, q) in timings.items():
        print(f"| {name} | {p:.1f} | {p / base_profile:.2f} | {q:.1f} | {q / base_page:.2f} |")


if __name__ == "__main__":
    main()
