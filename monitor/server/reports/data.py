"""The report data: frozen dataclasses, everything the weekly report shows, prepared.

:func:`monitor.server.reports.build.build_report_data` fills them from the database (the only
reads); :mod:`.verdicts`, :mod:`.charts` and the templates only look at them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from monitor.errors import CvmonError
from monitor.server.slo.burnrate import WindowCounts, burn_rate

Task = Literal["classification", "detection"]
Point = tuple[datetime, float | None]


class ReportError(CvmonError, LookupError):
    """A report cannot be built (unknown model, a week that is not an ISO week start)."""


# --------------------------------------------------------------------------------------------
# the data


@dataclass(frozen=True, slots=True)
class WeekValue:
    """A number this week next to last week, with the samples behind each (0: none)."""

    current: float | None
    previous: float | None = None
    n: int = 0
    previous_n: int = 0

    @property
    def delta(self) -> float | None:
        """This week minus last week; None when either is undefined."""
        if self.current is None or self.previous is None:
            return None
        return self.current - self.previous


EMPTY: Final = WeekValue(None)


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a chart: (window start, value or None for a gap)."""

    label: str
    points: tuple[Point, ...]


@dataclass(frozen=True, slots=True)
class SloStatus:
    """One SLO of the model: its error budget and what the week did to it."""

    name: str
    sli: str
    objective: float
    window: str  # e.g. "30d"
    #: what the SLO is about beyond the model, e.g. "class 7, camera=cam-3"; "" for the whole model
    scope: str
    threshold: float | None
    #: share of the error budget left over the SLO window ending at the report's ``slo_as_of``
    budget_remaining: float
    window_events: float
    window_bad: float
    #: events and bad events counted during the week itself
    week_events: float
    week_bad: float
    #: severities of notifier incidents firing at ``slo_as_of`` ("page", "ticket")
    firing: tuple[str, ...]

    @property
    def week_burn_rate(self) -> float | None:
        """Bad share of the week's events over the error budget (1: spent exactly as it accrues)."""
        return burn_rate(WindowCounts(self.week_events, self.week_bad), self.objective)


@dataclass(frozen=True, slots=True)
class VersionSummary:
    """A model version's totals for the week (whole-version slice)."""

    version: str
    first_seen: datetime | None
    predictions: WeekValue
    label_coverage: WeekValue
    primary: WeekValue  # accuracy, or mAP@[.5:.95] for detection models
    calibration: WeekValue  # ECE, or D-ECE for detection models
    estimated: WeekValue  # label-free accuracy estimate
    latency_p50_ms: WeekValue
    latency_p95_ms: WeekValue
    latency_p99_ms: WeekValue
    error_rate: WeekValue
    label_latency_p50_s: WeekValue
    #: cost per 1 000 inferences (``n``: the priced predictions); EMPTY without prices
    cost_per_1k: WeekValue = EMPTY


@dataclass(frozen=True, slots=True)
class DisputedClass:
    """One class in the annotators' multiply-annotated sample of the week."""

    name: str
    #: its labels on items with two or more annotators
    labels: int
    #: the share of those labels whose partners in the item said the same (None: no partner)
    specific_agreement: float | None
    #: items with a label of the class whose annotators did not all agree
    disputed: int


@dataclass(frozen=True, slots=True)
class LabelQuality:
    """How far annotators agree on the week's multiply-annotated predictions (every version)."""

    #: predictions with two or more annotators (``n`` of the agreement figures), and with one
    items: WeekValue
    single: int
    #: percent agreement and Krippendorff's alpha (nominal), this week and last
    agreement: WeekValue
    alpha: WeekValue
    disputed_items: int
    #: the classes annotators agree on least, lowest specific agreement first
    most_disputed: tuple[DisputedClass, ...]


@dataclass(frozen=True, slots=True)
class ClassRow:
    """One class over the week. ``precision.n`` is how many labelled samples were predicted as
    the class, ``recall.n`` how many labelled samples are of the class (its support)."""

    name: str
    precision: WeekValue
    recall: WeekValue
    ap: WeekValue | None = None  # detection models


@dataclass(frozen=True, slots=True)
class Confusion:
    """The week's confusion matrix over every version: rows true class, columns predicted."""

    classes: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]

    @property
    def total(self) -> int:
        return sum(sum(row) for row in self.counts)


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    lower: float
    upper: float
    count: int
    confidence: float | None
    accuracy: float | None


@dataclass(frozen=True, slots=True)
class ReliabilityCurve:
    """The reliability diagram of one version over the week."""

    version: str
    bins: tuple[ReliabilityBin, ...]
    ece: float | None
    n: int


#: The false-alarm rate of a detector when the settings do not say (cvmon's default drift_alpha).
DEFAULT_ALPHA: Final = 0.01
#: A detector's flags over a week mean drift when that many flags would come by chance less often
#: than this. Hourly windows at alpha 0.01 give about 1.7 false flags a week: one flagged hour
#: is noise, six are not (P < 0.01); with daily windows, two flagged days are.
PERSISTENCE_LEVEL: Final = 0.01


def chance_of_flags(flagged: int, scored: int, alpha: float) -> float:
    """P(at least ``flagged`` of ``scored`` windows flagged) when each is flagged by chance alone
    with probability ``alpha``: the binomial upper tail."""
    if flagged <= 0:
        return 1.0
    if flagged > scored:
        return 0.0
    return min(
        1.0, sum(math.comb(scored, k) * alpha**k * (1 - alpha) ** (scored - k) for k in range(flagged, scored + 1))
    )


@dataclass(frozen=True, slots=True)
class DriftHit:
    """A detector that flagged a slice during the week."""

    detector: str
    feature: str
    first: datetime  # start of the first flagged window
    windows: int  # flagged windows
    scored: int  # windows scored this week
    alpha: float = DEFAULT_ALPHA

    @property
    def drifted(self) -> bool:
        """Flagged more often than chance explains (see :data:`PERSISTENCE_LEVEL`)."""
        return chance_of_flags(self.windows, self.scored, self.alpha) < PERSISTENCE_LEVEL

    @property
    def label(self) -> str:
        return f"{self.detector}:{self.feature}" if self.feature else self.detector


@dataclass(frozen=True, slots=True)
class CohortRow:
    """One cohort slice (e.g. camera=cam-3) of one version over the week."""

    key: str
    value: str
    version: str
    predictions: int
    label_coverage: float | None
    primary: WeekValue
    estimated: float | None
    #: the primary metric per trend window over both weeks (sparkline)
    trend: tuple[float | None, ...]
    #: every detector that flagged the slice at least once this week
    drift: tuple[DriftHit, ...]

    @property
    def drifted(self) -> tuple[DriftHit, ...]:
        """The detectors whose flags are more than chance."""
        return tuple(h for h in self.drift if h.drifted)


@dataclass(frozen=True, slots=True)
class DriftTrend:
    """One detector and feature on one version's whole traffic over the week."""

    detector: str
    feature: str
    version: str
    points: tuple[Point, ...]
    threshold: float | None
    #: starts of the windows the detector flagged
    flagged: tuple[datetime, ...]
    last_p_value: float | None
    #: the level p-values are flagged at (detectors with a p-value), when the settings say
    alpha: float | None = None

    @property
    def label(self) -> str:
        return f"{self.detector}:{self.feature}" if self.feature else self.detector

    @property
    def drifted(self) -> bool:
        """Flagged more often than chance explains (see :data:`PERSISTENCE_LEVEL`)."""
        scored = sum(1 for _, v in self.points if v is not None)
        return chance_of_flags(len(self.flagged), scored, self.alpha or DEFAULT_ALPHA) < PERSISTENCE_LEVEL


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything the weekly report shows, prepared; the templates only format it."""

    model: str
    task: Task
    week: str
    period_start: datetime
    period_end: datetime
    generated_at: datetime
    #: the window of the trend charts ("1d", or "1h" when 1d is not evaluated)
    trend_window: str
    n_classes: int
    #: accuracy over every version (classification) or mAP of the busiest version (detection)
    overall: WeekValue
    overall_label_coverage: WeekValue
    versions: tuple[VersionSummary, ...]
    slos: tuple[SloStatus, ...]
    slo_as_of: datetime
    quality_trend: tuple[Series, ...]
    coverage_trend: tuple[Series, ...]
    calibration_trend: tuple[Series, ...]
    reliability: tuple[ReliabilityCurve, ...]
    classes: tuple[ClassRow, ...]
    confusion: Confusion | None
    cohorts: tuple[CohortRow, ...]
    drift: tuple[DriftTrend, ...]
    drift_window: str | None
    #: label-free estimate and realised accuracy of the busiest version
    estimate_trend: tuple[Series, ...]
    latency_trend: tuple[Series, ...]
    error_trend: tuple[Series, ...]
    #: the currency of cost per 1 000 inferences (``costs:`` of cvmon.yaml); None: no prices
    currency: str | None = None
    #: annotator agreement of the week (classification models with multiply-annotated predictions)
    labels: LabelQuality | None = None

    @property
    def primary_metric(self) -> str:
        return "accuracy" if self.task == "classification" else "mAP"

    @property
    def calibration_metric(self) -> str:
        return "ECE" if self.task == "classification" else "D-ECE"
