"""``flask privacy encrypt-trail``: entries written before encryption (personal
values in clear, sealed or not, linked with encoding 1 or 2) become what the
application writes today, and the chain still verifies."""

from __future__ import annotations

import hmac
import json
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import Engine, make_url, text

from tests.conftest import SUITE_KEYS
from tests.support.cli import invoke
from tests.support.database import append_only_lifted, insert_profile_directly, rewrite_history
from tests.support.profiles import numbered_profiles, update_profile
from webapp import create_app
from webapp.audit import chain
from webapp.audit.chain import GENESIS_HASH
from webapp.audit.personal_data import PERSONAL_FIELDS, is_encrypted
from webapp.audit.seal import ENTRY_DIGEST_SQL, digest_seal
from webapp.cli.operator_commands import acting_from_cli
from webapp.extensions import db
from webapp.services import audit_integrity
from webapp.services.audit_integrity import Checkpoint
from webapp.services.trail_encryption import NotTablesOwner, encrypt_trail

KEY = SUITE_KEYS["AUDIT_CHAIN_KEY"].encode()
INDEX_KEY = SUITE_KEYS["PRIVACY_INDEX_KEY"].encode()
#: How the profiles of the legacy history were written.
BEFORE_SEALS, SEALED, SAFETY_NET = "before seals", "sealed", "safety net"


def write_legacy_history(engine: Engine, profiles: int, changes: int) -> list[int]:
    """Profiles and their history as releases before encryption left them.

    Every personal value is in clear, no profile has a data key or an email
    index. The first third of the profiles were written before seals existed
    (no seal, links of encoding 1); the others by the application (sealed,
    encoding 2), each with one change made around it that the safety net
    recorded (unattributed, no seal, encoding 2). Every entry is linked.
    Returns the profiles' ids.
    """
    with engine.begin() as connection, append_only_lifted(connection):
        # The safety net would record the inserts below as changes of its own.
        connection.execute(text("ALTER TABLE users DISABLE TRIGGER users_audit_safety_net"))
        user_ids = []
        for n in range(profiles):
            kind = BEFORE_SEALS if n < profiles // 3 else SEALED
            name = f"Legacy {n} v{changes}"
            email = f"Legacy{n}@Example.com"
            user_id = connection.execute(
                text(
                    "INSERT INTO users (name, email, version) VALUES (:name, :email, :version) "
                    "RETURNING id"
                ),
                {"name": name, "email": email, "version": changes + 1},
            ).scalar_one()
            user_ids.append(user_id)
            for version in range(1, changes + 2):
                channel = SAFETY_NET if kind == SEALED and version == changes + 1 else kind
                new = {"name": f"Legacy {n} v{version - 1}", "email": email, "deleted_at": None}
                previous = None
                if version > 1:
                    previous = {**new, "name": f"Legacy {n} v{version - 2}"}
                connection.execute(
                    text(
                        "INSERT INTO user_audit (user_id, operation, previous_data, new_data, "
                        "changed_fields, version, reason, actor_label, channel, unattributed) "
                        "VALUES (:user_id, :operation, CAST(:previous AS jsonb), "
                        "CAST(:new AS jsonb), :fields, :version, :reason, :actor, :channel, "
                        ":unattributed)"
                    ),
                    {
                        "user_id": user_id,
                        "operation": "create" if version == 1 else "update",
                        "previous": None if previous is None else _json(previous),
                        "new": _json(new),
                        "fields": ["name", "email"] if version == 1 else ["name"],
                        "version": version,
                        "reason": f"ticket {n}-{version}",
                        "actor": "db:postgres" if channel == SAFETY_NET else "cli:ops",
                        "channel": "database" if channel == SAFETY_NET else "cli",
                        "unattributed": channel == SAFETY_NET,
                    },
                )
        # Seals as the application wrote them, then the links in id order.
        first_sealed = user_ids[profiles // 3]
        sealed = connection.execute(
            text(
                f"SELECT id, {ENTRY_DIGEST_SQL} AS digest FROM user_audit "
                "WHERE NOT unattributed AND user_id >= :first_sealed"
            ),
            {"first_sealed": first_sealed},
        ).all()
        connection.execute(
            text("UPDATE user_audit SET seal = :seal WHERE id = :id"),
            [{"id": row.id, "seal": digest_seal(KEY, bytes(row.digest))} for row in sealed],
        )
        rows = connection.execute(
            text(
                f"SELECT id, user_id >= :first_sealed AS sealed_era, {ENTRY_DIGEST_SQL} AS digest, "
                f"{chain.CANONICAL_ENTRY_V1_SQL} AS legacy FROM user_audit ORDER BY id"
            ),
            {"first_sealed": first_sealed},
        ).all()
        previous_hash = GENESIS_HASH
        for seq, row in enumerate(rows, start=1):
            if row.sealed_era:
                encoding, linked = 2, digest_seal(KEY, bytes(row.digest))
            else:
                encoding, linked = 1, bytes(row.legacy)
            previous_hash = chain.link_hash(KEY, previous_hash, seq, linked)
            connection.execute(
                text(
                    "INSERT INTO audit_chain (seq, entry_id, hash, encoding) "
                    "VALUES (:seq, :entry_id, :hash, :encoding)"
                ),
                {"seq": seq, "entry_id": row.id, "hash": previous_hash, "encoding": encoding},
            )
        connection.execute(
            text("UPDATE audit_chain_head SET seq = :seq, hash = :hash"),
            {"seq": len(rows), "hash": previous_hash},
        )
        connection.execute(text("ALTER TABLE users ENABLE TRIGGER users_audit_safety_net"))
    return user_ids


def _json(value: dict) -> str:
    return json.dumps(value)


def clear_values(database) -> list[int]:
    """Ids of the entries holding a personal value in clear."""
    return [
        row["id"]
        for row in database.raw_audit()
        for snapshot in (row["previous_data"], row["new_data"])
        if snapshot
        and any(
            snapshot.get(name) is not None and not is_encrypted(snapshot.get(name))
            for name in PERSONAL_FIELDS
        )
    ]


def verify(app: Flask, **kwargs) -> audit_integrity.Verification:
    with app.app_context():
        return audit_integrity.verify(db.engine, KEY, **kwargs)


def chain_is_whole(result: audit_integrity.Verification, entries: int) -> None:
    """Every link and seal checks out (the drift check is verify's own business)."""
    assert result.problem is None, result.problem
    assert result.forged_entries == 0, result.forged_sample
    assert result.entries_checked == entries
    assert result.pending_entries == 0


@pytest.fixture
def legacy(app, client, engine, link_chain):
    """A few hundred entries from before encryption, then a few of today's."""
    user_ids = write_legacy_history(engine, profiles=45, changes=5)
    assert verify(app).problem is None
    # Today's application: new profiles, and changes of old ones (which get a key).
    numbered_profiles(client, 3)
    update_profile(client, user_ids[0], name="Changed today")
    update_profile(client, user_ids[-1], name="Changed today too")
    # Written around the application: queued, in clear until the sealer encrypts it.
    with engine.begin() as connection:
        insert_profile_directly(connection, "Direct", "direct@example.com")
    with app.app_context():  # the sealer encrypts that one with the app's keys
        link_chain()
    with engine.begin() as connection:
        insert_profile_directly(connection, "Queued", "queued@example.com")
    return user_ids


def test_encrypt_trail_encrypts_every_clear_value_and_the_chain_still_verifies(
    app, legacy, runner, engine, database, cli_os_user
):
    before = database.raw_audit()
    assert len(before) == 45 * 6 + 3 + 2 + 2
    clear_before = set(clear_values(database))
    # The legacy entries, and the two written around the application (one linked,
    # encrypted by the sealer; one still queued, in clear).
    assert len(clear_before) == 45 * 6 + 1
    shown_before = database.audit()
    [queued] = [
        row["id"] for row in database.rows("SELECT entry_id AS id FROM audit_chain_pending")
    ]
    links_before = database.rows(
        "SELECT seq, entry_id, encoding, hash FROM audit_chain ORDER BY seq"
    )
    head_before = database.rows("SELECT seq, hash FROM audit_chain_head")[0]
    checkpoint = Checkpoint(head_before["seq"], bytes(head_before["hash"]), before[0]["timestamp"])

    result = invoke(runner, "privacy", "encrypt-trail")
    assert result.exit_code == 0, result.output

    after = database.raw_audit()
    assert clear_values(database) == []
    # Readers see the same values as before, decrypted.
    assert [(e["id"], e["previous_data"], e["new_data"]) for e in database.audit()] == [
        (e["id"], e["previous_data"], e["new_data"]) for e in shown_before
    ]
    by_id = {row["id"]: row for row in before}
    for row in after:
        old = by_id[row["id"]]
        for column in ("operation", "timestamp", "changed_fields", "version", "reason"):
            assert row[column] == old[column]
        if row["id"] == queued:  # linked first, so encrypted and sealed by the sealer
            assert row["seal"] is not None
        elif row["id"] in clear_before:
            assert row["new_data"] != old["new_data"]
            # A seal where there was one, made again; none where there was none.
            assert (row["seal"] is None) == (old["seal"] is None)
            if old["seal"] is not None:
                assert row["seal"] != old["seal"]
        else:
            assert row == old
    # Every link keeps its number, entry and encoding.
    links_after = database.rows(
        "SELECT seq, entry_id, encoding, hash FROM audit_chain ORDER BY seq"
    )
    assert [(r["seq"], r["entry_id"], r["encoding"]) for r in links_after[: len(links_before)]] == [
        (r["seq"], r["entry_id"], r["encoding"]) for r in links_before
    ]
    assert {r["encoding"] for r in links_after} == {1, 2}
    assert links_after[0]["hash"] != links_before[0]["hash"]

    verification = verify(app)
    chain_is_whole(verification, len(after))
    # Checkpoints taken before no longer match, as the command says.
    assert verify(app, checkpoint=checkpoint).problem is not None
    assert "save a new one now with `flask audit checkpoint`" in result.output

    # Every profile has a data key and its email index.
    users = database.rows(
        "SELECT u.id, u.email, u.email_index, k.wrapped_key FROM users u "
        "LEFT JOIN profile_data_keys k ON k.user_id = u.id"
    )
    assert len(users) == 45 + 3 + 2
    for user in users:
        assert user["wrapped_key"] is not None
        assert bytes(user["email_index"]) == hmac.digest(
            INDEX_KEY, user["email"].lower().encode(), "sha256"
        )

    [event] = [e for e in database.security_events() if e["event"] == "audit_trail_encrypted"]
    assert event["actor_label"] == f"cli:{cli_os_user}"
    details = event["details"]
    assert details["entries_encrypted"] == len(clear_before) - 1
    assert details["entries_resealed"] == 30 * 5
    assert details["data_keys_made"] == 45 - 2
    # Changing a name today leaves the index to be filled too.
    assert details["email_indexes_filled"] == 45 + 2
    # The old head is the chain's before it was re-linked: the queued entry
    # linked onto the head there was.
    digest = database.scalar(f"SELECT {ENTRY_DIGEST_SQL} FROM user_audit WHERE id = :id", id=queued)
    old_head_hash = chain.link_hash(
        KEY, bytes(head_before["hash"]), len(before), digest_seal(KEY, bytes(digest))
    )
    assert details["old_head"] == {"seq": len(before), "hash": old_head_hash.hex()}
    head_after = database.rows("SELECT seq, hash FROM audit_chain_head")[0]
    assert details["new_head"] == {
        "seq": head_after["seq"],
        "hash": bytes(head_after["hash"]).hex(),
    }
    assert verification.head.hash == bytes(head_after["hash"])
    assert f"hash {details['new_head']['hash']}" in result.output

    # The guards were lifted inside the command's transaction only.
    with pytest.raises(Exception, match="append-only"):
        rewrite_history_without_lifting(engine, after[0]["id"])
    with pytest.raises(Exception, match="append-only"), engine.begin() as connection:
        connection.execute(text("UPDATE audit_chain SET hash = hash WHERE seq = 1"))

    # A second run finds nothing to do, and changes nothing.
    again = invoke(runner, "privacy", "encrypt-trail")
    assert again.exit_code == 0, again.output
    assert "Nothing to do" in again.output
    assert database.raw_audit() == after
    assert database.security_event_names().count("audit_trail_encrypted") == 1


def test_a_trail_that_does_not_verify_is_refused_and_left_as_it_was(
    app, legacy, runner, engine, database, link_chain
):
    with app.app_context():
        link_chain()
    victim = database.raw_audit()[50]["id"]
    rewrite_history(engine, f"UPDATE user_audit SET reason = 'edited' WHERE id = {victim}")
    before = database.fingerprint()
    keys_before = database.rows("SELECT * FROM profile_data_keys ORDER BY user_id")

    result = invoke(runner, "privacy", "encrypt-trail")
    assert result.exit_code == 1
    assert f"entry {victim} (link 51) does not match its link's hash" in result.output
    assert "nothing was changed" in result.output
    assert database.fingerprint() == before
    assert database.rows("SELECT * FROM profile_data_keys ORDER BY user_id") == keys_before
    assert "audit_trail_encrypted" not in database.security_event_names()
    # The guards are back up: nothing was lifted for anyone else.
    with pytest.raises(Exception, match="append-only"):
        rewrite_history_without_lifting(engine, victim)


def rewrite_history_without_lifting(engine: Engine, entry_id: int) -> None:
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE user_audit SET reason = 'again' WHERE id = :id"), {"id": entry_id}
        )


def test_a_forged_seal_is_refused_rather_than_sealed_again(app, legacy, runner, engine, database):
    victim = database.rows(
        "SELECT id FROM user_audit WHERE seal IS NOT NULL AND reason LIKE 'ticket%' LIMIT 1"
    )[0]["id"]
    rewrite_history(engine, f"UPDATE user_audit SET seal = sha256(seal) WHERE id = {victim}")
    result = invoke(runner, "privacy", "encrypt-trail")
    assert result.exit_code == 1
    assert f"entry {victim}" in result.output
    assert "does not match its seal" in result.output
    assert len(clear_values(database)) > 0


def test_a_trail_already_encrypted_has_nothing_to_do(app, client, runner, database, link_chain):
    numbered_profiles(client, 3)
    link_chain()
    before = database.raw_audit()
    result = invoke(runner, "privacy", "encrypt-trail")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Nothing to do")
    assert database.raw_audit() == before
    assert "audit_trail_encrypted" not in database.security_event_names()


GRANTS = Path(__file__).resolve().parent.parent / "migrations" / "restricted_app_role.sql"


def test_a_role_that_does_not_own_the_tables_is_refused_and_changes_nothing(
    app, legacy, engine, database
):
    with engine.begin() as connection:
        connection.exec_driver_sql(GRANTS.read_text())
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).set(username="profile_audit_app")
    restricted = create_app({"SQLALCHEMY_DATABASE_URI": url})
    before = database.fingerprint()
    with (
        restricted.app_context(),
        acting_from_cli(),
        pytest.raises(NotTablesOwner, match="only the owner of the tables may do"),
    ):
        encrypt_trail()
    with restricted.app_context():
        db.engine.dispose()
    assert database.fingerprint() == before
    assert clear_values(database)
