"""Pinned drift references: which data a model version is compared with, fitted once and stored.

A version's reference comes from its spec in ``drift_reference_specs`` (its own row, else the
model's row with version "", else the default: the version's first ``drift_reference_size``
predictions). The detectors fitted on it are stored in ``drift_references`` with
``detectors.to_bytes``, one row per detector and feature, and reused by every run; the label-free
calibration is stored beside them (detector ``label_free``) once the reference has enough labels,
which may be days after the detectors were fitted. ``PUT /v1/models/{model}/reference`` replaces a
spec and deletes the fitted rows it affects, so the next run fits again.

The spec a run fitted on is checked again in the transaction that stores the fit, under a lock on
the model's registry row that :func:`put_spec` takes too: a reference changed mid-fit is never
overwritten by the old one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import Connection

from detectors import Detector, from_bytes, to_bytes
from monitor.server.services.drift_features import (
    ESTIMATOR,
    DetectorSpec,
    DriftConfig,
    Estimator,
    SliceSampler,
    estimator_feature,
    estimator_from_bytes,
    estimator_to_bytes,
    extract,
    fit_detectors,
    fit_estimator,
)
from monitor.server.services.states import SliceKey
from monitor.server.store import tables as t
from monitor.server.store.drift_reads import Record, count_labels, read_first, read_range
from monitor.wire import ModelSpec

log = logging.getLogger("cvmon.jobs.drift")

_HOUR = timedelta(hours=1)
_US = timedelta(microseconds=1)
Kind = Literal["first", "range"]


@dataclass(frozen=True)
class ReferenceSpec:
    """Which data a version's reference is fitted on.

    ``first``: the first ``size`` predictions of ``source_version`` (default: the version itself).
    ``range``: predictions in ``[start, end)``, of ``source_version`` or, when None, of every version.
    ``version`` "" is the model-wide spec; ``set_at`` None marks the built-in default.
    """

    version: str
    kind: Kind
    size: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    source_version: str | None = None
    set_at: datetime | None = None

    def source(self, version: str) -> str | None:
        """The version whose predictions the reference of ``version`` holds (None: every version)."""
        if self.kind == "first":
            return self.source_version or version
        return self.source_version


def load_specs(conn: Connection, model: str) -> dict[str, ReferenceSpec]:
    s = t.drift_reference_specs.c
    return {
        r.version: ReferenceSpec(r.version, r.kind, r.size, r.range_start, r.range_end, r.source_version, r.set_at)
        for r in conn.execute(sa.select(t.drift_reference_specs).where(s.model == model))
    }


def spec_for(specs: dict[str, ReferenceSpec], version: str, default_size: int) -> ReferenceSpec:
    return specs.get(version) or specs.get("") or ReferenceSpec(version="", kind="first", size=default_size)


def put_spec(conn: Connection, model: str, spec: ReferenceSpec) -> None:
    """Store ``spec`` and delete the fitted references it replaces (the caller owns the transaction).

    A model-wide spec (version "") replaces the references of every version without a spec of its own.
    """
    _lock_model(conn, model)
    s = t.drift_reference_specs
    conn.execute(sa.delete(s).where(s.c.model == model, s.c.version == spec.version))
    conn.execute(
        sa.insert(s).values(
            model=model, version=spec.version, kind=spec.kind, size=spec.size, range_start=spec.start,
            range_end=spec.end, source_version=spec.source_version, set_at=spec.set_at,
        )
    )  # fmt: skip
    r = t.drift_references
    stale = r.c.version == spec.version
    if spec.version == "":
        own = sa.select(s.c.version).where(s.c.model == model, s.c.version != "")
        stale = r.c.version.not_in(own)
    conn.execute(sa.delete(r).where(r.c.model == model, stale))


def _lock_model(conn: Connection, model: str) -> None:
    """Serialise spec changes with storing fits (SQLite's write transactions are serial already)."""
    conn.execute(sa.select(t.models.c.model).where(t.models.c.model == model).with_for_update())


# --------------------------------------------------------------------------------------------
# fitted references


@dataclass
class Reference:
    """A version's fitted reference: what it was fitted on, and its stored detectors (loaded on use)."""

    version: str
    spec: ReferenceSpec
    start: datetime
    #: exclusive
    end: datetime
    fitted_at: datetime
    detectors: tuple[DetectorSpec, ...]
    estimator_fitted_at: datetime | None = None
    _loaded: list[tuple[DetectorSpec, Detector]] | None = field(default=None, repr=False)
    _estimator: Estimator | None = field(default=None, repr=False)

    @property
    def digest(self) -> str:
        """What a window scored against this reference depends on (see ``drift_windows``)."""
        est = "" if self.estimator_fitted_at is None else self.estimator_fitted_at.isoformat()
        return f"{self.version}@{self.fitted_at.isoformat()}/{est}"

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """Whether the window ``[start, end)`` holds reference data of this version: comparing data
        with itself says nothing, so such windows get no drift rows (estimates still)."""
        source = self.spec.source(self.version)
        return (source is None or source == self.version) and start < self.end and end > self.start


def load_references(
    conn: Connection, model: str, specs: dict[str, ReferenceSpec], default_size: int
) -> dict[str, Reference]:
    """The fitted references of ``model`` without their summaries (those are read on use)."""
    by_version: dict[str, list[Any]] = {}
    for row in fitted_summary(conn, model):
        by_version.setdefault(row.version, []).append(row)
    out = {}
    for version, group in by_version.items():
        detectors = [x for x in group if x.detector != ESTIMATOR]
        calibration = next((x for x in group if x.detector == ESTIMATOR), None)
        first = (detectors or group)[0]
        out[version] = Reference(
            version, spec_for(specs, version, default_size), first.reference_start, first.reference_end,
            first.fitted_at, tuple(DetectorSpec(x.detector, x.feature) for x in detectors),
            None if calibration is None else calibration.fitted_at,
        )  # fmt: skip
    return out


def fitted(
    conn: Connection, model: str, ref: Reference, task: str
) -> tuple[list[tuple[DetectorSpec, Detector]], Estimator | None]:
    """The stored detectors and calibration of ``ref``, read and rebuilt once per run."""
    if ref._loaded is None:
        r = t.drift_references.c
        rows = conn.execute(
            sa.select(r.detector, r.feature, r.summary).where(r.model == model, r.version == ref.version)
            .order_by(r.detector, r.feature)
        ).all()  # fmt: skip
        ref._loaded = [
            (DetectorSpec(x.detector, x.feature), from_bytes(x.summary)) for x in rows if x.detector != ESTIMATOR
        ]
        ref._estimator = next((estimator_from_bytes(x.summary, task) for x in rows if x.detector == ESTIMATOR), None)
    return ref._loaded, ref._estimator


@dataclass(frozen=True)
class Fit:
    """A reference fitted on records spanning ``[start, end)``: (detector, feature, summary,
    values fitted on) per row of ``drift_references``."""

    rows: tuple[tuple[str, str, bytes, int], ...]
    start: datetime
    end: datetime
    records: int


def fit_reference(records: list[Record], start: datetime, end: datetime, spec: ModelSpec, config: DriftConfig) -> Fit | str:
    """Fit every configured detector (and the label-free calibration, when the records have
    enough labels) on the reference records; returns why nothing could be, as text. Pure: the
    caller reads the records in one transaction and stores the fit in another."""
    features = extract(records, spec, {d.feature for d in config.detectors_for(spec.task)})
    fits, skipped = fit_detectors(
        config.detectors_for(spec.task),
        features,
        alpha=config.alpha,
        n_classes=len(spec.classes),
        min_samples=config.min_samples,
    )
    if skipped:
        log.info("drift reference of %s: not fitted: %s", spec.name, "; ".join(skipped))
    calibration = fit_estimator(records, spec, calibration=config.calibration, min_labels=config.min_labels)
    rows = [(f.spec.detector, f.spec.feature, to_bytes(f.detector), f.n_reference) for f in fits]
    if calibration is not None:
        rows.append((ESTIMATOR, estimator_feature(spec.task), estimator_to_bytes(calibration[0]), calibration[1]))
    if not rows:
        return f"nothing could be fitted on the {len(records)} reference predictions"
    return Fit(tuple(rows), start, end, len(records))


def store_reference(
    conn: Connection, spec: ModelSpec, version: str, rspec: ReferenceSpec, fit: Fit, config: DriftConfig, *, now: datetime
) -> str:
    """Store ``version``'s fitted reference unless its spec changed since it was read; returns
    why not, or "" when stored."""
    r = t.drift_references
    _lock_model(conn, spec.name)
    if spec_for(load_specs(conn, spec.name), version, config.reference_size) != rspec:
        return "the reference changed while it was fitted; fitting again next run"
    conn.execute(sa.delete(r).where(r.c.model == spec.name, r.c.version == version))
    conn.execute(sa.insert(r), [
        {"model": spec.name, "version": version, "detector": d, "feature": f, "summary": blob, "n_reference": n,
         "reference_start": fit.start, "reference_end": fit.end, "fitted_at": now}
        for d, f, blob, n in fit.rows
    ])  # fmt: skip
    log.info("drift reference of %s %s fitted on %d predictions: %s", spec.name, version, fit.records,
             ", ".join(f"{d}:{f}" for d, f, _, _ in fit.rows))  # fmt: skip
    return ""


def calibration_records(conn: Connection, spec: ModelSpec, ref: Reference, config: DriftConfig, *, now: datetime) -> list[Record] | None:
    """The labelled records to fit a fitted reference's label-free calibration on, once enough
    of it is labelled; None before."""
    # cheap upper bounds first: labels of any version in the span, labelled predictions of the source
    if count_labels(conn, spec.name, ref.start, ref.end) < config.min_labels:
        return None
    source = ref.spec.source(ref.version)
    if source is not None:
        v = t.model_versions.c
        labelled = conn.execute(sa.select(v.labelled).where(v.model == spec.name, v.version == source)).scalar()
        if (labelled or 0) < config.min_labels:
            return None
    got = read_reference(conn, spec, ref.version, ref.spec, config, now=now, labels=True)
    return None if isinstance(got, str) else got[0]


def store_calibration(conn: Connection, spec: ModelSpec, ref: Reference, calibration: tuple[Estimator, int], *, now: datetime) -> bool:
    """Store the label-free calibration of a fitted reference, unless the reference was refitted
    or invalidated meanwhile; returns whether it was stored."""
    r = t.drift_references
    _lock_model(conn, spec.name)
    current = conn.execute(
        sa.select(r.c.fitted_at)
        .where(r.c.model == spec.name, r.c.version == ref.version, r.c.detector != ESTIMATOR)
        .limit(1)
    ).scalar()
    if current is None or current != ref.fitted_at:
        return False
    conn.execute(sa.delete(r).where(r.c.model == spec.name, r.c.version == ref.version, r.c.detector == ESTIMATOR))
    conn.execute(sa.insert(r).values(
        model=spec.name, version=ref.version, detector=ESTIMATOR, feature=estimator_feature(spec.task),
        summary=estimator_to_bytes(calibration[0]), n_reference=calibration[1], reference_start=ref.start,
        reference_end=ref.end, fitted_at=now,
    ))  # fmt: skip
    log.info("label-free calibration of %s %s fitted on %d labelled predictions", spec.name, ref.version, calibration[1])
    return True


def read_reference(
    conn: Connection,
    spec: ModelSpec,
    version: str,
    rspec: ReferenceSpec,
    config: DriftConfig,
    *,
    now: datetime,
    labels: bool,
) -> tuple[list[Record], datetime, datetime] | str:
    """The reference records of ``version`` and their span ``[start, end)``, or why they are not there yet."""
    embeddings = any(d.feature == "embedding" for d in config.detectors_for(spec.task))
    probabilities = spec.task == "classification"
    if rspec.kind == "first":
        source = rspec.source(version)
        assert source is not None
        size = rspec.size or config.reference_size
        v = t.model_versions.c
        seen = conn.execute(
            sa.select(v.first_seen, v.predictions).where(v.model == spec.name, v.version == source)
        ).first()
        if seen is None or seen.predictions < size:  # counts errors too: an upper bound
            return f"waiting for {size} predictions of {source} ({0 if seen is None else seen.predictions} so far)"
        records = read_first(conn, spec.name, spec.task, source, size, since=seen.first_seen, embeddings=embeddings,
                             probabilities=probabilities, labels=labels)  # fmt: skip
        if len(records) < size:
            return f"waiting for {size} predictions of {source} ({len(records)} so far)"
        return records, records[0].ts, records[-1].ts + _US
    assert rspec.start is not None and rspec.end is not None
    if now < rspec.end:
        return f"waiting for the reference range to end at {rspec.end.isoformat()}"
    # a long range is read hour by hour into a bounded uniform sample
    sampler = SliceSampler((), (), config.max_samples)
    everything = SliceKey("", "", "")
    hour = rspec.start
    while hour < rspec.end:
        upto = min(hour + _HOUR, rspec.end)
        sampler.add_all(everything, read_range(conn, spec.name, spec.task, hour, upto, version=rspec.source_version,
                                               embeddings=embeddings, probabilities=probabilities, labels=labels))  # fmt: skip
        hour = upto
    records = sampler.records(everything)
    if len(records) < config.min_samples:
        return f"the reference range holds {len(records)} predictions; at least {config.min_samples} are needed"
    return records, rspec.start, rspec.end


def fitted_summary(conn: Connection, model: str) -> list[Any]:
    """The stored fits of ``model`` without their summaries, for GET /v1/models/{model}/reference."""
    r = t.drift_references.c
    return list(
        conn.execute(
            sa.select(r.version, r.detector, r.feature, r.n_reference, r.reference_start, r.reference_end, r.fitted_at)
            .where(r.model == model).order_by(r.version, r.detector, r.feature)
        ).all()
    )  # fmt: skip
