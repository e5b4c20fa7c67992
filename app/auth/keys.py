"""The API key format: `etk_<key id>_<secret>`.

The key id (12 characters) is public: it is the visible prefix support staff see (`etk_4F7K2M9Q1XBR`) and
the store's primary key. The secret is 32 random bytes (256 bits), URL-safe base64. Only a SHA-256 of the
whole key is stored: with that much entropy a slow password hash adds nothing but latency.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "etk_"
_ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
_KEY_RE = re.compile(r"^etk_([0-9A-HJKMNP-TV-Z]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True, slots=True)
class NewKey:
    key_id: str
    plaintext: str
    hash: str

    @property
    def prefix(self) -> str:
        return f"{PREFIX}{self.key_id}"


def generate() -> NewKey:
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
    plaintext = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return NewKey(key_id=key_id, plaintext=plaintext, hash=hash_key(plaintext))


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def parse_key_id(plaintext: str) -> str | None:
    """The key id of a well-formed key, or None (then it cannot be valid; skip the database)."""
    match = _KEY_RE.match(plaintext)
    return match.group(1) if match else None


def matches(plaintext: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(plaintext), stored_hash)


# Ingest keys are a DSN's public key: public by design (a browser page or a mobile app ships them), so
# they carry no secret and only ever submit events. 32 hex characters, as Sentry's: every SDK's DSN
# parser accepts them (the JavaScript SDKs' allows only word characters).
_PUBLIC_KEY_RE = re.compile(r"^[0-9a-f]{32}$")


def generate_public_key() -> str:
    return secrets.token_hex(16)


def is_public_key(value: str) -> bool:
    return bool(_PUBLIC_KEY_RE.match(value))
