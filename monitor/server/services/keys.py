"""API keys: random 256-bit secrets, stored as SHA-256, scoped and optionally bound to models.

A key reads ``cvm_<key_id>_<secret>``. The key id (public, 12 hex characters) finds the row; the
secret is compared by hash in constant time. The plain key is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection

from monitor.server.store import tables as t

#: ``metrics``: GET /metrics only (what Prometheus needs; a ``read`` key may scrape too).
#: ``samples``: view and export sample images (the only raw inputs cvmon stores); kept apart from
#: ``read`` so that dashboards and Prometheus never hold a key that opens images.
SCOPES = ("ingest", "read", "admin", "metrics", "samples")
_KEY = re.compile(r"cvm_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    scopes: frozenset[str]
    #: None: every model.
    models: frozenset[str] | None
    created_at: datetime
    revoked_at: datetime | None

    def allows_model(self, model: str) -> bool:
        return self.models is None or model in self.models


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def create_key(
    conn: Connection, *, scopes: list[str], models: list[str] | None, name: str, now: datetime
) -> tuple[ApiKey, str]:
    """Store a new key; returns it and the plain key text (shown once, never stored)."""
    bad = sorted(set(scopes) - set(SCOPES))
    if bad or not scopes:
        raise ValueError(f"scopes must be among {', '.join(SCOPES)}; got {', '.join(scopes) or 'none'}")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    conn.execute(
        sa.insert(t.api_keys).values(
            key_id=key_id, name=name, secret_sha256=_digest(secret), scopes=sorted(set(scopes)),
            models=None if models is None else sorted(set(models)), created_at=now,
        )
    )  # fmt: skip
    key = ApiKey(key_id, name, frozenset(scopes), None if models is None else frozenset(models), now, None)
    return key, f"cvm_{key_id}_{secret}"


def parse_key(text: str) -> tuple[str, str] | None:
    match = _KEY.fullmatch(text)
    return (match.group(1), match.group(2)) if match else None


def verify_key(conn: Connection, text: str) -> ApiKey | None:
    """The key's record when ``text`` is a valid, unrevoked key; None otherwise."""
    parsed = parse_key(text)
    if parsed is None:
        return None
    key_id, secret = parsed
    row = conn.execute(sa.select(t.api_keys).where(t.api_keys.c.key_id == key_id)).first()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.secret_sha256, _digest(secret)):
        return None
    return _from_row(row)


def _from_row(row: sa.Row) -> ApiKey:  # type: ignore[type-arg]
    return ApiKey(
        row.key_id, row.name, frozenset(row.scopes), None if row.models is None else frozenset(row.models),
        row.created_at, row.revoked_at,
    )  # fmt: skip


def list_keys(conn: Connection) -> list[ApiKey]:
    return [_from_row(r) for r in conn.execute(sa.select(t.api_keys).order_by(t.api_keys.c.created_at))]


def revoke_key(conn: Connection, key_id: str, *, now: datetime) -> bool:
    result = conn.execute(
        sa.update(t.api_keys).where(t.api_keys.c.key_id == key_id, t.api_keys.c.revoked_at.is_(None)).values(revoked_at=now)
    )
    return result.rowcount == 1
