"""AES-GCM encryption of stored payloads, with a key id per row (DESIGN §6).

Keys come from `VERIHOOK_ENCRYPTION_KEYS` (`keyid:base64key,…`, the first encrypts). In
development a missing key is generated once under `var/` with a warning.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from receiver.exceptions import ConfigurationError, DecryptionError
from receiver.settings import Settings, split_csv

log = logging.getLogger(__name__)

NONCE_BYTES = 12
"""AES-GCM nonce length; a fresh random nonce is prefixed to every ciphertext."""

DEV_KEY_FILE = "encryption.key"
"""File under `var_dir` holding the generated development key (`keyid:base64key`)."""


@dataclass(frozen=True)
class Sealed:
    """A ciphertext and the id of the key that sealed it."""

    key_id: str
    blob: bytes


class Keyring:
    """Named AES-256-GCM keys; the first one encrypts, all of them decrypt."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise ConfigurationError("no encryption key configured")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys}
        self.current_key_id = keys[0][0]

    @classmethod
    def parse(cls, spec: str) -> Keyring:
        """Build a keyring from `keyid:base64key,…`."""
        keys = []
        for item in split_csv(spec):
            key_id, sep, encoded = item.partition(":")
            if not sep or not key_id:
                raise ConfigurationError(
                    f"encryption key entry without a key id: {key_id or '?'!r}"
                )
            try:
                key = base64.b64decode(encoded, validate=True)
            except binascii.Error as exc:
                raise ConfigurationError(f"encryption key {key_id!r} is not valid base64") from exc
            if len(key) not in (16, 24, 32):
                raise ConfigurationError(f"encryption key {key_id!r} must be 16, 24 or 32 bytes")
            keys.append((key_id, key))
        return cls(keys)

    def seal(self, plaintext: bytes, *, aad: bytes) -> Sealed:
        """Encrypt with the current key; `aad` binds the ciphertext to its row."""
        nonce = os.urandom(NONCE_BYTES)
        cipher = self._keys[self.current_key_id]
        return Sealed(self.current_key_id, nonce + cipher.encrypt(nonce, plaintext, aad))

    def open(self, sealed: Sealed, *, aad: bytes) -> bytes:
        """Decrypt, failing loudly and specifically."""
        cipher = self._keys.get(sealed.key_id)
        if cipher is None:
            raise DecryptionError(f"no configured key with id {sealed.key_id!r}")
        nonce, body = sealed.blob[:NONCE_BYTES], sealed.blob[NONCE_BYTES:]
        if len(nonce) < NONCE_BYTES or not body:
            raise DecryptionError(f"ciphertext under key {sealed.key_id!r} is truncated")
        try:
            return cipher.decrypt(nonce, body, aad)
        except InvalidTag as exc:
            raise DecryptionError(
                f"ciphertext under key {sealed.key_id!r} failed authentication "
                "(wrong key material or tampered row)"
            ) from exc


def new_key_spec(key_id: str) -> str:
    """A fresh `keyid:base64key` entry for a 256-bit key."""
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


def load_keyring(settings: Settings) -> Keyring:
    """The configured keyring; in development, generate and keep one under `var/` if missing."""
    if settings.encryption_keys is not None and split_csv(settings.encryption_keys):
        return Keyring.parse(settings.encryption_keys.get_secret_value())
    if settings.is_production:
        raise ConfigurationError("VERIHOOK_ENCRYPTION_KEYS must be set in production")
    path = Path(settings.var_dir) / DEV_KEY_FILE
    if not path.exists():
        _create_dev_key(path)
    return Keyring.parse(path.read_text().strip())


def _create_dev_key(path: Path) -> None:
    """Write a new development key atomically: processes starting together agree on one key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(new_key_spec("dev1"))
    try:
        os.link(draft, path)  # atomic; fails if another process won the race
        log.warning(
            "generated a development encryption key in %s; set "
            "VERIHOOK_ENCRYPTION_KEYS for any real data",
            path,
        )
    except FileExistsError:
        pass
    finally:
        draft.unlink()
