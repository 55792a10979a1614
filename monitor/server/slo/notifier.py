"""The built-in notifier: cvmon's own burn-rate alerts, for teams without Prometheus.

Each run of the ``notify`` job (per model, after ``evaluate`` and ``slo``):

1. sums the model's per-minute SLO counts over every alert window, ending now
   (:func:`~monitor.server.slo.counts.read_counts`, the numbers /metrics serves);
2. decides every alert with :func:`~monitor.server.slo.burnrate.evaluate_alerts`, the function
   the rendered ``CvmonErrorBudgetBurn`` rules are tested against, per model version (or on the
   sum over versions for an SLO with ``per_version: false``, as its rules do), and keeps a firing
   alert firing for its ``keep_firing_for`` after its condition stops holding
   (:func:`~monitor.server.slo.burnrate.hold`, the rules' ``keep_firing_for``), so cvmon and
   Prometheus make the same decision on the same counts;
3. groups the firing alerts by SLO, model version and severity: each group is one *incident*
   (``notifications`` row), and goes to the receiver of its severity (page or ticket);
4. sends Alertmanager webhook payloads (``version: "4"``): one ``firing`` notification when an
   incident starts (again every ``repeat_interval`` if set), one ``resolved`` when no alert of
   the group fires any more. New alerts joining an open incident (the 6h page after the 1h page)
   do not notify again: one page per incident.

Silences (:mod:`.silences`) hold back firing notifications and say so in the log; the incident
is kept, so when the silence ends while it still fires it is notified once. A resolved
notification is sent only for an incident whose firing notification went out, and a silence
never holds it back (it closes a page someone already has). Delivery is at least once: a
failed send (receiver down, timeout, HTTP error) is logged and retried on the next run; a
crash between the send and the database update may repeat one notification.

For an SLO with ``per_version: false`` the decision is made on the sum over versions, exactly as
its rendered rules do (``sum by (slo, model)``), and payloads carry no ``version`` label.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from monitor.server.services.triggers import slo_alert
from monitor.server.slo.burnrate import QUIET, SEVERITIES, AlertDecision, AlertState, BurnAlert, evaluate_alerts, hold
from monitor.server.slo.counts import SloCounts, read_counts
from monitor.server.slo.receivers import NotifierConfig, Receiver
from monitor.server.slo.render import ALERT_NAME, alert_annotations, alert_labels
from monitor.server.slo.silences import Silence, active_silences
from monitor.server.slo.spec import SLO
from monitor.server.store import tables as t
from monitor.server.store.engine import write_transaction

if TYPE_CHECKING:  # the settings module imports this package's spec; no cycle at run time
    from monitor.server.settings import Settings

log = logging.getLogger("cvmon.notifier")

#: Alertmanager's "no end time" for a firing alert.
ZERO_TIME: Final = "0001-01-01T00:00:00Z"
Action = Literal["firing", "resolved"]


@dataclass(frozen=True, slots=True)
class GroupKey:
    """One notification group: an SLO, a model version ("" for the sum over versions), a severity."""

    slo: str
    version: str
    severity: str


@dataclass(frozen=True, slots=True)
class Incident:
    """The stored state of one group (a ``notifications`` row)."""

    state: Literal["firing", "resolved"]
    first_fired: datetime
    #: (long window, short window) in seconds of every alert that fired during the incident.
    alerts: tuple[tuple[int, int], ...]
    last_sent: datetime | None = None
    resolved_at: datetime | None = None
    resolved_sent: datetime | None = None
    last_error: str | None = None
    #: The alerts firing after the last evaluation, with when their condition stopped holding
    #: (None while it holds): the hysteresis state, :func:`keep_firing`.
    held: tuple[tuple[int, int, datetime | None], ...] = ()


Windows = tuple[int, int]


def keep_firing(
    alerts: Sequence[BurnAlert], conditions: Mapping[Windows, bool], incident: Incident | None, now: datetime
) -> tuple[list[BurnAlert], tuple[tuple[int, int, datetime | None], ...]]:
    """The alerts of one group firing after this evaluation, with the hysteresis state to keep.

    ``conditions`` holds each alert's condition now (missing: false, e.g. a version without
    events any more); an alert of an open incident keeps firing until its condition has been
    false for its ``keep_firing_for`` (:func:`~monitor.server.slo.burnrate.hold`).
    """
    states: dict[Windows, AlertState] = {}
    if incident is not None and incident.state == "firing":
        states = {(lw, sw): AlertState(True, None if q is None else q.timestamp()) for lw, sw, q in incident.held}
    firing: list[BurnAlert] = []
    held: list[tuple[int, int, datetime | None]] = []
    for alert in alerts:
        windows = (alert.long_window_s, alert.short_window_s)
        state = hold(alert, states.get(windows, QUIET), conditions.get(windows, False), now.timestamp())
        if state.firing:
            firing.append(alert)
            quiet = None if state.quiet_since is None else datetime.fromtimestamp(state.quiet_since, UTC)
            held.append((*windows, quiet))
    return firing, tuple(held)


def advance(
    incident: Incident | None, firing: Sequence[BurnAlert], now: datetime, config: NotifierConfig
) -> tuple[Incident | None, Action | None]:
    """The incident after this evaluation, and the notification now due (before silences).

    Pure: the whole dedup / repeat / resolve policy, apart from sending.
    """
    if firing:
        windows = {(a.long_window_s, a.short_window_s) for a in firing}
        if incident is None or incident.state == "resolved":
            incident = Incident("firing", now, tuple(sorted(windows)))
        else:
            incident = replace(incident, alerts=tuple(sorted(set(incident.alerts) | windows)))
        repeat = config.repeat_interval_s
        due = incident.last_sent is None or (
            repeat is not None and now - incident.last_sent >= timedelta(seconds=repeat)
        )
        return incident, "firing" if due else None
    if incident is None:
        return None, None
    if incident.state == "firing":
        incident = replace(incident, state="resolved", resolved_at=now)
    pending = config.send_resolved and incident.last_sent is not None and incident.resolved_sent is None
    return incident, "resolved" if pending else None


# --------------------------------------------------------------------------------------------
# the payload


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable 16-hex-digit id of a label set (Alertmanager fingerprints alerts by labels too)."""
    text = "\x00".join(f"{k}\x00{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _group_labels(model: str, key: GroupKey) -> dict[str, str]:
    labels = {"model": model, "slo": key.slo}
    if key.version:
        labels["version"] = key.version
    return labels


def group_key(model: str, key: GroupKey) -> str:
    """Alertmanager's ``groupKey`` spelling: route matchers, then the group labels."""
    labels = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(_group_labels(model, key).items()))
    return f'{{}}/{{severity="{key.severity}"}}:{{{labels}}}'


def _alert(
    slo: SLO,
    key: GroupKey,
    alert: BurnAlert,
    status: Action,
    incident: Incident,
    decision: AlertDecision | None,
) -> dict[str, Any]:
    labels = {"alertname": ALERT_NAME, **alert_labels(slo, alert)}
    if key.version:
        labels["version"] = key.version
    annotations = alert_annotations(slo, alert)
    if decision is not None and decision.long_burn_rate is not None and decision.short_burn_rate is not None:
        annotations["burn_rate"] = f"{decision.long_burn_rate:.4g}"
        annotations["short_window_burn_rate"] = f"{decision.short_burn_rate:.4g}"
        annotations["events"] = f"{decision.long_events:g}"
    ends = incident.resolved_at if status == "resolved" and incident.resolved_at else None
    return {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": _iso(incident.first_fired),
        "endsAt": ZERO_TIME if ends is None else _iso(ends),
        "generatorURL": "",
        "fingerprint": fingerprint(labels),
    }


def _common(dicts: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    first = dict(dicts[0])
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in dicts[1:])}


def build_payload(
    *,
    model: str,
    slo: SLO,
    key: GroupKey,
    status: Action,
    incident: Incident,
    decisions: Sequence[AlertDecision],
    receiver: Receiver,
    external_url: str = "",
    firing: Sequence[BurnAlert] | None = None,
) -> dict[str, Any]:
    """An Alertmanager webhook payload (``version: "4"``) for one group.

    Firing: the alerts firing now (``firing``, with those kept firing by their hysteresis;
    default: the decisions that fire), with their burn rates. Resolved: every alert that fired
    during the incident, with ``endsAt`` the time it stopped.
    """
    if status == "firing":
        now = [d.alert for d in decisions if d.firing] if firing is None else list(firing)
        by_alert = {d.alert: d for d in decisions}
        alerts = [_alert(slo, key, a, status, incident, by_alert.get(a)) for a in now]
    else:
        by_windows = {(a.long_window_s, a.short_window_s): a for a in slo.alerts if a.severity == key.severity}
        alerts = [_alert(slo, key, by_windows[w], status, incident, None) for w in incident.alerts if w in by_windows]
    for a in alerts:
        a["generatorURL"] = external_url
    return {
        "version": "4",
        "groupKey": group_key(model, key),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver.name,
        "groupLabels": _group_labels(model, key),
        "commonLabels": _common([a["labels"] for a in alerts]),
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": external_url,
        "alerts": alerts,
    }


# --------------------------------------------------------------------------------------------
# sending


def post(
    receiver: Receiver,
    payload: Mapping[str, Any],
    *,
    retries: int,
    backoff_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """POST ``payload`` as JSON; returns None when the receiver answered 2xx, else the error.

    Network errors, timeouts, 5xx, 408 and 429 are retried ``retries`` times with exponential
    backoff; other 4xx are not (they will not change on their own), but the caller still tries
    again on its next run.
    """
    from monitor import __version__

    body = json.dumps(payload, sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"cvmon/{__version__}",
        **dict(receiver.headers),
    }
    error = "not sent"
    for attempt in range(retries + 1):
        request = urllib.request.Request(receiver.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=receiver.timeout_seconds) as response:
                response.read()
            return None
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code} {exc.reason}"
            retryable = exc.code >= 500 or exc.code in (408, 429)
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            error = f"{type(reason).__name__}: {reason}"
            retryable = True
        if not retryable or attempt == retries:
            break
        sleep(backoff_seconds * 2**attempt)
    return error


# --------------------------------------------------------------------------------------------
# the job


def decide(slos: Sequence[SLO], counts: Mapping[str, SloCounts]) -> dict[GroupKey, list[AlertDecision]]:
    """Every alert decision, grouped: per SLO and version (or the sum over versions, for an SLO
    with ``per_version: false``) and severity."""
    groups: dict[GroupKey, list[AlertDecision]] = {}
    for slo in slos:
        c = counts.get(slo.name)
        if c is None:
            continue
        if slo.per_version:
            longest = max(a.long_window_s for a in slo.alerts)
            versions = [v for v in sorted(c.versions) if c.window(longest, v).events > 0]
        else:
            versions = [""]
        for version in versions:
            decisions = evaluate_alerts(slo.objective, slo.alerts, c.alert_counts(version or None))
            for d in decisions:
                if d.held_by_guard:
                    log.debug("SLO %s %s: %s %s/%s burns but holds %g events, under its guard of %d",
                              slo.name, version, d.alert.severity, d.alert.long_window, d.alert.short_window,
                              d.long_events, d.alert.min_events)  # fmt: skip
            for severity in SEVERITIES:
                groups[GroupKey(slo.name, version, severity)] = [d for d in decisions if d.alert.severity == severity]
    return groups


def _load_incidents(conn: Connection, model: str) -> dict[GroupKey, Incident]:
    n = t.notifications.c
    out = {}
    for r in conn.execute(sa.select(t.notifications).where(n.model == model)):
        out[GroupKey(r.slo, r.version, r.severity)] = Incident(
            state=r.state,
            first_fired=r.first_fired,
            alerts=tuple((int(a[0]), int(a[1])) for a in r.alerts),
            last_sent=r.last_sent,
            resolved_at=r.resolved_at,
            resolved_sent=r.resolved_sent,
            last_error=r.last_error,
            held=tuple(_held(a, r.state) for a in r.alerts if _is_held(a, r.state)),
        )
    return out


# Each stored alert is [long, short, held, quiet_since]; rows written before the hysteresis hold
# [long, short], every alert of a firing incident held.
def _is_held(entry: Sequence[Any], state: str) -> bool:
    return bool(entry[2]) if len(entry) > 2 else state == "firing"


def _held(entry: Sequence[Any], state: str) -> tuple[int, int, datetime | None]:
    quiet = entry[3] if len(entry) > 3 else None
    return int(entry[0]), int(entry[1]), None if quiet is None else datetime.fromisoformat(quiet)


def _stored_alerts(incident: Incident) -> list[list[Any]]:
    held = {(lw, sw): q for lw, sw, q in incident.held}
    out: list[list[Any]] = []
    for lw, sw in incident.alerts:
        quiet = held.get((lw, sw))
        out.append([lw, sw, (lw, sw) in held, None if quiet is None else quiet.isoformat()])
    return out


def _save(engine: Engine, model: str, key: GroupKey, incident: Incident, now: datetime) -> None:
    n = t.notifications
    row = {
        "model": model, "slo": key.slo, "version": key.version, "severity": key.severity,
        "state": incident.state, "fingerprint": fingerprint(_group_labels(model, key) | {"severity": key.severity}),
        "first_fired": incident.first_fired, "last_sent": incident.last_sent, "resolved_at": incident.resolved_at,
        "resolved_sent": incident.resolved_sent, "alerts": _stored_alerts(incident),
        "last_error": incident.last_error, "updated_at": now,
    }  # fmt: skip
    stmt = (pg_insert if engine.dialect.name == "postgresql" else sqlite_insert)(n)
    stmt = stmt.on_conflict_do_update(
        index_elements=[n.c.model, n.c.slo, n.c.version, n.c.severity],
        set_={k: stmt.excluded[k] for k in row if k not in ("model", "slo", "version", "severity")},
    )
    with write_transaction(engine) as conn:
        conn.execute(stmt, row)


@dataclass
class _Tally:
    firing: int = 0
    sent: int = 0
    resolved: int = 0
    silenced: int = 0
    failed: int = 0

    def line(self) -> str:
        return (
            f"{self.firing} incidents firing; sent {self.sent} firing and {self.resolved} resolved; "
            f"{self.silenced} silenced; {self.failed} failed"
        )


def notify(engine: Engine, model: str, *, settings: Settings, clock: Callable[[], datetime]) -> str:
    """Evaluate ``model``'s burn-rate alerts from the database and notify the receivers."""
    config = settings.notifier
    slos = [s for s in settings.slos if s.model == model]
    if config is None:
        return "notifier not configured"
    if not slos:
        return "no SLOs for this model"
    now = clock()
    with engine.connect() as conn:
        counts = read_counts(conn, slos, now)
        incidents = _load_incidents(conn, model)
        silences = active_silences(conn, model, now)
    groups = decide(slos, counts)
    by_name = {s.name: s for s in slos}
    tally = _Tally()
    for key in sorted(set(groups) | {k for k, i in incidents.items() if k.slo in by_name}, key=_order):
        receiver = config.receiver(key.severity)
        if receiver is None:
            continue  # this severity is not notified
        slo = by_name[key.slo]
        decisions = groups.get(key, [])
        before = incidents.get(key)
        conditions = {(d.alert.long_window_s, d.alert.short_window_s): d.firing for d in decisions}
        group_alerts = [a for a in slo.alerts if a.severity == key.severity]
        firing, held = keep_firing(group_alerts, conditions, before, now)
        incident, action = advance(before, firing, now, config)
        if incident is None:
            continue
        incident = replace(incident, held=held)
        if action == "firing":  # automation: slo.page / slo.ticket, rollback.requested (once per incident)
            with write_transaction(engine) as conn:
                slo_alert(conn, settings, model=model, slo=key.slo, version=key.version, severity=key.severity,
                          first_fired=incident.first_fired, now=now)  # fmt: skip
        tally.firing += incident.state == "firing"
        if action is not None:
            incident = _deliver(
                model, slo, key, incident, action, decisions, firing, receiver, config, silences, now, tally
            )
        if incident != before:
            _save(engine, model, key, incident, now)
    return tally.line()


def _order(key: GroupKey) -> tuple[str, str, bool]:
    return (key.slo, key.version, key.severity != "page")  # pages first


def _deliver(
    model: str,
    slo: SLO,
    key: GroupKey,
    incident: Incident,
    action: Action,
    decisions: Sequence[AlertDecision],
    firing: Sequence[BurnAlert],
    receiver: Receiver,
    config: NotifierConfig,
    silences: Sequence[Silence],
    now: datetime,
    tally: _Tally,
) -> Incident:
    """Send the due notification unless silenced; returns the incident with the outcome."""
    what = f"{action} {key.severity} for SLO {slo.name} of model {model}" + (f" {key.version}" if key.version else "")
    silence = next((s for s in silences if s.covers(model, slo.name, now)), None)
    if action == "firing" and silence is not None:
        log.info("silenced: not sending %s (silence %s until %s by %s: %s)", what, silence.silence_id,
                 _iso(silence.ends_at), silence.created_by or "-", silence.comment or "-")  # fmt: skip
        tally.silenced += 1
        return incident
    payload = build_payload(
        model=model, slo=slo, key=key, status=action, incident=incident, decisions=decisions,
        receiver=receiver, external_url=config.external_url, firing=firing,
    )  # fmt: skip
    error = post(receiver, payload, retries=config.retries, backoff_seconds=config.retry_backoff_seconds)
    if error is not None:
        log.error("could not send %s to the %s receiver (%s): %s; retrying on the next run",
                  what, receiver.name, _host(receiver.url), error)  # fmt: skip
        tally.failed += 1
        return replace(incident, last_error=error[:2000])
    log.info("sent %s to the %s receiver", what, receiver.name)
    if action == "firing":
        tally.sent += 1
        return replace(incident, last_sent=now, last_error=None)
    tally.resolved += 1
    return replace(incident, resolved_sent=now, last_error=None)


def _host(url: str) -> str:
    """The host of a receiver URL, for logs (the path may hold a token)."""
    from urllib.parse import urlsplit

    return urlsplit(url).netloc
