"""Automation webhooks: events written to an outbox, delivered signed, retried, logged.

An event is *emitted* inside the transaction of what caused it (:func:`emit`): one row in
``automation_events`` and one ``automation_deliveries`` row per configured endpoint that takes
it. Its id is derived from what happened (kind, model, a key such as the window or the verdict),
so emitting the same occurrence again — a job re-run, two replicas — changes nothing.

The ``webhooks`` job delivers (:func:`due_deliveries`, :func:`start_attempt`, :func:`send`,
:func:`finish_attempt`). Each attempt is committed before its request goes out and completed
after it, so a sender that stops never forgets a delivery and never re-sends one it recorded as
delivered; a sender killed *during* a request leaves an attempt without an outcome, and that
delivery is tried again once its lease runs out (at least once: the same ``X-Cvmon-Event-Id``,
which receivers use to drop the repeat). Payloads are JSON, signed like GitHub's webhooks::

    X-Cvmon-Signature-256: sha256=<hex HMAC-SHA256 of the body with the endpoint's secret>
    X-Cvmon-Event: canary.verdict
    X-Cvmon-Event-Id: 3f2a...            (the same on every retry)
    X-Cvmon-Delivery: 3f2a...-deployer-2 (event, endpoint, attempt)

Services never commit: the caller owns each transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from monitor.server.rollout_config import EVENT_KINDS, AutomationConfig, WebhookEndpoint
from monitor.server.store import tables as t

SIGNATURE_HEADER: Final = "X-Cvmon-Signature-256"
#: How long an attempt may take before its delivery is due again (a sender that died mid-request).
_LEASE_SLACK: Final = timedelta(seconds=30)


def event_id(kind: str, model: str, key: str) -> str:
    """The id of one occurrence: the same for the same (kind, model, key), 32 hex digits."""
    return hashlib.sha256(f"{kind}\x00{model}\x00{key}".encode()).hexdigest()[:32]


def emit(
    conn: Connection, config: AutomationConfig, *, model: str, kind: str, key: str, data: Mapping[str, Any], now: datetime
) -> str | None:
    """Write an event and its deliveries to the outbox; returns its id, or None when this
    occurrence was emitted before. Events are stored even without endpoints (the API lists them
    and ``cvmon_automation_events_total`` counts them)."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    eid = event_id(kind, model, key)
    payload = {"id": eid, "type": kind, "model": model, "created_at": _iso(now), "data": dict(data)}
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(t.automation_events).values(model=model, event_id=eid, kind=kind, created_at=now, payload=payload)
    if conn.execute(stmt.on_conflict_do_nothing().returning(t.automation_events.c.event_id)).first() is None:
        return None  # emitted before
    rows = [
        {"model": model, "event_id": eid, "endpoint": e.name, "state": "pending", "attempts": 0, "next_attempt_at": now}
        for e in config.webhooks
        if e.takes(model, kind)
    ]
    if rows:
        conn.execute(sa.insert(t.automation_deliveries), rows)
    return eid


@dataclass(frozen=True)
class Delivery:
    """A due delivery: the event to send and where."""

    model: str
    event_id: str
    kind: str
    endpoint: str
    attempts: int
    payload: Mapping[str, Any]


def due_deliveries(conn: Connection, model: str, now: datetime, *, limit: int = 100) -> list[Delivery]:
    """Pending deliveries of ``model`` whose next attempt is due, oldest first."""
    d, e = t.automation_deliveries.c, t.automation_events.c
    rows = conn.execute(
        sa.select(d.model, d.event_id, d.endpoint, d.attempts, e.kind, e.payload)
        .join(t.automation_events, sa.and_(e.model == d.model, e.event_id == d.event_id))
        .where(d.model == model, d.state == "pending", d.next_attempt_at <= now)
        .order_by(d.next_attempt_at, e.created_at, d.event_id, d.endpoint)
        .limit(limit)
    ).all()
    return [Delivery(r.model, r.event_id, r.kind, r.endpoint, r.attempts, r.payload) for r in rows]


def start_attempt(conn: Connection, delivery: Delivery, endpoint: WebhookEndpoint, now: datetime) -> int | None:
    """Claim the delivery for one attempt (its number), or None when another sender took it.

    The claim moves ``next_attempt_at`` past the request's timeout, so the delivery is due again
    only if this sender never records an outcome; commit before sending."""
    d = t.automation_deliveries.c
    attempt = delivery.attempts + 1
    lease = now + timedelta(seconds=endpoint.timeout_seconds) + _LEASE_SLACK
    claimed = conn.execute(
        sa.update(t.automation_deliveries)
        .where(*_key(delivery), d.state == "pending", d.attempts == delivery.attempts)
        .values(attempts=attempt, next_attempt_at=lease)
    ).rowcount
    if not claimed:
        return None
    conn.execute(
        sa.insert(t.automation_attempts).values(
            model=delivery.model, event_id=delivery.event_id, endpoint=delivery.endpoint, attempt=attempt, started_at=now
        )
    )
    return attempt


@dataclass(frozen=True)
class Outcome:
    """What a receiver answered: an HTTP status (None: no answer) and an error text."""

    status: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """Network errors, timeouts, 5xx, 408 and 429 may pass later; other answers will not."""
        return self.status is None or self.status >= 500 or self.status in (408, 429)


def finish_attempt(
    conn: Connection, delivery: Delivery, attempt: int, outcome: Outcome, config: AutomationConfig, now: datetime
) -> str:
    """Record the attempt's outcome; returns the delivery's new state."""
    a = t.automation_attempts.c
    conn.execute(
        sa.update(t.automation_attempts)
        .where(a.model == delivery.model, a.event_id == delivery.event_id, a.endpoint == delivery.endpoint, a.attempt == attempt)
        .values(finished_at=now, status=outcome.status, error=outcome.error)
    )
    if outcome.delivered:
        state, next_at = "delivered", now
    elif outcome.retryable and attempt < config.max_attempts:
        state = "pending"
        next_at = now + timedelta(seconds=min(config.retry_backoff_seconds * 2 ** (attempt - 1), config.max_backoff_seconds))
    else:
        state, next_at = "failed", now
    conn.execute(
        sa.update(t.automation_deliveries)
        .where(*_key(delivery), t.automation_deliveries.c.attempts == attempt)
        .values(
            state=state, next_attempt_at=next_at, last_status=outcome.status, last_error=outcome.error,
            delivered_at=now if outcome.delivered else None,
        )
    )
    return state


def abandon(conn: Connection, delivery: Delivery, reason: str, now: datetime) -> None:
    """Mark a delivery failed without sending it (its endpoint is no longer configured)."""
    conn.execute(
        sa.update(t.automation_deliveries)
        .where(*_key(delivery), t.automation_deliveries.c.state == "pending")
        .values(state="failed", last_error=reason[:500], next_attempt_at=now)
    )


def _key(delivery: Delivery) -> list[Any]:
    d = t.automation_deliveries.c
    return [d.model == delivery.model, d.event_id == delivery.event_id, d.endpoint == delivery.endpoint]


# --------------------------------------------------------------------------------------------
# the request


def body_bytes(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes sent (and signed): compact JSON with sorted keys."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signature(secret: str, body: bytes) -> str:
    """The ``X-Cvmon-Signature-256`` value of ``body``: ``sha256=`` and the hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: recompute the signature and compare in constant time."""
    return header is not None and hmac.compare_digest(signature(secret, body), header)


def send(endpoint: WebhookEndpoint, delivery: Delivery, attempt: int) -> Outcome:
    """POST the signed event to ``endpoint`` once."""
    from monitor import __version__

    body = body_bytes(delivery.payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"cvmon/{__version__}",
        SIGNATURE_HEADER: signature(endpoint.secret, body),
        "X-Cvmon-Event": delivery.kind,
        "X-Cvmon-Event-Id": delivery.event_id,
        "X-Cvmon-Delivery": f"{delivery.event_id}-{endpoint.name}-{attempt}",
    }
    request = urllib.request.Request(endpoint.url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=endpoint.timeout_seconds) as response:
            response.read(65536)
            return Outcome(int(response.status), None)
    except urllib.error.HTTPError as exc:
        return Outcome(exc.code, f"HTTP {exc.code} {exc.reason}"[:500])
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return Outcome(None, f"{type(reason).__name__}: {reason}"[:500])


# --------------------------------------------------------------------------------------------
# reading (the API and /metrics)


@dataclass(frozen=True)
class AttemptRecord:
    attempt: int
    started_at: datetime
    finished_at: datetime | None
    status: int | None
    error: str | None


@dataclass(frozen=True)
class DeliveryRecord:
    endpoint: str
    state: str
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_status: int | None
    last_error: str | None
    log: tuple[AttemptRecord, ...]


@dataclass(frozen=True)
class EventRecord:
    event_id: str
    kind: str
    created_at: datetime
    payload: Mapping[str, Any]
    deliveries: tuple[DeliveryRecord, ...]


def list_events(
    conn: Connection, model: str, *, kind: str | None = None, since: datetime | None = None, limit: int = 100
) -> list[EventRecord]:
    """The newest events of ``model`` with every delivery and attempt (the delivery log)."""
    e, d, a = t.automation_events.c, t.automation_deliveries.c, t.automation_attempts.c
    query = sa.select(t.automation_events).where(e.model == model)
    if kind is not None:
        query = query.where(e.kind == kind)
    if since is not None:
        query = query.where(e.created_at >= since)
    events = conn.execute(query.order_by(e.created_at.desc(), e.event_id).limit(limit)).all()
    ids = [r.event_id for r in events]
    deliveries: dict[str, list[Any]] = {}
    attempts: dict[tuple[str, str], list[AttemptRecord]] = {}
    if ids:
        for r in conn.execute(sa.select(t.automation_deliveries).where(d.model == model, d.event_id.in_(ids)).order_by(d.endpoint)):
            deliveries.setdefault(r.event_id, []).append(r)
        for r in conn.execute(sa.select(t.automation_attempts).where(a.model == model, a.event_id.in_(ids)).order_by(a.attempt)):
            attempts.setdefault((r.event_id, r.endpoint), []).append(
                AttemptRecord(r.attempt, r.started_at, r.finished_at, r.status, r.error)
            )
    return [
        EventRecord(
            r.event_id, r.kind, r.created_at, r.payload,
            tuple(
                DeliveryRecord(x.endpoint, x.state, x.attempts, x.next_attempt_at, x.delivered_at, x.last_status,
                               x.last_error, tuple(attempts.get((r.event_id, x.endpoint), ())))
                for x in deliveries.get(r.event_id, [])
            ),
        )
        for r in events
    ]  # fmt: skip


def event_counts(conn: Connection) -> list[tuple[str, str, int]]:
    """(model, kind, events) over every stored event: ``cvmon_automation_events_total``."""
    e = t.automation_events.c
    return [(m, k, int(n)) for m, k, n in conn.execute(sa.select(e.model, e.kind, sa.func.count()).group_by(e.model, e.kind))]


def pending_counts(conn: Connection) -> list[tuple[str, str, str, int]]:
    """(model, endpoint, state, deliveries)."""
    d = t.automation_deliveries.c
    query = sa.select(d.model, d.endpoint, d.state, sa.func.count()).group_by(d.model, d.endpoint, d.state)
    return [(m, ep, s, int(n)) for m, ep, s, n in conn.execute(query)]


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


__all__ = [
    "SIGNATURE_HEADER", "AttemptRecord", "Delivery", "DeliveryRecord", "EventRecord", "Outcome", "abandon", "body_bytes",
    "due_deliveries", "emit", "event_counts", "event_id", "finish_attempt", "list_events", "pending_counts", "send",
    "signature", "start_attempt", "verify_signature",
]  # fmt: skip
