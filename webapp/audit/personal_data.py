"""Personal values in audit entries, encrypted per profile so that they can be erased.

Every profile has its own data key (AES-256-GCM), kept wrapped by a master key
in ``profile_data_keys`` (envelope encryption). Each personal value an entry
stores (the fields the ``User`` model marks ``info={"personal": True}``) is
encrypted with its profile's data key and a fresh 96-bit nonce, with the
entry's id, the profile's id, the side (``previous``/``new``) and the field's
name bound in as associated data: a value copied into another entry, another
profile's entry, the other side or another field no longer decrypts. What the
entry holds is ``{"ciphertext": base64(nonce || ciphertext || tag)}`` in place
of the value; field names, operation, actor, time, version and reason stay in
clear, so filters work and seals and links cover the ciphertext (verification
never needs a data key).

Destroying a profile's data key (``webapp.services.privacy``) erases every
personal value of its history at once: the entries stay, unchanged, sealed and
linked, and show ``[erased]`` where the values were.

Master keys come from a ``KeyProvider``; ``ConfiguredMasterKeys`` derives
them from ``PRIVACY_MASTER_KEY`` (and, while a rotation is under way, the
``PRIVACY_PREVIOUS_MASTER_KEY`` it replaces). A key-management service would
be another provider with the same three methods.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app
from sqlalchemy import Connection, event, text
from sqlalchemy import insert as sa_insert
from sqlalchemy.orm.attributes import set_committed_value

from webapp.audit.seal import SEALED_FIELDS, canonical_entry, seal_of
from webapp.models import PERSONAL_FIELDS, ProfileDataKey, UserAudit

#: What a reader sees in place of a value whose profile was erased.
ERASED = "[erased]"
#: ...and in place of a value that does not decrypt (moved, altered, or its key missing).
UNREADABLE = "[unreadable]"
#: The key under which an entry's snapshot holds an encrypted value.
CIPHERTEXT = "ciphertext"
_NONCE_BYTES = 12
_DATA_KEY_BITS = 256

__all__ = [
    "CIPHERTEXT",
    "ERASED",
    "PERSONAL_FIELDS",
    "UNREADABLE",
    "ConfiguredMasterKeys",
    "KeyProvider",
    "MasterKeyError",
    "UnknownMasterKey",
    "decrypt_value",
    "encrypt_snapshot",
    "is_encrypted",
    "new_data_key",
    "reveal_snapshot",
]


class MasterKeyError(RuntimeError):
    """The master key cannot unwrap a data key: the wrong key, or a damaged row."""


class UnknownMasterKey(MasterKeyError):
    """A data key is wrapped by a master key this process was not given."""


class KeyProvider(Protocol):
    """Holds the master keys and wraps data keys with them."""

    #: the id of the key that wraps new data keys (kept beside each wrapped key)
    current_key_id: str

    def wrap(self, data_key: bytes) -> bytes:
        """``data_key`` wrapped by the current master key."""
        ...

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        """The data key ``wrapped`` by master key ``key_id``."""
        ...

    def knows(self, key_id: str) -> bool:
        """Whether this provider holds master key ``key_id``."""
        ...


def _derive(secret: str) -> tuple[str, AESGCM]:
    """An AES-256 key from a configured secret, and the key's public id."""
    key = hashlib.sha256(b"profile-audit master key\x00" + secret.encode()).digest()
    key_id = hmac.digest(key, b"key id", "sha256")[:8].hex()
    return key_id, AESGCM(key)


# A profile's id is not known when its key is made (the row is not yet
# inserted); the values' own associated data binds them to their profile.
_WRAP_CONTEXT = b"profile data key"


class ConfiguredMasterKeys:
    """Master keys from configuration: the current one, and the one it replaces."""

    def __init__(self, current: str, previous: str | None = None) -> None:
        self.current_key_id, self._current = _derive(current)
        self._keys = {self.current_key_id: self._current}
        if previous:
            previous_id, previous_key = _derive(previous)
            self._keys.setdefault(previous_id, previous_key)

    def wrap(self, data_key: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._current.encrypt(nonce, data_key, _WRAP_CONTEXT)

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        master = self._keys.get(key_id)
        if master is None:
            raise UnknownMasterKey(
                f"a data key is wrapped by master key {key_id}, which this process was not "
                "given: set PRIVACY_MASTER_KEY (and, during a rotation, "
                "PRIVACY_PREVIOUS_MASTER_KEY)"
            )
        try:
            return master.decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], _WRAP_CONTEXT)
        except InvalidTag:
            raise MasterKeyError(
                f"a data key does not unwrap under master key {key_id}: the key is wrong "
                "or the row was altered"
            ) from None

    def knows(self, key_id: str) -> bool:
        return key_id in self._keys


def new_data_key() -> bytes:
    """A fresh random data key for one profile."""
    return AESGCM.generate_key(_DATA_KEY_BITS)


class DataKeyCache:
    """Unwrapped data keys by their wrapped bytes, most recently used kept.

    Keyed by what the database holds, not by profile: once a key is destroyed
    its wrapped bytes are never read again, so no cached key outlives its row
    as far as any reader can tell (``forget`` also drops it from memory).
    """

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._keys: OrderedDict[bytes, AESGCM] = OrderedDict()
        self._lock = threading.Lock()

    def cipher(self, provider: KeyProvider, key_id: str, wrapped: bytes) -> AESGCM:
        """The cipher of the data key ``wrapped`` by master key ``key_id``."""
        cached = self._keys.get(wrapped)
        if cached is not None:
            return cached
        cipher = AESGCM(provider.unwrap(key_id, wrapped))
        self.remember(wrapped, cipher)
        return cipher

    def remember(self, wrapped: bytes, cipher: AESGCM) -> None:
        """Keep the cipher of a key just made or unwrapped."""
        with self._lock:
            self._keys[wrapped] = cipher
            if len(self._keys) > self._size:
                self._keys.popitem(last=False)

    def forget(self, wrapped: bytes | None = None) -> None:
        """Drop one key (``wrapped``), or every key."""
        with self._lock:
            if wrapped is None:
                self._keys.clear()
            else:
                self._keys.pop(wrapped, None)


#: The process's unwrapped data keys, shared by every thread.
data_keys = DataKeyCache()


def _associated_data(entry_id: int, user_id: int, side: str, field: str) -> bytes:
    return f"{entry_id}\x1f{user_id}\x1f{side}\x1f{field}".encode()


def is_encrypted(value: object) -> bool:
    """Whether a snapshot value is the encrypted form of a personal value."""
    return type(value) is dict and CIPHERTEXT in value


def encrypt_snapshot(
    cipher: AESGCM, entry_id: int, user_id: int, side: str, snapshot: Mapping[str, Any]
) -> dict[str, Any]:
    """``snapshot`` with its personal values encrypted for entry ``entry_id``."""
    stored = dict(snapshot)
    for field in PERSONAL_FIELDS:
        value = snapshot.get(field)
        if value is None:
            continue
        nonce = os.urandom(_NONCE_BYTES)
        sealed = cipher.encrypt(
            nonce,
            json.dumps(value, ensure_ascii=False).encode(),
            _associated_data(entry_id, user_id, side, field),
        )
        stored[field] = {CIPHERTEXT: base64.b64encode(nonce + sealed).decode("ascii")}
    return stored


def decrypt_value(
    cipher: AESGCM, entry_id: int, user_id: int, side: str, field: str, stored: Mapping[str, Any]
) -> Any:
    """The value an encrypted snapshot value holds; ``InvalidTag`` when it is not
    this entry's, profile's, side's and field's under this key."""
    try:
        raw = base64.b64decode(stored[CIPHERTEXT], validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise InvalidTag from None
    plain = cipher.decrypt(
        raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _associated_data(entry_id, user_id, side, field)
    )
    return json.loads(plain)


def reveal_snapshot(
    cipher: AESGCM | None,
    entry_id: int,
    user_id: int,
    side: str,
    stored: Mapping[str, Any] | None,
    *,
    erased: bool,
) -> dict[str, Any] | None:
    """An entry's snapshot as readers see it: personal values decrypted, or
    ``[erased]`` when the profile's key was destroyed (``[unreadable]`` when a
    value does not decrypt). Values stored in clear (entries written before
    encryption, until they are migrated) are shown as they are."""
    if stored is None:
        return None
    shown: dict[str, Any] | None = None
    for field, value in stored.items():
        if type(value) is not dict or CIPHERTEXT not in value:
            continue
        if shown is None:
            shown = dict(stored)
        if cipher is None:
            shown[field] = ERASED if erased else UNREADABLE
            continue
        try:
            shown[field] = decrypt_value(cipher, entry_id, user_id, side, field, value)
        except (InvalidTag, ValueError):
            shown[field] = UNREADABLE
    return shown if shown is not None else dict(stored)


# --- within the app ------------------------------------------------------------


def key_provider() -> KeyProvider:
    """The app's master keys (made once per app from its configuration)."""
    app = current_app
    provider: KeyProvider | None = app.extensions.get("privacy_master_keys")
    if provider is None:
        provider = ConfiguredMasterKeys(
            app.config["PRIVACY_MASTER_KEY"], app.config.get("PRIVACY_PREVIOUS_MASTER_KEY")
        )
        app.extensions["privacy_master_keys"] = provider
    return provider


def email_index(email: str) -> bytes:
    """The blind index of ``email``: equal for addresses equal but for case."""
    key = current_app.config["PRIVACY_INDEX_KEY"].encode()
    return hmac.digest(key, email.lower().encode(), "sha256")


def new_wrapped_key(provider: KeyProvider | None = None) -> tuple[AESGCM, ProfileDataKey]:
    """A new data key: its cipher, and the row that keeps it wrapped."""
    provider = provider or key_provider()
    plain = new_data_key()
    row = ProfileDataKey(master_key_id=provider.current_key_id, wrapped_key=provider.wrap(plain))
    cipher = AESGCM(plain)
    data_keys.remember(row.wrapped_key, cipher)
    return cipher, row


def cipher_of(
    key_id: str | None, wrapped: bytes | None, provider: KeyProvider | None = None
) -> AESGCM | None:
    """The cipher of a profile's data key as its row holds it; ``None`` once erased."""
    if wrapped is None or key_id is None:
        return None
    return data_keys.cipher(provider or key_provider(), key_id, bytes(wrapped))


def reveal_entry(entry: UserAudit) -> None:
    """Show ``entry``'s personal values in clear on the loaded object.

    The decrypted snapshots are set as the loaded state, so the object is not
    dirty: entries are never written back.
    """
    previous, new = entry.__dict__.get("previous_data"), entry.__dict__.get("new_data")
    if not (_holds_ciphertext(previous) or _holds_ciphertext(new)):
        return
    data_key = entry.data_key
    cipher = None
    erased = False
    if data_key is not None:
        erased = data_key.erased_at is not None
        cipher = cipher_of(data_key.master_key_id, data_key.wrapped_key)
    for side, stored in (("previous", previous), ("new", new)):
        shown = reveal_snapshot(cipher, entry.id, entry.user_id, side, stored, erased=erased)
        set_committed_value(entry, f"{side}_data", shown)


def reveal_row(
    row: Mapping[str, Any], provider: KeyProvider | None = None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """An entry read as a row (exports, commands): its previous and new data as
    readers see them. The row holds the entry's ``id``, ``user_id``,
    ``previous_data`` and ``new_data`` and its profile's key as
    ``KEY_COLUMNS_SQL`` selects it."""
    previous, new = row["previous_data"], row["new_data"]
    if not (_holds_ciphertext(previous) or _holds_ciphertext(new)):
        return previous, new
    cipher = cipher_of(row["key_id"], row["wrapped_key"], provider)
    erased = row["key_erased_at"] is not None
    entry_id, user_id = row["id"], row["user_id"]
    return (
        reveal_snapshot(cipher, entry_id, user_id, "previous", previous, erased=erased),
        reveal_snapshot(cipher, entry_id, user_id, "new", new, erased=erased),
    )


#: The columns of ``profile_data_keys`` (joined as ``k``) that ``reveal_row`` reads.
KEY_COLUMNS_SQL = "k.master_key_id AS key_id, k.wrapped_key, k.erased_at AS key_erased_at"


def clear_values_sql(alias: str) -> str:
    """SQL: entry ``alias`` holds a personal value in clear (not encrypted, not
    null), as entries written before encryption do."""
    checks = [
        f"pg_catalog.jsonb_typeof({alias}.{side} -> '{name}') "
        "IN ('string', 'number', 'boolean', 'array')"
        for side in ("previous_data", "new_data")
        for name in PERSONAL_FIELDS
    ]
    return "(" + " OR ".join(checks) + ")"


def _holds_ciphertext(snapshot: Mapping[str, Any] | None) -> bool:
    return snapshot is not None and any(type(value) is dict for value in snapshot.values())


@event.listens_for(UserAudit, "load")
def _reveal_loaded(entry: UserAudit, context: Any) -> None:
    reveal_entry(entry)


@event.listens_for(UserAudit, "refresh")
def _reveal_refreshed(entry: UserAudit, context: Any, attributes: Any) -> None:
    reveal_entry(entry)


# --- entries the database's safety net wrote in clear ------------------------------

# The safety net runs in the database, which holds no key, so it writes its
# entries' values in clear; the sealer encrypts (and seals) them before linking
# them, the one change the table's trigger lets through. Among the next queued
# entries, the same ones the sealer is about to claim.
_CLEAR_ENTRIES = (
    "SELECT a.*, k.master_key_id AS key_id, k.wrapped_key, k.erased_at AS key_erased_at, "
    "k.user_id IS NOT NULL AS has_key "
    "FROM user_audit a LEFT JOIN profile_data_keys k ON k.user_id = a.user_id "
    "WHERE a.id IN ({queued}) AND a.seal IS NULL AND a.unattributed ORDER BY a.id "
    "FOR UPDATE OF a"
)
_CLEAR_QUEUED_ENTRIES = text(
    _CLEAR_ENTRIES.format(
        queued="SELECT entry_id FROM audit_chain_pending ORDER BY entry_id LIMIT :limit"
    )
)
_CLEAR_QUEUED_ENTRIES_OF_PROFILE = text(
    _CLEAR_ENTRIES.format(
        queued="SELECT p.entry_id FROM audit_chain_pending p "
        "JOIN user_audit q ON q.id = p.entry_id WHERE q.user_id = :user_id"
    )
)
_SEAL_CLEAR_ENTRY = text(
    "UPDATE user_audit SET previous_data = CAST(:previous_data AS jsonb), "
    "new_data = CAST(:new_data AS jsonb), seal = :seal WHERE id = :id"
)


def encrypt_queued_clear_entries(connection: Connection, chain_key: bytes, limit: int) -> int:
    """Encrypt and seal the safety net's entries among the next ``limit`` queued
    ones; return how many. The caller links them next, in the same transaction.

    A profile without a data key (made around the application) gets one; the
    values of an erased profile are encrypted under a key that is not kept.
    """
    rows = connection.execute(_CLEAR_QUEUED_ENTRIES, {"limit": limit}).mappings().all()
    return _encrypt_clear_entries(connection, chain_key, rows)


def encrypt_clear_entries_of(connection: Connection, chain_key: bytes, user_id: int) -> int:
    """Encrypt and seal the safety net's queued entries of one profile (before
    its key is destroyed); return how many."""
    rows = connection.execute(_CLEAR_QUEUED_ENTRIES_OF_PROFILE, {"user_id": user_id})
    return _encrypt_clear_entries(connection, chain_key, rows.mappings().all())


def _encrypt_clear_entries(
    connection: Connection, chain_key: bytes, rows: Sequence[Mapping[str, Any]]
) -> int:
    if not rows:
        return 0
    provider = key_provider()
    made: dict[int, AESGCM] = {}
    updates = []
    for row in rows:
        user_id = row["user_id"]
        cipher = made.get(user_id)
        if cipher is None and row["has_key"]:
            cipher = cipher_of(row["key_id"], row["wrapped_key"], provider)
            if cipher is None:  # erased: nobody is to read these values again
                cipher = AESGCM(new_data_key())
        if cipher is None:
            cipher, data_key = new_wrapped_key(provider)
            connection.execute(
                sa_insert(ProfileDataKey).values(
                    user_id=user_id,
                    master_key_id=data_key.master_key_id,
                    wrapped_key=data_key.wrapped_key,
                )
            )
        made[user_id] = cipher
        entry = {name: row[name] for name in SEALED_FIELDS}
        if entry["previous_data"] is not None:
            entry["previous_data"] = encrypt_snapshot(
                cipher, entry["id"], user_id, "previous", entry["previous_data"]
            )
        entry["new_data"] = encrypt_snapshot(cipher, entry["id"], user_id, "new", entry["new_data"])
        updates.append(
            {
                "id": entry["id"],
                "previous_data": (
                    None if entry["previous_data"] is None else json.dumps(entry["previous_data"])
                ),
                "new_data": json.dumps(entry["new_data"]),
                "seal": seal_of(chain_key, canonical_entry(entry)),
            }
        )
    connection.execute(_SEAL_CLEAR_ENTRY, updates)
    return len(updates)
