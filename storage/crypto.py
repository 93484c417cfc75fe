"""Secrets at rest: AES-256-GCM with associated data, a keyring for rotation, keyed fingerprints.

A ciphertext is ``version (1) | key id (8) | nonce (12) | ciphertext+tag``. The key id says which master key
encrypted it, so decryption needs no guessing; the associated data binds it to one vendor ID, generation
and field, so a ciphertext copied to another row or field fails to decrypt.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"\x01"
_ID_LEN = 8
_NONCE_LEN = 12


class DecryptionError(Exception):
    """A stored secret could not be decrypted: wrong master key or tampered data. Never carries the secret."""


def derive(master_key: bytes, purpose: str) -> bytes:
    """A sub-key for one purpose, so the encryption key itself is never used for anything else."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"coupang-keybot/{purpose}".encode()).derive(
        master_key
    )


def key_id(master_key: bytes) -> bytes:
    return hashlib.sha256(b"coupang-keybot/key-id" + master_key).digest()[:_ID_LEN]


def associated_data(vendor_id: str, generation: int, field: str) -> bytes:
    return f"coupang-keybot/v1|{vendor_id}|{generation}|{field}".encode()


class Keyring:
    """The configured master keys: the first encrypts, all decrypt."""

    def __init__(self, master_keys: Sequence[bytes]):
        if not master_keys:
            raise ValueError("at least one master key is required")
        # AESGCM objects and the fingerprint key are built once: a bulk import encrypts 200,000 values
        self._keys = [(key_id(k), AESGCM(derive(k, "secrets")), k) for k in master_keys]
        self._fingerprint_key = derive(master_keys[0], "fingerprint")

    @property
    def primary(self) -> bytes:
        return self._keys[0][2]

    @property
    def primary_id(self) -> bytes:
        return self._keys[0][0]

    def master_key(self, kid: bytes) -> bytes | None:
        return next((master for i, _, master in self._keys if i == kid), None)

    def knows(self, kid_hex: str) -> bool:
        """Whether one of the configured master keys has this key id (as stored, in hex)."""
        return any(i.hex() == kid_hex for i, _, _ in self._keys)

    def encrypt(self, plaintext: str, aad: bytes) -> bytes:
        kid, aead, _ = self._keys[0]
        nonce = os.urandom(_NONCE_LEN)
        return _VERSION + kid + nonce + aead.encrypt(nonce, plaintext.encode(), aad)

    def decrypt(self, blob: bytes, aad: bytes) -> str:
        if len(blob) < 1 + _ID_LEN + _NONCE_LEN + 16 or blob[:1] != _VERSION:
            raise DecryptionError("not a ciphertext this bot wrote")
        kid, nonce, body = blob[1 : 1 + _ID_LEN], blob[1 + _ID_LEN : 1 + _ID_LEN + _NONCE_LEN], blob[21:]
        aead = next((a for i, a, _ in self._keys if i == kid), None)
        if aead is None:
            raise DecryptionError("encrypted with a master key that is not configured")
        try:
            return aead.decrypt(nonce, body, aad).decode()
        except InvalidTag:
            raise DecryptionError("the ciphertext or its row was altered") from None

    def is_current(self, blob: bytes) -> bool:
        return blob[1 : 1 + _ID_LEN] == self.primary_id

    def fingerprint(self, secret: str) -> str:
        """A short keyed fingerprint: tells two secrets apart without revealing either."""
        digest = hmac.new(self._fingerprint_key, secret.encode(), hashlib.sha256).hexdigest()
        return f"fp:{digest[:10]}"
