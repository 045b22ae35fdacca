"""Entry seals: the bytes the application seals at write time are the bytes
verification rebuilds in the database, for any value an entry can hold."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from tests.support.database import insert_profile_directly
from webapp.audit import seal
from webapp.audit.chain import write_entries

KEY = b"a key for the seal tests"
CANONICAL_SQL = seal.CANONICAL_ENTRY_SQL

# Text as it can reach an entry: any code point PostgreSQL stores (no NUL).
texts = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00", exclude_categories=["Cs"]),
    max_size=40,
)
snapshots = st.fixed_dictionaries({"name": texts, "email": texts, "deleted_at": st.none() | texts})
entries = st.fixed_dictionaries(
    {
        "operation": st.sampled_from(["update", "delete", "restore"]),
        "timestamp": st.datetimes(
            min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
        ),
        "previous_data": snapshots,
        "new_data": snapshots,
        "changed_fields": st.lists(st.sampled_from(["name", "email", "deleted_at"]), max_size=3),
        "version": st.integers(1, 2**31 - 1),
        "reason": st.none() | texts,
        "actor_label": st.none() | texts.map(lambda value: value[:100]),
        "channel": st.sampled_from(["web", "api", "cli"]),
        "channel_detail": st.none() | texts.map(lambda value: value[:100]),
        "remote_addr": st.none() | st.ip_addresses().map(str),
        "request_id": st.none() | texts,
        "unattributed": st.booleans(),
    }
)


def a_profile(engine: Engine) -> int:
    with engine.begin() as connection:
        return insert_profile_directly(connection, "P", f"{uuid.uuid4()}@example.com")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(entry=entries)
def test_the_seal_made_in_python_matches_the_bytes_the_database_builds(engine, entry):
    user_id = a_profile(engine)
    with engine.begin() as connection:
        entry_id = connection.execute(
            text("SELECT nextval(pg_get_serial_sequence('user_audit', 'id'))")
        ).scalar_one()
        row = {"id": entry_id, "user_id": user_id, "actor_id": None, **entry}
        canonical = seal.canonical_entry(row)
        row["seal"] = seal.seal_of(KEY, canonical)
        write_entries(connection, [row])
        stored = connection.execute(
            text(
                f"SELECT {CANONICAL_SQL} AS canonical, {seal.ENTRY_DIGEST_SQL} AS digest, seal "
                "FROM user_audit WHERE id = :id"
            ),
            {"id": entry_id},
        ).one()
    assert bytes(stored.canonical) == canonical
    assert bytes(stored.digest) == hashlib.sha256(canonical).digest()
    assert bytes(stored.seal) == seal.digest_seal(KEY, bytes(stored.digest))
    assert bytes(stored.seal) == hmac.new(KEY, stored.digest, hashlib.sha256).digest()


def test_a_seal_covers_the_entry_id_and_time():
    row = {
        "id": 7,
        "user_id": 1,
        "operation": "create",
        "timestamp": datetime(2026, 12, 2, 4, 5, 6, 7, tzinfo=UTC),
        "previous_data": None,
        "new_data": {"name": "Ada", "email": "ada@example.com", "deleted_at": None},
        "changed_fields": ["name", "email"],
        "version": 1,
        "unattributed": False,
    }
    original = seal.seal_of(KEY, seal.canonical_entry(row))
    assert seal.seal_of(KEY, seal.canonical_entry({**row, "id": 8})) != original
    later = {**row, "timestamp": row["timestamp"] + timedelta(microseconds=1)}
    assert seal.seal_of(KEY, seal.canonical_entry(later)) != original
    assert seal.seal_of(b"another key", seal.canonical_entry(row)) != original
