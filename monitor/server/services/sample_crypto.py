"""Samples at rest: AES-256-GCM under a ring of keys, each sample sealed under one key id.

A sealed object is ``b"\\x01" + nonce (12 bytes) + ciphertext-and-tag``; the key id is stored
with the sample's row, and the associated data binds the ciphertext to its model and sample id,
so an object copied under another sample's name does not open.

Rotation without downtime: (1) add the new key to every replica's ring (``samples.keys`` or the
key file, which is re-read when it changes), (2) make it the active key — new samples are sealed
with it while the old ones still open with theirs, (3) ``cvmon samples rotate-keys`` re-seals the
old samples under the active key, (4) drop the old key from the ring.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path

from monitor.errors import ConfigError
from monitor.server.sample_settings import SampleSettings, parse_keys

_VERSION = b"\x01"
_NONCE = 12


class UnknownKey(LookupError):
    """A sample sealed under a key id that is not (or no longer) in the ring."""


class KeyRing:
    """The keys samples are sealed with: from settings and an optional key file.

    The key file holds ``<id> <base64 key>`` lines; it is read again whenever its modification
    time changes, so a key added there reaches a running server without a restart. The active key
    is ``active`` when given, else the first key of the file, else the first of the settings.
    """

    def __init__(self, keys: Mapping[str, bytes], *, active: str | None = None, key_file: str | None = None) -> None:
        self._static = dict(keys)
        self._active_name = active
        self._file = Path(key_file) if key_file else None
        self._lock = threading.Lock()
        self._stamp: float | None = None
        self._file_keys: dict[str, bytes] = {}
        self._check()

    @classmethod
    def from_settings(cls, settings: SampleSettings) -> KeyRing:
        return cls(settings.keys, active=settings.active_key, key_file=settings.key_file)

    def _check(self) -> None:
        if self._file is None:
            if not self._static:
                raise ConfigError("samples: no encryption key configured")
            return
        try:
            stamp = self._file.stat().st_mtime_ns
        except OSError as exc:
            raise ConfigError(f"samples.key_file {self._file}: {exc.strerror}") from None
        if stamp == self._stamp:
            return
        with self._lock:
            keys = parse_keys(self._file.read_text("utf-8"), source=str(self._file))
            if not keys and not self._static:
                raise ConfigError(f"samples.key_file {self._file} holds no key")
            self._file_keys, self._stamp = keys, stamp

    def _keys(self) -> dict[str, bytes]:
        self._check()
        return {**self._file_keys, **self._static}

    def active(self) -> tuple[str, bytes]:
        keys = self._keys()
        name = self._active_name or next(iter(self._file_keys or self._static))
        if name not in keys:
            raise ConfigError(f"samples.active_key {name!r} is not in the key ring ({', '.join(keys)})")
        return name, keys[name]

    def key(self, key_id: str) -> bytes:
        key = self._keys().get(key_id)
        if key is None:
            raise UnknownKey(f"sample key {key_id!r} is not in the key ring; it was removed before its samples were re-sealed")
        return key

    def ids(self) -> list[str]:
        return list(self._keys())


def seal(ring: KeyRing, plaintext: bytes, aad: bytes) -> tuple[str, bytes]:
    """Encrypt under the active key; returns (key id, sealed bytes)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key_id, key = ring.active()
    nonce = os.urandom(_NONCE)
    return key_id, _VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(ring: KeyRing, key_id: str, sealed: bytes, aad: bytes) -> bytes:
    """Decrypt; raises :class:`UnknownKey`, or ``cryptography``'s ``InvalidTag`` for bytes that
    were altered or belong to another sample."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if sealed[:1] != _VERSION or len(sealed) < 1 + _NONCE + 16:
        raise ValueError("not a sealed sample (unknown format)")
    nonce = sealed[1 : 1 + _NONCE]
    return AESGCM(ring.key(key_id)).decrypt(nonce, sealed[1 + _NONCE :], aad)


def new_key() -> bytes:
    """A fresh AES-256 key."""
    return os.urandom(32)
