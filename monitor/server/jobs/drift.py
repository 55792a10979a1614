"""The drift job: score each completed window of every model version and cohort slice against the
version's pinned reference, and estimate its accuracy without labels. docs/drift.md has the why.

Each run, for one model:

1. *References*: versions with traffic in the lookback get their reference fitted once it can be
   (:mod:`.drift_refs`); the label-free calibration follows once the reference is labelled.
2. *Plan*: the completed aligned windows (``drift_windows``: 1h on the hour, 1d at 00:00 UTC) that
   started within ``drift_lookback`` are planned from the evaluation's hour states, which count
   the predictions of every version and cohort slice without reading a prediction. A window is
   due when ``drift_windows`` has no row for it, or its predictions (late arrivals) or the digest
   of its versions' references (a new reference or calibration) changed since it was scored.
3. *Score*: due windows with a slice of at least ``drift_min_samples`` predictions are read, newest
   first, at most ``drift_max_windows_per_run`` per run; a week of backlog is worked off over a
   few runs. A window is read once, hour by hour, into a bounded uniform sample per slice that
   serves every detector and the estimate. Its rows replace the window's drift rows in
   ``metric_points``. Due windows with nothing to score are recorded without being read.
4. *Latest*: the latest completed window of each length is copied into ``metric_latest``
   (what /metrics serves); a window with no result leaves no drift series.

The evaluate job runs first in every tick: the hour states it writes are what the plan reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine

from monitor.server.services import drift as svc
from monitor.server.services.drift_features import DriftConfig
from monitor.server.services.drift_refs import (
    Reference,
    calibration_records,
    fit_estimator,
    fit_reference,
    load_references,
    load_specs,
    read_reference,
    spec_for,
    store_calibration,
    store_reference,
)
from monitor.server.services.models import model_spec
from monitor.server.services.triggers import drift_events
from monitor.server.services.windows import hour_floor
from monitor.server.settings import Settings
from monitor.server.store.engine import write_transaction
from monitor.wire import ModelSpec

log = logging.getLogger("cvmon.jobs.drift")


def drift(engine: Engine, model: str, *, settings: Settings, clock: Callable[[], datetime]) -> str:
    """Score ``model``'s due windows against its pinned references; returns a summary line."""
    config = DriftConfig.from_settings(settings)
    now = clock()
    current = hour_floor(now)
    horizon = current - timedelta(seconds=config.lookback_seconds)
    with engine.connect() as conn:
        spec = model_spec(conn, model)
        counts = svc.hour_counts(conn, model, horizon, current)
        scored = svc.scored_windows(conn, model, horizon)
    if spec is None:
        return "model not registered"
    versions = sorted({key.version for _, key, _ in counts})
    refs, notes = ensure_references(engine, spec, config, versions, now=now)
    plans = svc.plan_windows(counts, refs, config, horizon=horizon, current=current)
    due = [p for p in plans if scored.get((p.name, p.start)) != (p.predictions, p.references)]
    busy = [p for p in due if p.slices]
    to_score, later = busy[: config.max_windows_per_run], len(busy) - min(len(busy), config.max_windows_per_run)
    for plan in to_score:
        # read and scored outside the write transaction: SQLite's write lock stops ingest
        with engine.connect() as conn:
            rows = svc.score_window(conn, spec, plan, refs, config, now=now)
        with write_transaction(engine) as conn:
            svc.store_window(conn, model, plan, rows, now=now)
    quiet = [p for p in due if not p.slices]
    if due:
        with write_transaction(engine) as conn:
            for plan in quiet:
                svc.store_window(conn, model, plan, [], now=now)
            svc.forget_before(conn, model, horizon)
    with engine.connect() as conn:
        windows, rows = svc.latest_rows(conn, model, config, current, {(p.name, p.start) for p in [*to_score, *quiet]})
    if windows:
        with write_transaction(engine) as conn:
            svc.store_latest(conn, model, windows, rows)
    if to_score:  # automation: drift persisting (and a quality drop) over consecutive windows
        with write_transaction(engine) as conn:
            drift_events(conn, settings, model=model, now=now)
    summary = f"{len(to_score)} windows scored, {len(quiet)} with nothing to score, {later} left for later runs"
    return summary + (f"; references waiting: {'; '.join(notes)}" if notes else "")


def ensure_references(
    engine: Engine, spec: ModelSpec, config: DriftConfig, versions: list[str], *, now: datetime
) -> tuple[dict[str, Reference], list[str]]:
    """Fit the references of ``versions`` that are due and can be; returns every fitted reference
    and a note per version still waiting (and why). Each fit is read in one transaction, computed
    outside any, and stored in another that checks the spec did not change meanwhile."""
    with engine.connect() as conn:
        specs = load_specs(conn, spec.name)
        refs = load_references(conn, spec.name, specs, config.reference_size)
    notes = []
    for version in versions:
        ref = refs.get(version)
        if ref is None:
            rspec = spec_for(specs, version, config.reference_size)
            with engine.connect() as conn:
                got = read_reference(conn, spec, version, rspec, config, now=now, labels=True)
            fit = got if isinstance(got, str) else fit_reference(*got, spec, config)
            if not isinstance(fit, str):
                with write_transaction(engine) as conn:
                    fit = store_reference(conn, spec, version, rspec, fit, config, now=now)
            if fit:
                notes.append(f"{version}: {fit}")
        elif ref.estimator_fitted_at is None:
            with engine.connect() as conn:
                records = calibration_records(conn, spec, ref, config, now=now)
            calibration = None if records is None else fit_estimator(records, spec, calibration=config.calibration, min_labels=config.min_labels)
            if calibration is not None:
                with write_transaction(engine) as conn:
                    store_calibration(conn, spec, ref, calibration, now=now)
    with engine.connect() as conn:
        return load_references(conn, spec.name, specs, config.reference_size), notes
