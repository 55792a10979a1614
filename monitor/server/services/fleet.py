"""The fleet: one row per model with what says whether it needs someone, read in a few grouped
queries for every model at once (the fleet page's cost must not grow with a model's traffic).

==========================  =====================================================================
versions live, traffic      ``model_versions`` (last seen in the last 24 h); ``eval_states`` of
                            whole versions: predictions and labels of the current hour and the
                            last 24 hours (hours since the same hour yesterday)
headline quality            ``metric_latest``: accuracy (classification, every version: the exact
                            merge, correct / labelled) or mAP (detection, busiest version) of the
                            rolling 1d window (the shortest configured window when there is no 1d)
sparkline                   ``metric_points``: the same metric per 1h window over the last 24 hours
change vs last week         the latest complete day against the same day a week before (1d windows)
SLOs                        ``slo_events`` (:func:`monitor.server.slo.counts.read_counts`): budget
                            left over each SLO window, burn-rate alerts firing now (per version and
                            over versions), open incidents of the built-in notifier
drift                       ``metric_latest`` ``drift_detected`` = 1: the latest scored window
jobs                        ``job_runs``: last success per job, jobs whose last run failed
==========================  =====================================================================
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import Connection

from monitor.server.services.console_data import MetricRow, latest_rows
from monitor.server.services.console_slo import SloState, slo_states
from monitor.server.services.models import model_specs
from monitor.server.settings import Settings, parse_window
from monitor.server.slo.spec import SLO
from monitor.server.store import tables as t

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Quality:
    """A quality value with the samples it stands on (labelled predictions; images for mAP)."""

    value: float | None
    n: int


@dataclass(frozen=True, slots=True)
class JobStatus:
    job: str
    last_success: datetime | None
    #: the error of the last run when it failed, else None
    failing: str | None


@dataclass(frozen=True, slots=True)
class DriftFlag:
    """A detector flagging a slice in its latest scored window."""

    version: str
    cohort: str
    detector: str


@dataclass(frozen=True, slots=True)
class FleetRow:
    model: str
    task: str
    versions: tuple[str, ...]
    versions_live: tuple[str, ...]
    predictions_hour: int
    predictions_day: int
    labelled_day: int
    quality_metric: str
    quality_window: str
    quality: Quality
    #: hourly values of the last 24 hours, oldest first (None: no labelled sample that hour)
    spark: tuple[float | None, ...]
    #: latest complete day minus the same day a week earlier; None when either is missing
    week_change: float | None
    slos: tuple[SloState, ...]
    drift: tuple[DriftFlag, ...]
    jobs: tuple[JobStatus, ...]

    @property
    def label_coverage(self) -> float | None:
        return self.labelled_day / self.predictions_day if self.predictions_day else None

    @property
    def budget_left(self) -> float | None:
        """The smallest share of error budget left over the model's SLOs."""
        return min((s.budget_remaining for s in self.slos), default=None)

    @property
    def firing(self) -> tuple[tuple[str, str], ...]:
        """(severity, SLO) of every SLO with an alert burning now or an open incident of the
        notifier, the most severe per SLO, pages first."""
        worst: dict[str, str] = {}
        for s in self.slos:
            severities = {a.severity for a in s.alerts if a.firing} | {i.severity for i in s.incidents if i.state == "firing"}
            if severities:
                worst[s.slo.name] = "page" if "page" in severities else "ticket"
        return tuple(sorted(((sev, name) for name, sev in worst.items()), key=lambda x: (x[0] != "page", x[1])))

    @property
    def drifting(self) -> tuple[tuple[str, str], ...]:
        """(slice, detector) flagged in the latest window, over versions; "" is all traffic."""
        return tuple(sorted({(f.cohort, f.detector) for f in self.drift}))

    @property
    def evaluated(self) -> datetime | None:
        """When the evaluate job last succeeded for this model."""
        return next((j.last_success for j in self.jobs if j.job == "evaluate"), None)

    @property
    def failing_jobs(self) -> tuple[str, ...]:
        return tuple(j.job for j in self.jobs if j.failing)

    @property
    def attention(self) -> tuple[int, ...]:
        """Sort key: what needs someone first (pages, tickets, spent budgets, drift, failing
        jobs, a quality drop), then the rest by name."""
        firing = self.firing
        budget = self.budget_left
        return (
            0 if any(sev == "page" for sev, _ in firing) else 1,
            0 if firing else 1,
            0 if budget is not None and budget <= 0 else 1,
            0 if self.drift else 1,
            0 if self.failing_jobs else 1,
            0 if self.week_change is not None and self.week_change < -0.02 else 1,
        )


def _quality_window(settings: Settings) -> str:
    return next((w for w in settings.windows if parse_window(w) == 86400), min(settings.windows, key=parse_window))


def _combine(rows: Sequence[MetricRow], task: str) -> Quality:
    """Accuracy of several versions is the exact merge (sum of value x labelled / sum of labelled);
    mAP does not merge, so it is the busiest version's."""
    defined = [r for r in rows if r.value is not None and r.n > 0]
    if not defined:
        return Quality(None, sum(r.n for r in rows))
    if task == "classification":
        n = sum(r.n for r in defined)
        return Quality(sum((r.value or 0.0) * r.n for r in defined) / n, n)
    best = max(defined, key=lambda r: r.n)
    return Quality(best.value, best.n)


def fleet(conn: Connection, models: Sequence[str], *, settings: Settings, now: datetime) -> list[FleetRow]:
    """The fleet rows of ``models`` (those the caller may see), what needs attention first."""
    specs = model_specs(conn, models)
    names = sorted(specs)
    if not names:
        return []
    hour = now.replace(minute=0, second=0, microsecond=0)
    qwindow = _quality_window(settings)
    primary = {m: "accuracy" if specs[m].task == "classification" else "map" for m in names}
    metrics = sorted(set(primary.values()))

    v = t.model_versions.c
    versions: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    for seen in conn.execute(sa.select(v.model, v.version, v.last_seen).where(v.model.in_(names)).order_by(v.first_seen)):
        versions[seen.model].append((seen.version, seen.last_seen))

    es = t.eval_states.c
    traffic: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    current = es.hour_start >= hour
    for hours in conn.execute(
        sa.select(es.model, current.label("current"), sa.func.sum(es.predictions), sa.func.sum(es.labelled))
        .where(es.model.in_(names), es.cohort_key == "", es.hour_start > hour - DAY)
        .group_by(es.model, current)
    ):
        counts = traffic[hours[0]]
        counts[1] += int(hours[2] or 0)
        counts[2] += int(hours[3] or 0)
        if hours[1]:
            counts[0] += int(hours[2] or 0)

    latest = latest_rows(conn, names, metrics=[*metrics, "drift_detected"], cohort=None)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    spark_rows = _whole_rows(conn, names, metrics, "1h", [hour - k * HOUR for k in range(24)]) if "1h" in settings.windows else {}
    week_rows = _whole_rows(conn, names, metrics, "1d", [day - DAY, day - 8 * DAY]) if "1d" in settings.windows else {}

    jr = t.job_runs.c
    jobs: dict[str, list[JobStatus]] = defaultdict(list)
    for run in conn.execute(sa.select(jr.model, jr.job, jr.last_success, jr.last_error).where(jr.model.in_(names)).order_by(jr.job)):
        jobs[run.model].append(JobStatus(run.job, run.last_success, run.last_error))

    slos: list[SLO] = [s for s in settings.slos if s.model in specs]
    states = slo_states(conn, slos, now=now)

    rows = []
    for m in names:
        task = specs[m].task
        mine = latest.get(m, [])
        whole = [r for r in mine if r.cohort_key == "" and r.metric == f"{primary[m]}@{qwindow}" and r.cls == ""]
        spark_by_hour: dict[datetime, list[MetricRow]] = defaultdict(list)
        for r in spark_rows.get(m, []):
            if r.cohort_key == "" and r.cls == "":
                spark_by_hour[r.window_start].append(r)
        spark = tuple(_combine(spark_by_hour.get(hour - (23 - i) * HOUR, []), task).value for i in range(24))
        by_day: dict[datetime, list[MetricRow]] = defaultdict(list)
        for r in week_rows.get(m, []):
            if r.cohort_key == "" and r.cls == "":
                by_day[r.window_start].append(r)
        now_q, then_q = _combine(by_day.get(day - DAY, []), task).value, _combine(by_day.get(day - 8 * DAY, []), task).value
        flags = _drift_flags(mine)
        count = traffic.get(m, [0, 0, 0])
        live = tuple(name for name, seen in versions.get(m, []) if seen >= now - DAY)
        rows.append(FleetRow(
            model=m, task=task, versions=tuple(name for name, _ in versions.get(m, [])), versions_live=live,
            predictions_hour=count[0], predictions_day=count[1], labelled_day=count[2],
            quality_metric=primary[m], quality_window=qwindow, quality=_combine(whole, task), spark=spark,
            week_change=None if now_q is None or then_q is None else now_q - then_q,
            slos=tuple(s for s in states if s.slo.model == m), drift=flags, jobs=tuple(jobs.get(m, [])),
        ))  # fmt: skip
    rows.sort(key=lambda r: (r.attention, r.model))
    return rows


def _whole_rows(conn: Connection, models: list[str], metrics: list[str], window: str, starts: list[datetime]) -> dict[str, list[MetricRow]]:
    """Whole-version values of ``metrics`` in the windows starting at ``starts``, for every model
    in one query."""
    mp = t.metric_points.c
    query = sa.select(
        mp.model, mp.window_start, mp.window_end, mp.version, mp.cohort_key, mp.cohort_value, mp.metric, mp["class"], mp.value,
        mp.sample_count,
    ).where(mp.model.in_(models), mp.window == window, mp.window_start.in_(starts), mp.metric.in_(metrics), mp.cohort_key == "",
            mp["class"] == "")  # fmt: skip
    out: dict[str, list[MetricRow]] = defaultdict(list)
    for r in conn.execute(query):
        out[r.model].append(MetricRow(r.window_start, r.window_end, r.version, r.cohort_key, r.cohort_value, r.metric,
                                      r._mapping["class"], r.value, r.sample_count))  # fmt: skip
    return out


def _drift_flags(rows: Sequence[MetricRow]) -> tuple[DriftFlag, ...]:
    """Detectors flagging in the latest scored window of the shortest drift window."""
    detected = [r for r in rows if r.metric.startswith("drift_detected@")]
    if not detected:
        return ()
    shortest = min({r.metric.split("@", 1)[1] for r in detected}, key=parse_window)
    return tuple(
        sorted({DriftFlag(r.version, r.cohort, r.cls) for r in detected if r.metric == f"drift_detected@{shortest}" and r.value == 1.0},
               key=lambda f: (f.cohort, f.detector, f.version))
    )
