"""The ingest service: validate a batch record by record, apply the PII policy, store the good rows.

A malformed record is rejected with its index and a reason; the good records of the same batch
are stored. Nothing here knows about HTTP.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine

from monitor.errors import LimitExceeded, WireError
from monitor.server.settings import Settings
from monitor.server.slo.spec import SLO
from monitor.server.store.partitions import PartitionManager
from monitor.server.store.registry import model_specs
from monitor.server.store.writes import write_ground_truth, write_predictions
from monitor.wire import (
    DEFAULT_LIMITS,
    GroundTruth,
    Limits,
    ModelSpec,
    Prediction,
    claimed_model,
    parse_ground_truth,
    parse_prediction,
)

MAX_RECORDS = 10_000

T = TypeVar("T", Prediction, GroundTruth)


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


def batch_records(payload: Any) -> list[Any]:
    """The ``records`` list of a request body, or :class:`WireError` saying what is wrong."""
    if not isinstance(payload, dict) or not isinstance(payload.get("records"), list):
        raise WireError('the body must be a JSON object {"records": [...]}')
    extra = set(payload) - {"records"}
    if extra:
        raise WireError(f"unknown top-level field {sorted(extra)[0][:64]!r}; the body is {{\"records\": [...]}}")
    records: list[Any] = payload["records"]
    if not records:
        raise WireError("records is empty")
    if len(records) > MAX_RECORDS:
        raise LimitExceeded(f"{len(records)} records in one batch; the limit is {MAX_RECORDS}, split it")
    return records


def record_models(records: Sequence[Any]) -> set[str]:
    """The model names the records claim (for authorisation before any parsing); a name the
    database could not hold is left out, and its record rejected when parsed."""
    return {name for name in map(claimed_model, records) if name is not None}


class CohortPolicy:
    """Drops or hashes the cohort fields configured as PII (``pii.drop`` / ``pii.hash``)."""

    def __init__(self, settings: Settings) -> None:
        self.drop = frozenset(settings.pii_drop)
        self.hash = frozenset(settings.pii_hash)
        self.key = settings.pii_hash_key.encode()
        self.active = bool(self.drop or self.hash)

    def apply(self, cohort: dict[str, Any] | None) -> dict[str, Any] | None:
        if not self.active or not cohort:
            return cohort
        out = {}
        for name, value in cohort.items():
            if name in self.drop:
                continue
            if name in self.hash:
                value = hmac.new(self.key, str(value).encode(), hashlib.sha256).hexdigest()[:16]
            out[name] = value
        return out or None


def _parse_all(
    records: Sequence[Any],
    parse: Callable[..., T],
    specs: dict[str, ModelSpec],
    now: datetime,
    limits: Limits,
    refuse: Callable[[T], str | None] | None = None,
) -> tuple[list[T], list[tuple[int, str]]]:
    good: list[T] = []
    rejected: list[tuple[int, str]] = []
    for i, record in enumerate(records):
        try:
            parsed = parse(record, specs.get, now=now, limits=limits)
        except WireError as exc:
            rejected.append((i, str(exc)))
            continue
        reason = refuse(parsed) if refuse is not None else None
        if reason is None:
            good.append(parsed)
        else:
            rejected.append((i, reason))
    return good, rejected


def ingest_predictions(
    engine: Engine,
    records: Sequence[Any],
    *,
    now: datetime,
    partitions: PartitionManager,
    policy: CohortPolicy,
    limits: Limits = DEFAULT_LIMITS,
    slos: Sequence[SLO] = (),
    oldest: datetime | None = None,
) -> IngestResult:
    """``oldest``: predictions timed before this (the retention cutoff) are rejected: they would be
    deleted by the next housekeeping run, and their day's partition may be gone already."""
    with engine.connect() as conn:
        specs = model_specs(conn, record_models(records))

    def expired(p: Prediction) -> str | None:
        if oldest is None or p.ts >= oldest:
            return None
        return f"timestamp {p.ts.isoformat()} is older than the predictions retention (before {oldest:%Y-%m-%d %H:%M}Z)"

    good, rejected = _parse_all(records, parse_prediction, specs, now, limits, expired)
    if policy.active:
        for p in good:
            p.cohort = policy.apply(p.cohort)
    written = write_predictions(engine, good, now=now, partitions=partitions, slos=slos)
    return IngestResult(written.accepted, written.duplicates, rejected)


def ingest_ground_truth(
    engine: Engine,
    records: Sequence[Any],
    *,
    now: datetime,
    limits: Limits = DEFAULT_LIMITS,
    slos: Sequence[SLO] = (),
) -> IngestResult:
    with engine.connect() as conn:
        specs = model_specs(conn, record_models(records))
    good, rejected = _parse_all(records, parse_ground_truth, specs, now, limits)
    written = write_ground_truth(engine, good, now=now, slos=slos)
    return IngestResult(written.accepted, written.duplicates, rejected)
