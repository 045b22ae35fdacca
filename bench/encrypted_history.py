"""The generated history with its personal values encrypted, as the application stores them.

``bench._common.generate_data`` writes entries with SQL, names and emails in
clear, as entries were before encryption. ``encrypt_history`` then gives every
profile a data key (wrapped by the run's master key, ``PRIVACY_MASTER_KEY``)
and rewrites every entry's personal values with ``encrypt_snapshot`` (the
application's own code: same key per profile, fresh nonce per value, the
entry's id, profile, side and field as associated data), so that readers
(exports, ``verify``'s drift check) decrypt what they would in production.
Run it before sealing and linking: seals cover the ciphertext.
"""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench._common import drop_secondary_indexes
from webapp.audit.personal_data import ConfiguredMasterKeys, encrypt_snapshot, new_data_key

#: Entries read, encrypted and written back per batch.
BATCH = 20_000


def encrypt_history(url: str, master_key: str) -> float:
    """Encrypt every entry's personal values in place; return the seconds it took
    (the table rewritten compact and analysed included)."""
    started = time.perf_counter()
    provider = ConfiguredMasterKeys(master_key)
    ciphers: dict[int, AESGCM] = {}
    encrypting = 0.0
    with psycopg.connect(url) as reader, psycopg.connect(url) as writer:
        with writer.cursor() as cursor:
            cursor.execute(
                "CREATE TEMPORARY TABLE encrypted_entries "
                "(id bigint PRIMARY KEY, previous_data jsonb, new_data jsonb)"
            )
            user_ids = [row[0] for row in reader.execute("SELECT id FROM users ORDER BY id")]
            with cursor.copy(
                "COPY profile_data_keys (user_id, master_key_id, wrapped_key) FROM STDIN"
            ) as copy:
                for user_id in user_ids:
                    plain = new_data_key()
                    ciphers[user_id] = AESGCM(plain)
                    copy.write_row((user_id, provider.current_key_id, provider.wrap(plain)))
            entries = reader.cursor(name="entries_to_encrypt")
            entries.execute("SELECT id, user_id, previous_data, new_data FROM user_audit")
            with cursor.copy(
                "COPY encrypted_entries (id, previous_data, new_data) FROM STDIN"
            ) as copy:
                while batch := entries.fetchmany(BATCH):
                    moment = time.perf_counter()
                    rows = [
                        _encrypted(ciphers[user_id], entry_id, user_id, previous, new)
                        for entry_id, user_id, previous, new in batch
                    ]
                    encrypting += time.perf_counter() - moment
                    for row in rows:
                        copy.write_row(row)
            entries.close()
            reader.rollback()
            # History refuses UPDATE; lifted in this transaction only. Secondary
            # indexes are dropped meanwhile and rebuilt after (as build_chain does):
            # one sorted build each instead of a million insertions.
            cursor.execute("ALTER TABLE user_audit DISABLE TRIGGER USER")
            dropped = drop_secondary_indexes(writer, ("user_audit",))
            cursor.execute(
                "UPDATE user_audit SET previous_data = e.previous_data, new_data = e.new_data "
                "FROM encrypted_entries e WHERE e.id = user_audit.id"
            )
            cursor.execute("ALTER TABLE user_audit ENABLE TRIGGER USER")
        writer.commit()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM FULL user_audit")
        for definition in dropped:
            connection.execute(definition)
        connection.execute("VACUUM (ANALYZE) user_audit")
        connection.execute("VACUUM (ANALYZE) profile_data_keys")
    seconds = time.perf_counter() - started
    print(
        f"  {len(ciphers):,} data keys made; personal values encrypted in {seconds:.1f} s "
        f"(AES-GCM and JSON in Python: {encrypting:.1f} s)",
        flush=True,
    )
    return seconds


def _encrypted(
    cipher: AESGCM, entry_id: int, user_id: int, previous: Any, new: Any
) -> tuple[int, str | None, str]:
    stored_previous = (
        None
        if previous is None
        else json.dumps(encrypt_snapshot(cipher, entry_id, user_id, "previous", previous))
    )
    stored_new = json.dumps(encrypt_snapshot(cipher, entry_id, user_id, "new", new))
    return entry_id, stored_previous, stored_new
