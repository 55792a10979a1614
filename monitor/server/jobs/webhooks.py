"""The ``webhooks`` job: deliver a model's due automation events from the outbox.

Each delivery is claimed and its attempt recorded in one committed transaction before the
request goes out, and its outcome in another after it (monitor/server/services/automation.py):
a sender that stops, however abruptly, leaves the outbox telling what was delivered, what was
being sent and what is still due. The job lock runs one sender per model at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from monitor.server.rollout_config import WebhookEndpoint
from monitor.server.services import automation
from monitor.server.settings import Settings
from monitor.server.store.engine import write_transaction

log = logging.getLogger("cvmon.jobs.webhooks")

#: Deliveries read per batch; a run works until nothing is due.
BATCH = 100

Sender = Callable[[WebhookEndpoint, automation.Delivery, int], automation.Outcome]


def has_webhooks(settings: Settings, model: str) -> bool:
    return any(not e.models or model in e.models for e in settings.automation.webhooks)


def webhooks(
    engine: Engine, model: str, *, settings: Settings, clock: Callable[[], datetime], send: Sender = automation.send
) -> str:
    """Send every due delivery of ``model`` once; returns a summary line."""
    config = settings.automation
    endpoints = {e.name: e for e in config.webhooks}
    tally = {"delivered": 0, "pending": 0, "failed": 0}
    seen: set[tuple[str, str]] = set()
    while True:
        with engine.connect() as conn:
            due = [d for d in automation.due_deliveries(conn, model, clock(), limit=BATCH) if (d.event_id, d.endpoint) not in seen]
        if not due:
            break
        for delivery in due:
            seen.add((delivery.event_id, delivery.endpoint))  # one attempt per delivery and run
            endpoint = endpoints.get(delivery.endpoint)
            if endpoint is None:
                with write_transaction(engine) as conn:
                    automation.abandon(conn, delivery, "endpoint no longer configured", clock())
                tally["failed"] += 1
                continue
            with write_transaction(engine) as conn:
                attempt = automation.start_attempt(conn, delivery, endpoint, clock())
            if attempt is None:
                continue  # another sender took it
            outcome = send(endpoint, delivery, attempt)
            with write_transaction(engine) as conn:
                state = automation.finish_attempt(conn, delivery, attempt, outcome, config, clock())
            tally[state] += 1
            if state != "delivered":
                log.warning("webhook %s: %s of model %s, attempt %d: %s (%s)", endpoint.name, delivery.kind, model,
                            attempt, outcome.error or outcome.status, state)  # fmt: skip
    return f"{tally['delivered']} delivered, {tally['pending']} to retry, {tally['failed']} failed"
