"""The SLO jobs, plain functions ``job(engine, model, *, settings, clock) -> str``.

==========  =================================================================================
slo         count the time-slice events (ece, drift, map) of evaluation hours that just became
            countable; fold old per-minute counts (:func:`~monitor.server.slo.counts.compact`)
notify      the built-in notifier (:func:`~monitor.server.slo.notifier.notify`)
==========  =================================================================================

Both run after ``evaluate`` in every tick, and only for models that have SLOs
(:func:`has_slos`). Request and quality events need no job: ingest counts them as it stores.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from monitor.server.slo.counts import compact
from monitor.server.slo.notifier import notify
from monitor.server.slo.slices import count_time_slices
from monitor.server.store.engine import write_transaction

if TYPE_CHECKING:
    from monitor.server.settings import Settings


def has_slos(settings: Settings, model: str) -> bool:
    """Whether ``model`` has an SLO (the SLO jobs skip every other model)."""
    return any(s.model == model for s in settings.slos)


def slo(engine: Engine, model: str, *, settings: Settings, clock: Callable[[], datetime]) -> str:
    """Count due time slices of ``model``'s SLOs and fold its old per-minute counts."""
    slos = [s for s in settings.slos if s.model == model]
    if not slos:
        return "no SLOs for this model"
    now = clock()
    counted = count_time_slices(engine, model, slos, now)
    pg = engine.dialect.name == "postgresql"
    with write_transaction(engine) as conn:
        folded = sum(compact(conn, s, now, pg=pg) for s in slos)
    return f"{counted} time slices counted, {folded} old count rows folded"


__all__ = ["has_slos", "notify", "slo"]
