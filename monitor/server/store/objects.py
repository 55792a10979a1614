"""The object store that holds sample bytes: a local directory (embedded) or any S3-compatible bucket.

Access goes through obstore (the Rust ``object_store`` crate behind Python bindings), never a
hand-written client. What is stored is opaque here: the samples service encrypts before it puts.

==============================  ===============================================================
URL                             store
==============================  ===============================================================
``./cvmon-samples``, ``/path``   a local directory (created when missing)
``file:///path``                 the same, as a URL
``s3://bucket/prefix``           S3 or any S3-compatible server: credentials from ``AWS_*``
                                 variables or ``options`` (``endpoint``, ``region``,
                                 ``access_key_id``, ``secret_access_key``, ``allow_http``, ...)
``memory://``                    in this process only (tests)
==============================  ===============================================================
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

#: obstore's ClientConfig keys; every other option is the store's configuration.
_CLIENT_OPTIONS = frozenset({
    "allow_http", "allow_invalid_certificates", "connect_timeout", "default_content_type", "default_headers",
    "pool_idle_timeout", "pool_max_idle_per_host", "proxy_url", "proxy_ca_certificate", "proxy_excludes",
    "randomize_addresses", "read_timeout", "root_certificate", "timeout", "user_agent",
})  # fmt: skip


class ObjectMissing(LookupError):
    """The object is not in the store (deleted by retention or a re-encryption)."""


class ObjectStore:
    """Put, get, list and delete byte objects by key (``model/day/sample``)."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        import obstore.store

        self.url = url
        options = dict(options or {})
        if url == "memory://":
            self._store: Any = obstore.store.MemoryStore()
        elif "://" not in url or url.startswith("file://"):
            path = Path(url.removeprefix("file://")).expanduser().resolve()
            path.mkdir(parents=True, exist_ok=True)
            self._store = obstore.store.LocalStore(path)
        else:
            # HTTP client settings (allow_http, timeouts, proxies) and the store's own (endpoint,
            # region, credentials) go to two different arguments of obstore
            client = {k: v for k, v in options.items() if k in _CLIENT_OPTIONS}
            config = {k: v for k, v in options.items() if k not in _CLIENT_OPTIONS}
            self._store = obstore.store.from_url(url, config=config, client_options=client)  # type: ignore[call-overload]

    def put(self, key: str, data: bytes) -> None:
        import obstore

        obstore.put(self._store, key, data)

    def get(self, key: str) -> bytes:
        import obstore

        try:
            return bytes(obstore.get(self._store, key).bytes())
        except FileNotFoundError:
            raise ObjectMissing(key) from None

    def delete(self, keys: Sequence[str]) -> None:
        """Delete ``keys``; keys already gone are fine."""
        import obstore

        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                obstore.delete(self._store, key)

    def keys(self, prefix: str) -> Iterator[tuple[str, int]]:
        """``(key, size)`` of every object under ``prefix``."""
        import obstore

        for chunk in obstore.list(self._store, prefix=prefix):
            for meta in chunk:
                yield meta["path"], int(meta["size"])

    def folders(self, prefix: str) -> list[str]:
        """The names one level below ``prefix`` (``prefix`` ends with ``/``)."""
        import obstore

        listed = obstore.list_with_delimiter(self._store, prefix=prefix)
        return [p.removeprefix(prefix).strip("/") for p in listed["common_prefixes"]]

    def __repr__(self) -> str:
        return f"ObjectStore({self.url!r})"
