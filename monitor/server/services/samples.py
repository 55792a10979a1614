"""Sample images: received, protected, sealed and stored; read back; expired; re-sealed.

The path of a sample (``POST /v1/samples``, :func:`ingest_samples`):

1. validate the record (:func:`monitor.wire_images.parse_sample`: the bytes are a JPEG, PNG or
   WebP within ``samples.max_bytes`` and ``max_side``), and check that its model opted in;
2. skip samples already stored (one per prediction: a retry is a duplicate);
3. privacy (:mod:`.privacy`): faces and plates found and masked, or the image dropped, per the
   model's policy; every image re-encoded, so its metadata is gone;
4. seal with the active key (:mod:`.sample_crypto`) and put into the object store under
   ``<model>/<day>/<sample id>-<key id>``;
5. in one transaction: the metadata rows (``samples``) and the counters.

An object whose row never commits (the database failed after the put) is an orphan: retention
sweeps whole days of objects, orphans included. Services never commit: the engine-level
:func:`ingest_samples` opens its own transactions like the other ingest paths.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from monitor.errors import WireError
from monitor.server.sample_settings import SampleSettings
from monitor.server.services import privacy
from monitor.server.services.ingest import record_models
from monitor.server.services.models import model_specs
from monitor.server.services.sample_audit import bump
from monitor.server.services.sample_crypto import KeyRing, seal, unseal
from monitor.server.store import tables as t
from monitor.server.store.engine import write_transaction
from monitor.server.store.objects import ObjectMissing, ObjectStore

__all__ = ["ObjectMissing", "SampleRuntime", "StoredObject", "Tampered", "ingest_samples", "read_bytes"]
from monitor.wire_images import ImageLimits, Sample, parse_sample


@dataclass(frozen=True)
class SampleRuntime:
    """What serving samples needs, built once per process from the settings."""

    settings: SampleSettings
    store: ObjectStore
    keys: KeyRing

    @classmethod
    def from_settings(cls, settings: SampleSettings) -> SampleRuntime | None:
        """None when no model has opted in to samples."""
        if not settings.enabled:
            return None
        return cls(settings, ObjectStore(settings.store, settings.store_options), KeyRing.from_settings(settings))

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(max_bytes=self.settings.max_bytes, max_side=self.settings.max_side)


def sample_id(model: str, prediction_id: str) -> str:
    """The public id of a prediction's sample: 24 hex digits, the same on every retry."""
    return hashlib.sha256(f"{model}\x00{prediction_id}".encode()).hexdigest()[:24]


def object_key(model: str, captured_at: datetime, sid: str, key_id: str) -> str:
    return f"{model}/{captured_at:%Y-%m-%d}/{sid}-{key_id}"


def associated_data(model: str, sid: str) -> bytes:
    """What a sealed object is bound to: it opens only as this model's sample ``sid``."""
    return f"cvmon-sample\x00{model}\x00{sid}".encode()


@dataclass
class SampleIngestResult:
    accepted: int = 0
    duplicates: int = 0
    #: not stored because of the privacy policy (a face or plate under ``drop``), by reason
    dropped: Counter[str] = field(default_factory=Counter)
    rejected: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Sealed:
    sample: Sample
    sid: str
    protected: privacy.Protected
    key_id: str
    object_key: str
    sha256: bytes
    size: int


def ingest_samples(engine: Engine, runtime: SampleRuntime, records: Sequence[Any], *, now: datetime) -> SampleIngestResult:
    """Validate, protect, seal and store a batch of sample records (see the module docstring)."""
    result = SampleIngestResult()
    with engine.connect() as conn:
        specs = model_specs(conn, record_models(records))
        good: list[tuple[int, Sample]] = []
        for i, record in enumerate(records):
            try:
                sample = parse_sample(record, specs.get, now=now, limits=runtime.limits)
            except WireError as exc:
                result.rejected.append((i, str(exc)))
                continue
            if runtime.settings.policy(sample.model) is None:
                result.rejected.append((i, f"samples are not enabled for model {sample.model!r} (samples.models in cvmon.yaml)"))
                continue
            good.append((i, sample))
        stored = _stored(conn, [(s.model, s.prediction_id) for _, s in good])
    fresh: dict[tuple[str, str], tuple[int, Sample]] = {}
    for i, s in good:
        if (s.model, s.prediction_id) in stored or (s.model, s.prediction_id) in fresh:
            result.duplicates += 1
        else:
            fresh[(s.model, s.prediction_id)] = (i, s)
    sealed: list[_Sealed] = []
    dropped: dict[str, Counter[str]] = {}
    for i, sample in fresh.values():
        try:
            outcome = protect_and_seal(runtime, sample)
        except privacy.Undecodable as exc:
            result.rejected.append((i, str(exc)))
            continue
        if isinstance(outcome, str):
            result.dropped[outcome] += 1
            dropped.setdefault(sample.model, Counter())[f"dropped_{outcome}"] += 1
        else:
            sealed.append(outcome)
    with write_transaction(engine) as conn:
        result.accepted = record_samples(conn, sealed, now=now)
        for model, counts in sorted(dropped.items()):
            bump(conn, model, counts)
    result.duplicates += len(sealed) - result.accepted
    result.rejected.sort()
    return result


def protect_and_seal(runtime: SampleRuntime, sample: Sample) -> _Sealed | str:
    """Privacy, then encryption, then the object store; returns what to record, or why the
    image was dropped (``faces``, ``plates``, ``residual``)."""
    policy = runtime.settings.policy(sample.model)
    assert policy is not None
    protected = privacy.protect(sample.data, sample.info.media_type, policy, runtime.settings.mask)
    if protected.data is None:
        assert protected.dropped is not None
        return protected.dropped
    sid = sample_id(sample.model, sample.prediction_id)
    key_id, sealed = seal(runtime.keys, protected.data, associated_data(sample.model, sid))
    key = object_key(sample.model, sample.captured_at, sid, key_id)
    runtime.store.put(key, sealed)
    return _Sealed(sample, sid, protected, key_id, key, hashlib.sha256(protected.data).digest(), len(protected.data))


def _stored(conn: Connection, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    s = t.samples.c
    out: set[tuple[str, str]] = set()
    by_model: dict[str, list[str]] = {}
    for model, pid in keys:
        by_model.setdefault(model, []).append(pid)
    for model, pids in by_model.items():
        for i in range(0, len(pids), 500):
            rows = conn.execute(sa.select(s.prediction_id).where(s.model == model, s.prediction_id.in_(pids[i : i + 500])))
            out |= {(model, pid) for pid in rows.scalars()}
    return out


def record_samples(conn: Connection, sealed: Sequence[_Sealed], *, now: datetime) -> int:
    """Insert the metadata rows of stored objects (a sample stored meanwhile by a concurrent
    retry is left as it is); raise the ``stored`` counters. Returns how many rows are new."""
    if not sealed:
        return 0
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    c = t.samples.c
    new: Counter[str] = Counter()
    for item in sorted(sealed, key=lambda x: (x.sample.model, x.sample.prediction_id)):
        s, p = item.sample, item.protected
        stmt = insert(t.samples).values(
            model=s.model, prediction_id=s.prediction_id, sample_id=item.sid, captured_at=s.captured_at, received_at=now,
            reason=s.reason, media_type=p.media_type, width=p.width, height=p.height, size_bytes=item.size,
            source_width=s.source_size[0] if s.source_size else None,
            source_height=s.source_size[1] if s.source_size else None,
            sha256=item.sha256, faces=min(p.faces, 32767), plates=min(p.plates, 32767), masking=p.masking,
            exposed=p.exposed, key_id=item.key_id, object_key=item.object_key,
        )  # fmt: skip
        if conn.execute(stmt.on_conflict_do_nothing().returning(c.sample_id)).first() is not None:
            new[s.model] += 1
    for model, n in sorted(new.items()):
        bump(conn, model, {"stored": n})
    return sum(new.values())


# --------------------------------------------------------------------------------------------
# reading the bytes back


@dataclass(frozen=True, slots=True)
class StoredObject:
    """Where a sample's bytes are and how to open them."""

    model: str
    sample_id: str
    key_id: str
    object_key: str
    media_type: str
    sha256: bytes


class Tampered(ValueError):
    """The stored bytes do not open as this sample: altered, or another sample's object."""


def read_bytes(runtime: SampleRuntime, obj: StoredObject) -> bytes:
    """The plaintext image of a stored sample, authenticated (AES-GCM tag, bound to the sample)
    and checked against its hash. Raises :class:`ObjectMissing`, :class:`UnknownKey` or
    :class:`Tampered`."""
    from cryptography.exceptions import InvalidTag

    sealed = runtime.store.get(obj.object_key)
    try:
        data = unseal(runtime.keys, obj.key_id, sealed, associated_data(obj.model, obj.sample_id))
    except (InvalidTag, ValueError):
        raise Tampered(f"sample {obj.sample_id}: the stored bytes do not open as this sample (altered or moved)") from None
    if hashlib.sha256(data).digest() != obj.sha256:
        raise Tampered(f"sample {obj.sample_id}: the stored bytes do not match their hash")
    return data


def stored_object(conn: Connection, model: str, sid: str) -> StoredObject | None:
    s = t.samples.c
    row = conn.execute(
        sa.select(s.key_id, s.object_key, s.media_type, s.sha256).where(s.model == model, s.sample_id == sid)
    ).first()
    return None if row is None else StoredObject(model, sid, row.key_id, row.object_key, row.media_type, bytes(row.sha256))


# --------------------------------------------------------------------------------------------
# retention and key rotation


def expire(conn: Connection, model: str, cutoff: datetime, *, limit: int = 5000) -> list[str]:
    """Delete up to ``limit`` sample rows of ``model`` captured before ``cutoff``; returns their
    object keys, to delete from the store once this transaction has committed."""
    s = t.samples.c
    rows = conn.execute(
        sa.select(s.prediction_id, s.object_key).where(s.model == model, s.captured_at < cutoff).limit(limit)
    ).all()
    if rows:
        ids = [r.prediction_id for r in rows]
        conn.execute(sa.delete(t.samples).where(s.model == model, s.prediction_id.in_(ids)))
        conn.execute(sa.delete(t.label_queue_items).where(
            t.label_queue_items.c.model == model, t.label_queue_items.c.prediction_id.in_(ids)
        ))  # fmt: skip
    return [r.object_key for r in rows]


def sweep_days(store: ObjectStore, model: str, cutoff: datetime) -> int:
    """Delete the store's day folders of ``model`` that end before ``cutoff``, with every object
    left in them (orphans of failed transactions); returns how many objects went."""
    last_day = (cutoff - timedelta(days=1)).strftime("%Y-%m-%d")
    gone = 0
    for day in store.folders(f"{model}/"):
        if day < last_day:
            keys = [key for key, _ in store.keys(f"{model}/{day}/")]
            store.delete(keys)
            gone += len(keys)
    return gone


def models_with_samples(conn: Connection) -> list[str]:
    return list(conn.execute(sa.select(t.samples.c.model).distinct().order_by(t.samples.c.model)).scalars())


def stale_keys(
    conn: Connection, active: str, *, limit: int, models: Sequence[str] | None = None
) -> list[tuple[str, str, str, str, datetime, bytes]]:
    """Samples sealed under another key than ``active`` (of ``models``, default all): (model,
    sample id, key id, object key, captured at, sha256)."""
    s = t.samples.c
    query = sa.select(s.model, s.sample_id, s.key_id, s.object_key, s.captured_at, s.sha256).where(s.key_id != active)
    if models is not None:
        query = query.where(s.model.in_(list(models)))
    rows = conn.execute(query.order_by(s.model, s.sample_id).limit(limit)).all()
    return [(r.model, r.sample_id, r.key_id, r.object_key, r.captured_at, bytes(r.sha256)) for r in rows]


def reseal(
    conn: Connection, runtime: SampleRuntime, *, limit: int = 200, models: Sequence[str] | None = None
) -> tuple[int, list[str]]:
    """Re-seal up to ``limit`` samples (of ``models``, default all) under the active key: each is read, opened with its own
    key, sealed again and put under a new object key, and its row updated. Returns how many were
    re-sealed and the old object keys, to delete once this transaction has committed (until then
    readers of the old rows still find the old objects)."""
    active, _ = runtime.keys.active()
    done, old = 0, []
    s = t.samples.c
    for model, sid, key_id, key, captured_at, digest in stale_keys(conn, active, limit=limit, models=models):
        aad = associated_data(model, sid)
        plain = unseal(runtime.keys, key_id, runtime.store.get(key), aad)
        if hashlib.sha256(plain).digest() != digest:
            raise ValueError(f"sample {sid} of {model}: the stored bytes do not match their hash")
        new_id, sealed = seal(runtime.keys, plain, aad)
        new_key = object_key(model, captured_at, sid, new_id)
        runtime.store.put(new_key, sealed)
        conn.execute(sa.update(t.samples).where(s.model == model, s.sample_id == sid).values(key_id=new_id, object_key=new_key))
        old.append(key)
        done += 1
    return done, old
