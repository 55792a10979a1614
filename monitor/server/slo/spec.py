"""The SLO spec: the ``slos:`` and ``slo_alerting:`` keys of cvmon.yaml, validated.

::

    slo_alerting:                     # optional, applies to every SLO
      min_events: 50                  # events a page's long window must hold (default: derived)
      per_version: true               # decide per model version (default) or on the sum (false)
      alerts: [...]                   # replaces the workbook recipe (same shape as below)
    slos:
      - name: digits-accuracy         # unique; letters, digits, '.', '_', '-'
        model: digits
        sli: accuracy                 # latency | availability | accuracy | precision | recall
                                      # | ece | drift | map | cost | label_quality
        objective: 0.95               # fraction of good events (good time slices), in (0, 1)
        window: 30d                   # 12h, 7d, 30d, 4w, ...
        class: "7"                    # precision / recall only, required there
        threshold: 0.2                # latency (seconds), ece / drift (upper bound), map (lower
                                      # bound), cost (upper bound, currency per 1 000 inferences),
                                      # label_quality (lower bound); required for those only
        detector: pca_ks              # drift only, required: which detector's score is bounded
        metric: krippendorff_alpha    # label_quality only: label_agreement (default) or
                                      # krippendorff_alpha
        min_samples: 30               # time slices only, optional: samples an evaluation hour
                                      # needs to count as an event (default 30)
        cohort: {camera: cam-3}       # optional
        alerting:                     # optional, overrides slo_alerting for this SLO
          min_events: 20
          per_version: false
          alerts:                     # keep_firing_for: hysteresis (default: the short window)
            - {severity: page, long_window: 1h, short_window: 5m, budget_fraction: 0.02}
            - {severity: ticket, long_window: 3d, short_window: 6h, burn_rate: 1, keep_firing_for: 1h}

Every error names the file and line (``cvmon.yaml:12: ...``): the YAML is composed into nodes,
which keep their position, rather than loaded into plain dicts, which do not.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, cast, get_args

from monitor.errors import ConfigError
from monitor.server.slo.burnrate import (
    MIN_RECIPE_SLO_WINDOW_S,
    SEVERITIES,
    BurnAlert,
    Severity,
    alert_problems,
    budget_fraction_for,
    burn_rate_factor,
    default_alerts,
    default_min_events,
    error_budget,
    format_duration,
    parse_duration,
)

SLI = Literal[
    "latency", "availability", "accuracy", "precision", "recall", "ece", "drift", "map", "cost", "label_quality"
]
SLIS: Final[tuple[str, ...]] = get_args(SLI)
#: SLIs whose events are evaluation windows (time slices) rather than predictions or labels.
TIME_SLICE_SLIS: Final = frozenset({"ece", "drift", "map", "cost", "label_quality"})
#: Time-slice SLIs whose threshold is a lower bound (the others' is an upper bound).
LOWER_BOUND_SLIS: Final = frozenset({"map", "label_quality"})
#: SLIs whose default alerts are the recipe's tickets only: a cost overrun is worth a ticket in
#: working hours, not a page at night.
TICKET_SLIS: Final = frozenset({"cost"})
#: The agreement figures a label_quality SLO may bound (stored metric names), the default first.
LABEL_QUALITY_METRICS: Final = ("label_agreement", "krippendorff_alpha")
_NEEDS_CLASS: Final = frozenset({"precision", "recall"})
_NEEDS_THRESHOLD: Final = frozenset({"latency", "ece", "drift", "map", "cost", "label_quality"})

#: SLO names become label values, rule-group names and file names: keep them plain.
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,98}[A-Za-z0-9])?")
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Labels the SLO counters and rules already use; a cohort key may not shadow them.
_RESERVED_LABELS: Final = frozenset({"slo", "model", "version", "window", "severity", "class"})
_MIN_SLO_WINDOW_S: Final = 3600
#: Labelled samples (images for map, current samples for drift) an evaluation hour needs before it
#: counts as an event of a time-slice SLO: an ECE on 5 labels is noise, not a bad hour.
DEFAULT_MIN_SAMPLES: Final = 30

_SLO_KEYS: Final = (
    "name", "model", "sli", "objective", "window", "class", "threshold", "detector", "metric", "min_samples",
    "cohort", "alerting",
)  # fmt: skip
_ALERTING_KEYS: Final = ("min_events", "per_version", "alerts")
_ALERT_KEYS: Final = (
    "severity", "long_window", "short_window", "budget_fraction", "burn_rate", "min_events", "keep_firing_for",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SLO:
    """One validated SLO with its burn-rate alerts resolved (factors, windows, guards)."""

    name: str
    model: str
    sli: SLI
    objective: float
    window_s: int
    alerts: tuple[BurnAlert, ...]
    class_name: str | None = None
    threshold: float | None = None
    detector: str | None = None
    #: Cohort filter as sorted (label, value) pairs; empty for the whole model.
    cohort: tuple[tuple[str, str], ...] = ()
    #: Line of the SLO in its cvmon.yaml, for later messages (None when built in code).
    line: int | None = None
    #: Time slices only: labelled samples an evaluation hour needs to count as an event.
    min_samples: int = DEFAULT_MIN_SAMPLES
    #: Alerts decide per model version (a canary pages on its own counts, its guard on its own
    #: events), in the rendered rules and the notifier alike; False: on the sum over versions.
    per_version: bool = True
    #: label_quality only: the agreement figure bounded (one of :data:`LABEL_QUALITY_METRICS`).
    metric: str | None = None

    @property
    def window(self) -> str:
        """The SLO window spelled as in PromQL, e.g. ``30d``."""
        return format_duration(self.window_s)

    @property
    def error_budget(self) -> float:
        """``1 - objective``: the fraction of events allowed to be bad."""
        return error_budget(self.objective)

    @property
    def time_slice(self) -> bool:
        """Whether events are evaluation windows (ece, drift, map, cost, label_quality) rather
        than predictions."""
        return self.sli in TIME_SLICE_SLIS

    @property
    def lower_bound(self) -> bool:
        """Whether the threshold is the smallest good value (map, label_quality)."""
        return self.sli in LOWER_BOUND_SLIS


def load_slos(text: str, source: str = "cvmon.yaml") -> tuple[SLO, ...]:
    """Read and validate the SLOs of a cvmon.yaml document.

    Reads the top-level ``slos`` list and the optional ``slo_alerting`` defaults and ignores every
    other key (the rest of the file belongs to the settings). Returns ``()`` when there is no
    ``slos`` key. Raises :class:`~monitor.errors.ConfigError` carrying ``source`` and the 1-based
    line of the offending value.
    """
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError(
            f"not valid YAML: {exc.problem or exc}", source=source, line=mark.line + 1 if mark else None
        ) from None
    if root is None:
        return ()
    reader = _Reader(source)
    top = reader.mapping(root, "the top level of the file", allowed=None)
    defaults = _AlertingOptions()
    if "slo_alerting" in top:
        defaults = reader.alerting(top["slo_alerting"][1], "slo_alerting", _AlertingOptions())
    if "slos" not in top:
        return ()
    slos_node = top["slos"][1]
    if not isinstance(slos_node, yaml.SequenceNode):
        raise reader.error(slos_node, "slos must be a list of SLOs")
    slos: list[SLO] = []
    seen: dict[str, int] = {}
    for item in slos_node.value:
        slo = reader.slo(item, defaults)
        if slo.name in seen:
            raise reader.error(
                reader.mapping(item, "an SLO", allowed=_SLO_KEYS)["name"][1],
                f"SLO name {slo.name!r} is already used on line {seen[slo.name]}; names must be unique",
            )
        seen[slo.name] = _line(item)
        slos.append(slo)
    return tuple(slos)


# --------------------------------------------------------------------------------------------
# the reader: YAML nodes in, validated values out, every error at a line


@dataclass(frozen=True, slots=True)
class _AlertEntry:
    """An alert row as written: exactly one of ``budget_fraction`` and ``burn_rate`` is set (the
    other depends on the SLO window, so it is resolved per SLO)."""

    severity: Severity
    long_window_s: int
    short_window_s: int
    budget_fraction: float | None
    burn_rate: float | None
    min_events: int | None
    node: Any
    #: None: the short window.
    keep_firing_for_s: int | None = None


@dataclass(frozen=True, slots=True)
class _AlertingOptions:
    min_events: int | None = None
    per_version: bool = True
    alerts: tuple[_AlertEntry, ...] | None = None
    # Where the options came from, for messages about alerts inherited from slo_alerting.
    where: str = ""


def _line(node: Any) -> int:
    return int(node.start_mark.line) + 1


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, node: Any, message: str) -> ConfigError:
        return ConfigError(message, source=self.source, line=_line(node))

    # -- shapes ---------------------------------------------------------------------------------

    def mapping(self, node: Any, what: str, *, allowed: tuple[str, ...] | None) -> dict[str, tuple[Any, Any]]:
        """Keys to (key node, value node); refuses duplicates and, when ``allowed`` is given,
        unknown keys (with a did-you-mean)."""
        import yaml

        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"{what} must be a mapping")
        out: dict[str, tuple[Any, Any]] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str) or key_node.tag != "tag:yaml.org,2002:str":
                raise self.error(key_node, f"keys of {what} must be plain names")
            if key in out:
                raise self.error(
                    key_node, f"{key!r} appears twice in {what} (first on line {_line(out[key][0])})"
                )
            if allowed is not None and key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; expected one of {', '.join(allowed)}"
                raise self.error(key_node, f"unknown key {key!r} in {what}{hint}")
            out[key] = (key_node, value_node)
        return out

    def scalar(self, node: Any, what: str) -> Any:
        import yaml
        from yaml.constructor import SafeConstructor

        if not isinstance(node, yaml.ScalarNode):
            raise self.error(node, f"{what} must be a single value")
        return SafeConstructor().construct_object(node)

    def text(self, node: Any, what: str, *, numbers_ok: bool = False) -> str:
        """A string; with ``numbers_ok``, a bare number counts as its own spelling (``class: 7``)."""
        value = self.scalar(node, what)
        allowed_tags = {"tag:yaml.org,2002:str"} | ({"tag:yaml.org,2002:int"} if numbers_ok else set())
        if node.tag not in allowed_tags or not isinstance(value, str | int) or isinstance(value, bool):
            raise self.error(node, f"{what} must be a string (quote it), not {node.value!r}")
        text = str(node.value).strip()
        if not text:
            raise self.error(node, f"{what} must not be empty")
        return text

    def number(self, node: Any, what: str) -> float:
        value = self.scalar(node, what)
        if isinstance(value, str):
            # PyYAML reads 1e-3 (no dot) as a string; accept what Python reads as a number.
            try:
                value = float(value)
            except ValueError:
                raise self.error(node, f"{what} must be a number, not {node.value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.error(node, f"{what} must be a finite number, not {node.value!r}")
        return float(value)

    def count(self, node: Any, what: str) -> int:
        value = self.scalar(node, what)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.error(node, f"{what} must be a whole number >= 0, not {node.value!r}")
        return value

    def duration(self, node: Any, what: str) -> int:
        try:
            return parse_duration(self.text(node, what))
        except ValueError as exc:
            raise self.error(node, f"{what}: {exc}") from None

    def hold_duration(self, node: Any, what: str) -> int:
        """A duration that may be zero (``0`` or ``0s``: no hysteresis)."""
        import yaml

        if isinstance(node, yaml.ScalarNode) and str(node.value).strip() in ("0", "0s", "0m"):
            return 0
        return self.duration(node, what)

    def boolean(self, node: Any, what: str) -> bool:
        value = self.scalar(node, what)
        if not isinstance(value, bool):
            raise self.error(node, f"{what} must be true or false, not {node.value!r}")
        return value

    # -- alerting -------------------------------------------------------------------------------

    def alerting(self, node: Any, where: str, inherited: _AlertingOptions) -> _AlertingOptions:
        """An ``alerting`` / ``slo_alerting`` mapping; unset keys keep the ``inherited`` value."""
        import yaml

        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return inherited  # a key with only comments under it
        keys = self.mapping(node, where, allowed=_ALERTING_KEYS)
        min_events = inherited.min_events
        per_version = inherited.per_version
        alerts = inherited.alerts
        new_where = inherited.where
        if "min_events" in keys:
            min_events = self.count(keys["min_events"][1], f"{where}.min_events")
        if "per_version" in keys:
            per_version = self.boolean(keys["per_version"][1], f"{where}.per_version")
        if "alerts" in keys:
            seq = keys["alerts"][1]
            if not isinstance(seq, yaml.SequenceNode) or not seq.value:
                raise self.error(seq, f"{where}.alerts must be a non-empty list of alerts")
            alerts = tuple(self.alert_entry(item, f"{where}.alerts") for item in seq.value)
            seen: dict[tuple[str, int, int], int] = {}
            for entry in alerts:
                key = (entry.severity, entry.long_window_s, entry.short_window_s)
                if key in seen:
                    raise self.error(entry.node, f"the same alert is already defined on line {seen[key]}")
                seen[key] = _line(entry.node)
            new_where = where
        return _AlertingOptions(min_events=min_events, per_version=per_version, alerts=alerts, where=new_where)

    def alert_entry(self, node: Any, where: str) -> _AlertEntry:
        keys = self.mapping(node, f"an entry of {where}", allowed=_ALERT_KEYS)
        for required in ("severity", "long_window", "short_window"):
            if required not in keys:
                raise self.error(node, f"an entry of {where} needs {required}")
        severity = self.text(keys["severity"][1], "severity")
        if severity not in SEVERITIES:
            raise self.error(keys["severity"][1], f"severity must be page or ticket, not {severity!r}")
        long_s = self.duration(keys["long_window"][1], "long_window")
        short_s = self.duration(keys["short_window"][1], "short_window")
        if ("budget_fraction" in keys) == ("burn_rate" in keys):
            raise self.error(node, "give exactly one of budget_fraction or burn_rate for each alert")
        fraction = factor = None
        if "budget_fraction" in keys:
            fraction = self.number(keys["budget_fraction"][1], "budget_fraction")
            if not 0.0 < fraction <= 1.0:
                raise self.error(
                    keys["budget_fraction"][1], f"budget_fraction must be in (0, 1], not {fraction:g}"
                )
        else:
            factor = self.number(keys["burn_rate"][1], "burn_rate")
            if factor <= 0:
                raise self.error(keys["burn_rate"][1], f"burn_rate must be > 0, not {factor:g}")
        min_events = self.count(keys["min_events"][1], "min_events") if "min_events" in keys else None
        keep = self.hold_duration(keys["keep_firing_for"][1], "keep_firing_for") if "keep_firing_for" in keys else None
        return _AlertEntry(cast(Severity, severity), long_s, short_s, fraction, factor, min_events, node, keep)

    def resolve_alerts(
        self,
        keys: dict[str, tuple[Any, Any]],
        name: str,
        sli: str,
        objective: float,
        window_s: int,
        options: _AlertingOptions,
    ) -> tuple[BurnAlert, ...]:
        """The SLO's alerts: ``options.alerts`` applied to it, else the scaled workbook recipe
        (its tickets only for :data:`TICKET_SLIS`); each checked with :func:`alert_problems`
        (errors at the entry, or at the SLO's objective or window line for the built-in recipe)."""
        if options.alerts is None:
            if window_s < MIN_RECIPE_SLO_WINDOW_S:
                raise self.error(
                    keys["window"][1],
                    f"SLO {name!r}: the built-in alerts serve SLO windows of "
                    f"{format_duration(MIN_RECIPE_SLO_WINDOW_S)} or more, not {format_duration(window_s)}: "
                    "set alerting.alerts for this SLO (see docs/slo.md, \"Short SLO windows\")",
                )
            alerts = default_alerts(objective, window_s)
            if sli in TICKET_SLIS:
                alerts = tuple(a for a in alerts if a.severity == "ticket")
            if options.min_events is not None:
                alerts = tuple(_with_guard(a, options.min_events) for a in alerts)
            for alert in alerts:
                problems = alert_problems(alert, objective=objective, slo_window_s=window_s)
                if problems:
                    unreachable = alert.burn_rate * error_budget(objective) > 1.0 + 1e-9
                    anchor = keys["objective" if unreachable else "window"][1]
                    raise self.error(
                        anchor,
                        f"SLO {name!r}: the default {alert.severity} alert over {alert.long_window} and "
                        f"{alert.short_window} ({alert.burn_rate:g}x) does not fit: {problems[0]}. "
                        "Set alerting.alerts for this SLO (see docs/slo.md).",
                    )
            return alerts
        resolved = []
        for entry in options.alerts:
            if entry.burn_rate is not None:
                factor = entry.burn_rate
                fraction = budget_fraction_for(factor, window_s, entry.long_window_s)
            else:
                assert entry.budget_fraction is not None
                fraction = entry.budget_fraction
                factor = burn_rate_factor(fraction, window_s, entry.long_window_s)
            guard = entry.min_events
            if guard is None:
                guard = (
                    options.min_events
                    if options.min_events is not None and entry.severity == "page"
                    else (default_min_events(entry.severity, factor, objective))
                )
            keep = entry.short_window_s if entry.keep_firing_for_s is None else entry.keep_firing_for_s
            alert = BurnAlert(
                entry.severity, entry.long_window_s, entry.short_window_s, factor, fraction, guard, keep
            )
            problems = alert_problems(alert, objective=objective, slo_window_s=window_s)
            if problems:
                inherited = " (alert inherited from slo_alerting)" if options.where == "slo_alerting" else ""
                raise self.error(entry.node, f"SLO {name!r}{inherited}: {problems[0]}")
            resolved.append(alert)
        return tuple(resolved)

    # -- one SLO --------------------------------------------------------------------------------

    def slo(self, node: Any, defaults: _AlertingOptions) -> SLO:
        keys = self.mapping(node, "an SLO", allowed=_SLO_KEYS)
        for required in ("name", "model", "sli", "objective", "window"):
            if required not in keys:
                raise self.error(node, f"an SLO needs {required} (it has {', '.join(keys) or 'nothing'})")
        name_node = keys["name"][1]
        name = self.text(name_node, "name", numbers_ok=True)
        if not _NAME.fullmatch(name):
            raise self.error(
                name_node,
                f"SLO name {name!r} must be 1-100 letters, digits, '.', '_' or '-', starting and ending "
                "with a letter or digit (it becomes a Prometheus label value and a rule-group name)",
            )
        model = self.text(keys["model"][1], "model", numbers_ok=True)
        if not _NAME.fullmatch(model):
            raise self.error(keys["model"][1], f"model {model!r} is not a valid model name")
        sli_node = keys["sli"][1]
        sli = self.text(sli_node, "sli")
        if sli not in SLIS:
            raise self.error(sli_node, f"sli must be one of {' | '.join(SLIS)}, not {sli!r}")
        objective_node = keys["objective"][1]
        objective = self.number(objective_node, "objective")
        if not 0.0 < objective < 1.0:
            raise self.error(
                objective_node, f"objective must be a fraction strictly between 0 and 1, not {objective:g}"
            )
        window_s = self.duration(keys["window"][1], "window")
        if window_s < _MIN_SLO_WINDOW_S:
            raise self.error(
                keys["window"][1], f"window must be at least 1h, not {format_duration(window_s)}"
            )

        class_name = None
        if sli in _NEEDS_CLASS:
            if "class" not in keys:
                raise self.error(node, f"a {sli} SLO needs class: the class it measures")
            class_name = self.text(keys["class"][1], "class", numbers_ok=True)
        elif "class" in keys:
            raise self.error(keys["class"][0], f"class applies only to precision and recall, not {sli}")

        threshold = None
        if sli in _NEEDS_THRESHOLD:
            if "threshold" not in keys:
                raise self.error(node, f"a {sli} SLO needs threshold: {_THRESHOLD_MEANING[sli]}")
            threshold = self._threshold(keys["threshold"][1], sli)
        elif "threshold" in keys:
            raise self.error(
                keys["threshold"][0],
                f"threshold applies only to {', '.join(s for s in SLIS if s in _NEEDS_THRESHOLD)}, not {sli}",
            )

        detector = None
        if "detector" in keys:
            if sli != "drift":
                raise self.error(keys["detector"][0], f"detector applies only to drift, not {sli}")
            detector = self.text(keys["detector"][1], "detector")
        elif sli == "drift":
            # Scores of different detectors live on different scales (an MMD² of 0.01 can be a
            # large shift, a chi-square statistic of 40 a small one): one bound fits one detector.
            raise self.error(node, "a drift SLO needs detector: the detector whose score the threshold bounds "
                                   "(e.g. ks or pca_ks, whose scores lie in [0, 1])")

        metric = None
        if "metric" in keys:
            if sli != "label_quality":
                raise self.error(keys["metric"][0], f"metric applies only to label_quality, not {sli}")
            metric = self.text(keys["metric"][1], "metric")
            if metric not in LABEL_QUALITY_METRICS:
                raise self.error(
                    keys["metric"][1], f"metric must be one of {' | '.join(LABEL_QUALITY_METRICS)}, not {metric!r}"
                )
        elif sli == "label_quality":
            metric = LABEL_QUALITY_METRICS[0]

        min_samples = DEFAULT_MIN_SAMPLES
        if "min_samples" in keys:
            if sli not in TIME_SLICE_SLIS:
                raise self.error(
                    keys["min_samples"][0],
                    f"min_samples applies only to {', '.join(s for s in SLIS if s in TIME_SLICE_SLIS)}, not {sli}",
                )
            min_samples = self.count(keys["min_samples"][1], "min_samples")
            if min_samples < 1:
                raise self.error(keys["min_samples"][1], "min_samples must be at least 1")

        cohort: tuple[tuple[str, str], ...] = ()
        if "cohort" in keys:
            cohort = self._cohort(keys["cohort"][1])

        options = defaults
        if "alerting" in keys:
            options = self.alerting(keys["alerting"][1], "alerting", defaults)
        alerts = self.resolve_alerts(keys, name, sli, objective, window_s, options)
        return SLO(
            name=name,
            model=model,
            sli=sli,  # type: ignore[arg-type]
            objective=objective,
            window_s=window_s,
            alerts=alerts,
            class_name=class_name,
            threshold=threshold,
            detector=detector,
            cohort=cohort,
            line=_line(node),
            min_samples=min_samples,
            per_version=options.per_version,
            metric=metric,
        )

    def _threshold(self, node: Any, sli: str) -> float:
        value = self.number(node, "threshold")
        if value <= 0:
            raise self.error(node, f"threshold must be > 0, not {value:g}")
        if sli in ("ece", "map", "label_quality") and value >= 1:
            raise self.error(node, f"threshold for {sli} is a fraction in (0, 1), not {value:g}")
        return value

    def _cohort(self, node: Any) -> tuple[tuple[str, str], ...]:
        keys = self.mapping(node, "cohort", allowed=None)
        if not keys:
            raise self.error(node, "cohort must name at least one label, e.g. {camera: cam-3}")
        pairs = []
        for key, (key_node, value_node) in keys.items():
            if not _LABEL_NAME.fullmatch(key) or key.startswith("__") or key in _RESERVED_LABELS:
                raise self.error(
                    key_node, f"cohort key {key!r} must be a label name other than {sorted(_RESERVED_LABELS)}"
                )
            pairs.append((key, self.text(value_node, f"cohort.{key}", numbers_ok=True)))
        return tuple(sorted(pairs))


_THRESHOLD_MEANING: Final[Mapping[str, str]] = {
    "latency": "the latency bound in seconds (a prediction is good when its latency <= threshold)",
    "ece": "the largest acceptable expected calibration error of an evaluation window",
    "drift": "the largest acceptable drift score of an evaluation window",
    "map": "the smallest acceptable mAP of an evaluation window",
    "cost": "the largest acceptable cost per 1 000 inferences of an evaluation window (currency of costs:)",
    "label_quality": "the smallest acceptable label agreement (or Krippendorff's alpha) of an evaluation window",
}


def _with_guard(alert: BurnAlert, min_events: int) -> BurnAlert:
    """The alert with ``min_events`` as its guard when it pages (tickets keep theirs)."""
    if alert.severity != "page":
        return alert
    return replace(alert, min_events=min_events)
