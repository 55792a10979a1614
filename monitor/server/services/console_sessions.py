"""Console sessions: a sign-in with an API key becomes a random session token in a cookie.

The cookie holds 256 random bits; the ``console_sessions`` table holds their SHA-256 (a copy of
the table opens no session), the key the session was opened with, the CSRF token of its forms and
its expiry. Every request joins the session to its key, so a revoked key ends its sessions at
once, on every replica. The functions take the caller's connection and never commit.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import Connection

from monitor.server.services.keys import ApiKey
from monitor.server.store import tables as t

#: Length of a session token and a CSRF token in bytes before URL-safe base64 (43 characters).
TOKEN_BYTES = 32


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A live session: who it is (the key, with its scopes and models) and its CSRF token."""

    key: ApiKey
    csrf_token: str
    expires_at: datetime


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


def start_session(conn: Connection, key: ApiKey, *, now: datetime, lifetime: timedelta) -> tuple[str, ConsoleSession]:
    """Open a session for ``key``; returns the cookie's token (shown once) and the session.

    Sessions that have ended are deleted on the way, so the table holds only live ones."""
    s = t.console_sessions
    conn.execute(sa.delete(s).where(s.c.expires_at <= now))
    token = secrets.token_urlsafe(TOKEN_BYTES)
    csrf = secrets.token_urlsafe(TOKEN_BYTES)
    expires = now + lifetime
    conn.execute(
        sa.insert(s).values(session_sha256=_digest(token), key_id=key.key_id, csrf_token=csrf, created_at=now, expires_at=expires)
    )
    return token, ConsoleSession(key, csrf, expires)


def find_session(conn: Connection, token: str, *, now: datetime) -> ConsoleSession | None:
    """The session of a cookie's token: None when unknown, ended, or its key was revoked."""
    if not token or len(token) > 128:
        return None
    s, k = t.console_sessions.c, t.api_keys.c
    row = conn.execute(
        sa.select(s.csrf_token, s.expires_at, k.key_id, k.name, k.scopes, k.models, k.created_at, k.revoked_at)
        .join_from(t.console_sessions, t.api_keys, s.key_id == k.key_id)
        .where(s.session_sha256 == _digest(token), s.expires_at > now, k.revoked_at.is_(None))
    ).first()
    if row is None:
        return None
    key = ApiKey(
        row.key_id, row.name, frozenset(row.scopes), None if row.models is None else frozenset(row.models),
        row.created_at, row.revoked_at,
    )  # fmt: skip
    return ConsoleSession(key, row.csrf_token, row.expires_at)


def end_session(conn: Connection, token: str) -> bool:
    """Sign out: the token opens nothing any more. Returns whether a session was ended."""
    result = conn.execute(sa.delete(t.console_sessions).where(t.console_sessions.c.session_sha256 == _digest(token)))
    return bool(result.rowcount)
