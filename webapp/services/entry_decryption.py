"""Personal values of entries read as rows, decrypted for one reading (an export, the drift check).

Readers that go around the ORM read an entry's personal values as the table
holds them: ``{"ciphertext": base64(nonce || ciphertext || tag)}``
(``webapp.audit.personal_data``). ``ProfileKeys`` holds the data keys of the
profiles one reading meets: each is read and unwrapped at most once per
reading, in batches (one query per batch of rows, on a connection of its own,
so that a reader in the middle of a COPY can still look keys up), and kept as
its 32 raw bytes; ready ciphers (about 2.4 KiB each) are kept for the most
recently met profiles only, so memory grows with the profiles met by a few
dozen bytes each, not with the entries.

``plain_json`` gives a value as the JSON text it was encrypted from (the
exact bytes ``json.dumps(value, ensure_ascii=False)`` wrote), so an export
splices it into its own JSON without parsing and dumping it again.
"""

from __future__ import annotations

import binascii
from collections import OrderedDict
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, text

from webapp.audit.personal_data import ERASED, UNREADABLE, KeyProvider

#: Ready ciphers kept per reading (each about 2.4 KiB): the busiest profiles' at most.
CIPHERS_KEPT = 4096
_NONCE_BYTES = 12

#: What a reader sees for a value of an erased profile, as JSON text.
ERASED_JSON = b'"' + ERASED.encode() + b'"'
#: ...and for a value that does not decrypt, as JSON text.
UNREADABLE_JSON = b'"' + UNREADABLE.encode() + b'"'

_KEYS_OF_PROFILES = text(
    "SELECT user_id, master_key_id, wrapped_key FROM profile_data_keys "
    "WHERE user_id = ANY(:user_ids)"
)


def associated_data_prefix(entry_id: int, user_id: int) -> bytes:
    """The start of the associated data every personal value of an entry was
    encrypted with (``personal_data``: entry, profile, side, field joined by
    U+001F); ``+ side_field(side, field)`` completes it."""
    return b"%d\x1f%d\x1f" % (entry_id, user_id)


def side_field(side: str, field: str) -> bytes:
    """The end of a value's associated data: its side and field."""
    return f"{side}\x1f{field}".encode()


class ProfileKeys:
    """The data keys of the profiles one reading meets, each unwrapped at most once.

    ``load`` the profiles of a batch of rows first (one query for those not
    met yet), then ask ``cipher`` for each row's. A profile without a key
    (none was ever made) and an erased one (its key destroyed) have no
    cipher; ``erased`` tells them apart.
    """

    def __init__(self, engine: Engine, provider: KeyProvider, *, kept: int = CIPHERS_KEPT) -> None:
        self._engine = engine
        self._provider = provider
        self._kept = kept
        # The raw data key per profile met; None once erased or never made.
        self._keys: dict[int, bytes | None] = {}
        self._erased: set[int] = set()
        self._ciphers: OrderedDict[int, AESGCM] = OrderedDict()

    def load(self, user_ids: Iterable[int]) -> None:
        """Read and unwrap the keys of the profiles among ``user_ids`` not met yet."""
        missing = {user_id for user_id in user_ids if user_id not in self._keys}
        if not missing:
            return
        with self._engine.connect() as connection:
            rows = connection.execute(_KEYS_OF_PROFILES, {"user_ids": list(missing)}).all()
            connection.rollback()
        for user_id, key_id, wrapped in rows:
            if wrapped is None or key_id is None:
                self._erased.add(user_id)
                self._keys[user_id] = None
            else:
                self._keys[user_id] = self._provider.unwrap(key_id, bytes(wrapped))
            missing.discard(user_id)
        for user_id in missing:  # no key row: its values cannot be read
            self._keys[user_id] = None

    def cipher(self, user_id: int) -> AESGCM | None:
        """The profile's cipher (``load`` it first); None when erased or keyless."""
        cipher = self._ciphers.get(user_id)
        if cipher is not None:
            self._ciphers.move_to_end(user_id)
            return cipher
        key = self._keys.get(user_id)
        if key is None:
            return None
        cipher = AESGCM(key)
        self._ciphers[user_id] = cipher
        if len(self._ciphers) > self._kept:
            self._ciphers.popitem(last=False)
        return cipher

    def erased(self, user_id: int) -> bool:
        """Whether the profile's key was destroyed (its values show ``[erased]``)."""
        return user_id in self._erased


def plain_json(cipher: AESGCM, stored: bytes, associated_data: bytes) -> bytes:
    """The JSON text a value was encrypted from; ``UNREADABLE_JSON`` when it does
    not decrypt (moved, altered). ``stored`` is the base64 the entry holds."""
    try:
        raw = binascii.a2b_base64(stored, strict_mode=True)
        return cipher.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], associated_data)
    except (InvalidTag, binascii.Error, ValueError):
        return UNREADABLE_JSON


def shown_json(keys: ProfileKeys, user_id: int, stored: bytes, associated_data: bytes) -> bytes:
    """A value as readers see it, as JSON text: decrypted, ``[erased]`` or ``[unreadable]``."""
    cipher = keys.cipher(user_id)
    if cipher is None:
        return ERASED_JSON if keys.erased(user_id) else UNREADABLE_JSON
    return plain_json(cipher, stored, associated_data)
