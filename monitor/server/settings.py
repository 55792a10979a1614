"""Service settings: ``CVMON_*`` environment variables over an optional ``cvmon.yaml``.

Nothing here runs at import: :meth:`Settings.load` is called by the CLI or ``create_app``.

==============================  ==========================  ========================================
environment                      cvmon.yaml key               meaning (default)
==============================  ==========================  ========================================
CVMON_CONFIG                     -                            path of cvmon.yaml (./cvmon.yaml if present)
CVMON_DATABASE_URL               database_url                 sqlite:///./cvmon.db; or postgresql://...
CVMON_AUTH_DISABLED              auth_disabled                1 turns API-key auth off (local use only)
CVMON_MAX_BODY_BYTES             max_body_bytes               request body limit after gunzip (32 MiB)
CVMON_MAX_BODY_BYTES_IN_FLIGHT   max_body_bytes_in_flight     body bytes all requests of a process hold (64 MiB)
CVMON_HTTP_HEADER_TIMEOUT_SECONDS http_header_timeout_seconds time to send a request's headers (10)
CVMON_HTTP_BODY_TIMEOUT_SECONDS  http_body_timeout_seconds    longest pause inside a request body (30)
CVMON_HTTP_KEEPALIVE_SECONDS     http_keepalive_seconds       idle keep-alive connections are closed after (5)
CVMON_HTTP_MAX_CONNECTIONS       http_max_connections         connections per worker; past it, 503 (1000)
CVMON_DB_CONNECT_TIMEOUT_SECONDS db_connect_timeout_seconds   opening a PostgreSQL connection (3)
CVMON_DB_STATEMENT_TIMEOUT_SECONDS db_statement_timeout_seconds one statement of an API request (5)
CVMON_DB_LOCK_TIMEOUT_SECONDS    db_lock_timeout_seconds      waiting for a lock in an API request (3)
CVMON_DB_POOL_TIMEOUT_SECONDS    db_pool_timeout_seconds      waiting for a free pooled connection (3)
CVMON_COHORT_KEYS                cohort_keys                  cohort fields metrics are sliced by (camera)
CVMON_PII_DROP                   pii.drop                     cohort fields removed at ingest
CVMON_PII_HASH                   pii.hash                     cohort fields replaced by a keyed hash
CVMON_PII_HASH_KEY               pii.hash_key                 secret for the PII hash (required with hash)
CVMON_PARTITION_DAYS_AHEAD       partition_days_ahead         daily partitions created ahead (PostgreSQL, 7)
CVMON_KEY_CACHE_SECONDS          key_cache_seconds            how long a verified API key is cached (10)
CVMON_SCHEDULER                  scheduler                    run the scheduled jobs in ``serve`` (1)
CVMON_WINDOWS                    windows                      evaluation windows (1h,1d,7d)
CVMON_EVALUATE_INTERVAL_SECONDS  evaluate_interval_seconds    how often the model jobs run (60)
CVMON_MAX_COHORT_VALUES          max_cohort_values            values per cohort key evaluated apart (50)
CVMON_EVAL_STATE_CACHE_MB        eval_state_cache_mb          decoded hour states kept in memory per process (256; 0 off)
CVMON_DRIFT_WINDOWS              drift_windows                windows the drift job scores (1h,1d)
CVMON_DRIFT_DETECTORS            drift_detectors              "detector:feature" pairs scored (docs/drift.md)
CVMON_DRIFT_ALPHA                drift_alpha                  test level / false-alarm rate of each detector (0.01)
CVMON_DRIFT_MIN_SAMPLES          drift_min_samples            values a window slice needs to be scored (100)
CVMON_DRIFT_MAX_SAMPLES          drift_max_samples            uniform sample per window slice (5000)
CVMON_DRIFT_REFERENCE_SIZE       drift_reference_size         default reference: first N predictions (2000)
CVMON_DRIFT_MIN_LABELS           drift_min_labels             labelled reference predictions to calibrate (200)
CVMON_DRIFT_CALIBRATION          drift_calibration            temperature or isotonic (temperature)
CVMON_DRIFT_LOOKBACK             drift_lookback               how far back windows are scored (7d)
CVMON_DRIFT_MAX_WINDOWS_PER_RUN  drift_max_windows_per_run    windows read per drift run, newest first (24)
-                                drift_min_effect             per-model effect-size floors (docs/drift.md; default calibrated)
-                                slos, slo_alerting           the SLOs (docs/slo.md), validated at load
CVMON_NOTIFIER_PAGE_URL          notifier.page.url            built-in notifier: page receiver webhook
CVMON_NOTIFIER_TICKET_URL        notifier.ticket.url          built-in notifier: ticket receiver webhook
-                                notifier                     the rest of the notifier (docs/slo.md)
CVMON_REPORTS_ENABLED            reports.enabled              write the weekly HTML reports (1)
CVMON_REPORTS_DAY                reports.day                  weekday they are written, UTC (monday)
CVMON_REPORTS_TIME               reports.time                 time of day they are written, UTC (06:00)
CVMON_REPORTS_RETENTION_WEEKS    reports.retention_weeks      weeks a stored report is kept (12)
CVMON_CONSOLE_SESSION_HOURS      console_session_hours        how long a console sign-in lasts (12)
CVMON_RETENTION_EMBEDDINGS       retention.embeddings         raw embeddings kept (7d; "forever" keeps all)
CVMON_RETENTION_PREDICTIONS      retention.predictions        predictions with their ground truth (90d)
CVMON_RETENTION_EVAL_STATES      retention.eval_states        hourly evaluation states (98d)
CVMON_RETENTION_METRIC_POINTS    retention.metric_points      metric history (400d)
-                                canary                       canary gates: metrics, tolerances, alpha (docs/canary.md)
-                                automation                   automation webhooks and event thresholds (docs/canary.md)
-                                costs                        device-hour prices for cost per inference (docs/quality.md)
CVMON_SAMPLES_*                  samples                      sample images: models, store, keys, privacy (docs/samples.md)
==============================  ==========================  ========================================

Lists in the environment are comma-separated.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final

from monitor.errors import ConfigError

if TYPE_CHECKING:
    from monitor.metrics import CostPrices
    from monitor.server.report_settings import ReportSettings
    from monitor.server.rollout_config import AutomationConfig, CanaryConfig
    from monitor.server.sample_settings import SampleSettings
    from monitor.server.slo.receivers import NotifierConfig
    from monitor.server.slo.spec import SLO

DEFAULT_DATABASE_URL = "sqlite:///./cvmon.db"

#: The features each drift detector may score: what ``drift_detectors`` entries
#: ("detector:feature") are checked against. The drift job reads the same table (docs/drift.md).
DRIFT_DETECTOR_FEATURES: Final[Mapping[str, frozenset[str]]] = {
    "mmd": frozenset({"embedding"}),
    "classifier": frozenset({"embedding"}),
    "pca_ks": frozenset({"embedding"}),
    "evidently_embedding": frozenset({"embedding"}),
    "ks": frozenset({"confidence", "box_area", "boxes_per_image"}),
    "wasserstein": frozenset({"confidence", "box_area", "boxes_per_image"}),
    "psi": frozenset({"confidence", "box_area", "boxes_per_image", "class_mix"}),
    "jensen_shannon": frozenset({"confidence", "box_area", "boxes_per_image", "class_mix"}),
    "chi_square": frozenset({"class_mix", "boxes_per_image"}),
}
DEFAULT_DRIFT_DETECTORS: Final = (
    "mmd:embedding", "pca_ks:embedding", "ks:confidence", "chi_square:class_mix", "psi:class_mix",
    "wasserstein:boxes_per_image", "ks:box_area",
)  # fmt: skip
#: Largest ``first`` reference: its rows are read and fitted in one piece.
MAX_REFERENCE_SIZE: Final = 20_000
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    auth_disabled: bool = False
    max_body_bytes: int = 32 * 1024 * 1024
    #: Body bytes all requests of one process hold at once; a parsed JSON body costs several
    #: times its bytes, so this bounds the memory of ingest (docs/operations.md).
    max_body_bytes_in_flight: int = 64 * 1024 * 1024
    #: A connection must deliver a request's headers within this time (slow-loris clients).
    http_header_timeout_seconds: float = 10.0
    #: The longest pause between two pieces of a request body.
    http_body_timeout_seconds: float = 30.0
    http_keepalive_seconds: int = 5
    #: Connections (and requests in progress) per worker process; past it uvicorn answers 503.
    http_max_connections: int = 1000
    #: Database timeouts of API requests: a database that stops answering gives 503s within a few
    #: seconds instead of hung requests. Scheduled jobs have no statement timeout.
    db_connect_timeout_seconds: float = 3.0
    db_statement_timeout_seconds: float = 5.0
    db_lock_timeout_seconds: float = 3.0
    db_pool_timeout_seconds: float = 3.0
    cohort_keys: tuple[str, ...] = ("camera",)
    pii_drop: tuple[str, ...] = ()
    pii_hash: tuple[str, ...] = ()
    pii_hash_key: str = field(default="", repr=False)
    partition_days_ahead: int = 7
    key_cache_seconds: float = 10.0
    scheduler: bool = True
    windows: tuple[str, ...] = ("1h", "1d", "7d")
    evaluate_interval_seconds: float = 60.0
    #: Cohort values beyond this many per key (by volume) are not evaluated as slices of their
    #: own, so a typo-ridden or high-cardinality field cannot explode the label sets.
    max_cohort_values: int = 50
    #: Decoded hour states the evaluate job keeps between runs (monitor/server/services/state_cache.py):
    #: every run re-reduces the rolling 7d window, so without it each run decodes a week of states.
    eval_state_cache_mb: int = 256
    #: The drift job (docs/drift.md): completed aligned windows it scores, per version and cohort.
    drift_windows: tuple[str, ...] = ("1h", "1d")
    drift_detectors: tuple[str, ...] = DEFAULT_DRIFT_DETECTORS
    #: Every (window, slice, detector) is a test: 0.01 keeps a day of hourly tests over a few
    #: cameras and detectors from flagging something by chance every day.
    drift_alpha: float = 0.01
    #: Values a window slice (and a reference) needs before it is scored: 12 images do not "drift".
    drift_min_samples: int = 100
    #: Uniform sample per window slice: bounds memory and time however busy the window was.
    drift_max_samples: int = 5000
    #: The default reference of a version: its first N predictions (none before N exist).
    drift_reference_size: int = 2000
    #: Labelled reference predictions the label-free estimate is calibrated on (none before).
    drift_min_labels: int = 200
    drift_calibration: str = "temperature"
    #: Windows that started longer ago are never scored (nor re-scored).
    drift_lookback: str = "7d"
    #: Windows read per run, newest first: a week of backlog is worked off over a few runs.
    drift_max_windows_per_run: int = 24
    #: How long a sign-in to the console (monitor/server/console) lasts before it asks again.
    console_session_hours: float = 12.0
    #: Per-model effect-size floors of the drift job, model -> detector:feature -> floor (None:
    #: calibrated on the reference, the default for every pair not named); "*" for every model.
    drift_min_effect: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict, repr=False)
    #: Where the settings came from, for messages.
    config_path: str | None = None
    #: Sections other packages parse themselves (``slos``, ``jobs``, ``reports``, ...), raw.
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)
    #: The raw text of cvmon.yaml, for parsers that report line numbers (SLO specs).
    config_text: str | None = field(default=None, repr=False)
    #: The validated ``slos:`` of cvmon.yaml (tests pass SLO objects directly).
    slos: tuple[SLO, ...] = field(default=(), repr=False)
    #: The built-in notifier's receivers and policy; None: no notifications.
    notifier: NotifierConfig | None = field(default=None, repr=False)
    #: When the weekly reports are written and how long they are kept (docs/reports.md).
    reports: ReportSettings = field(default_factory=lambda: _default_reports(), repr=False)
    #: How long each kind of data is kept (docs/operations.md); enforced by housekeeping.
    retention: Retention = field(default_factory=lambda: Retention(), repr=False)
    #: Canary gates: which metrics gate, their tolerated regression, α (docs/canary.md).
    canary: CanaryConfig = field(default_factory=lambda: _default_canary(), repr=False)
    #: Automation webhooks and the thresholds of the events they carry (docs/canary.md).
    automation: AutomationConfig = field(default_factory=lambda: _default_automation(), repr=False)
    #: Device-hour prices (``costs:`` in cvmon.yaml; docs/quality.md); None: costs are not computed.
    costs: CostPrices | None = field(default=None, repr=False)
    #: Sample images: opt-in models, object store, privacy, encryption keys (docs/samples.md).
    samples: SampleSettings = field(default_factory=lambda: _default_samples(), repr=False)

    @property
    def sqlalchemy_url(self) -> str:
        """The URL with the psycopg 3 driver filled in for plain ``postgresql://`` URLs."""
        url = self.database_url
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @property
    def query_windows(self) -> tuple[str, ...]:
        """The windows metric points are stored for: the evaluation and the drift windows."""
        return tuple(dict.fromkeys((*self.windows, *self.drift_windows)))

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read cvmon.yaml (when present) and the environment; keyword overrides win over both."""
        env = os.environ if environ is None else environ
        _check_env_text(env)
        values: dict[str, Any] = {}
        path_text = env.get("CVMON_CONFIG")
        path = Path(path_text) if path_text else Path("cvmon.yaml")
        if path.exists():
            values.update(_from_yaml(path))
        elif path_text:
            raise ConfigError(f"CVMON_CONFIG points at {path_text}, which does not exist")
        values.update(_from_env(env))
        if any(env.get(name) for name in _NOTIFIER_ENV):
            from monitor.server.slo.receivers import with_env

            values["notifier"] = with_env(values.get("notifier"), env)
        from monitor.server.report_settings import load_report_settings

        values["reports"] = load_report_settings(values.get("extra", {}).get("reports"), env, source=values.get("config_path"))
        values["retention"] = load_retention(values.get("extra", {}).get("retention"), env, source=values.get("config_path"))
        from monitor.server.rollout_config import load_automation, load_canary

        values["canary"] = load_canary(values.get("extra", {}).get("canary"), source=values.get("config_path"))
        values["automation"] = load_automation(values.get("extra", {}).get("automation"), env, source=values.get("config_path"))
        values["costs"] = load_costs(values.get("extra", {}).get("costs"), source=values.get("config_path"))
        from monitor.server.sample_settings import load_sample_settings

        values["samples"] = load_sample_settings(values.get("extra", {}).get("samples"), env, source=values.get("config_path"))
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def validate(self) -> None:
        if self.max_body_bytes < 1024:
            raise ConfigError("max_body_bytes must be at least 1024")
        if self.max_body_bytes_in_flight < self.max_body_bytes:
            raise ConfigError("max_body_bytes_in_flight must be at least max_body_bytes (one whole body)")
        self._validate_timeouts()
        if self.pii_hash and not self.pii_hash_key:
            raise ConfigError("pii.hash needs pii.hash_key (CVMON_PII_HASH_KEY): an unkeyed hash of a camera id is reversible")
        for window in self.windows:
            parse_window(window)
        if self.evaluate_interval_seconds < 1:
            raise ConfigError("evaluate_interval_seconds must be at least 1")
        if not 0 < self.console_session_hours <= 24 * 30:
            raise ConfigError("console_session_hours must be more than 0 and at most 720 (30 days)")
        if self.eval_state_cache_mb < 0:
            raise ConfigError("eval_state_cache_mb must be 0 (off) or more")
        if not (self.sqlalchemy_url.startswith("sqlite") or self.sqlalchemy_url.startswith("postgresql")):
            raise ConfigError(f"database_url must be sqlite:///PATH or postgresql://...; got {self.database_url!r}")
        self._validate_drift()
        self._validate_slos()
        self.retention.validate(max(parse_window(w) for w in self.windows) if self.windows else 0)

    def _validate_timeouts(self) -> None:
        bounds = {
            "http_header_timeout_seconds": (0.1, 3600), "http_body_timeout_seconds": (0.1, 3600),
            "http_keepalive_seconds": (1, 3600), "http_max_connections": (1, 1_000_000),
            "db_connect_timeout_seconds": (1, 600), "db_statement_timeout_seconds": (0.1, 3600),
            "db_lock_timeout_seconds": (0.1, 3600), "db_pool_timeout_seconds": (0.1, 600),
        }  # fmt: skip
        for name, (low, high) in bounds.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ConfigError(f"{name} must be between {low:g} and {high:g}, not {value}")

    def _validate_drift(self) -> None:
        for window in (*self.drift_windows, self.drift_lookback):
            parse_window(window)
        if not 0.0 < self.drift_alpha <= 0.5:
            raise ConfigError(f"drift_alpha must be in (0, 0.5], got {self.drift_alpha}")
        if self.drift_min_samples < 2 or self.drift_min_labels < 2:
            raise ConfigError("drift_min_samples and drift_min_labels must be at least 2")
        if not self.drift_min_samples <= self.drift_max_samples:
            raise ConfigError("drift_max_samples must be at least drift_min_samples")
        if not self.drift_min_samples <= self.drift_reference_size <= MAX_REFERENCE_SIZE:
            raise ConfigError(f"drift_reference_size must be between drift_min_samples and {MAX_REFERENCE_SIZE}")
        if self.drift_max_windows_per_run < 1:
            raise ConfigError("drift_max_windows_per_run must be at least 1")
        if self.drift_calibration not in ("temperature", "isotonic"):
            raise ConfigError(f"drift_calibration must be temperature or isotonic, not {self.drift_calibration!r}")
        for entry in self.drift_detectors:
            detector, _, feature = entry.partition(":")
            accepted = DRIFT_DETECTOR_FEATURES.get(detector)
            if accepted is None:
                known = ", ".join(DRIFT_DETECTOR_FEATURES)
                raise ConfigError(f"drift_detectors: unknown detector {detector!r} in {entry!r}; known: {known}")
            if feature not in accepted:
                scored = ", ".join(sorted(accepted))
                raise ConfigError(f"drift_detectors: {detector} scores {scored}, not {feature!r} ({entry!r})")
        if len(set(self.drift_detectors)) != len(self.drift_detectors):
            raise ConfigError("drift_detectors lists a detector:feature pair twice")
        pairs = frozenset(f"{d}:{f}" for d, features in DRIFT_DETECTOR_FEATURES.items() for f in features)
        parse_min_effect(self.drift_min_effect, pairs, self.config_path)

    def _validate_slos(self) -> None:
        """Time-slice SLOs count evaluation hours: they need the 1h window and an evaluated slice."""
        for slo in self.slos:
            if not slo.time_slice:
                continue
            line = slo.line if self.config_path else None
            if "1h" not in self.windows:
                raise ConfigError(
                    f"SLO {slo.name!r} ({slo.sli}) counts 1h evaluation windows: add 1h to windows "
                    f"(now {', '.join(self.windows)})",
                    source=self.config_path,
                    line=line,
                )
            if slo.sli == "cost" and self.costs is None:
                raise ConfigError(
                    f"SLO {slo.name!r} (cost) bounds cost per 1 000 inferences: add costs: with device-hour "
                    "prices (docs/quality.md)",
                    source=self.config_path,
                    line=line,
                )
            if len(slo.cohort) > 1 or any(key not in self.cohort_keys for key, _ in slo.cohort):
                raise ConfigError(
                    f"SLO {slo.name!r} ({slo.sli}) reads the evaluation slice of its cohort, so its cohort "
                    f"must be one key of cohort_keys ({', '.join(self.cohort_keys) or 'none'})",
                    source=self.config_path,
                    line=line,
                )


def parse_min_effect(section: Any, pairs: frozenset[str], source: str | None = None) -> dict[str, dict[str, float | None]]:
    """``drift_min_effect`` validated: model -> detector:feature (one of ``pairs``) -> a floor >= 0,
    or None for ``auto`` (calibrated on the reference). docs/drift.md, "Effect-size floors"."""
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ConfigError("drift_min_effect must map models to {detector:feature: floor}", source=source)
    out: dict[str, dict[str, float | None]] = {}
    for model, floors in section.items():
        where = f"drift_min_effect.{model}"
        if not isinstance(model, str) or not isinstance(floors, Mapping):
            raise ConfigError(f"{where} must map detector:feature pairs to floors", source=source)
        out[model] = {}
        for pair, value in floors.items():
            if pair not in pairs:
                raise ConfigError(f"{where}: {pair!r} is not a detector:feature pair the drift job scores", source=source)
            if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
                out[model][pair] = None
            elif isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0 or value == float("inf"):
                raise ConfigError(f"{where}.{pair} must be a number >= 0 or auto, not {value!r}", source=source)
            else:
                out[model][pair] = float(value)
    return out


_WINDOW_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400}
#: The longest window or retention period anything accepts: a century is far beyond any use and
#: far inside what datetime arithmetic and PostgreSQL intervals can hold.
MAX_WINDOW_SECONDS: Final = 36_500 * 86400


def parse_window(text: str) -> int:
    """``1h`` / ``1d`` / ``7d`` / ``4w`` to seconds; windows are whole hours so hour states tile them."""
    unit = _WINDOW_UNITS.get(text[-1:]) if text else None
    digits = text[:-1]
    if unit is None or not (0 < len(digits) <= 9 and digits.isascii() and digits.isdigit()) or int(digits) < 1:
        raise ConfigError(f"window {text[:40]!r} must look like 1h, 6h, 1d, 7d or 4w")
    if int(digits) * unit > MAX_WINDOW_SECONDS:
        raise ConfigError(f"window {text!r} is longer than {MAX_WINDOW_SECONDS // 86400}d")
    return int(digits) * unit


#: Fields that are not plain values (parsed by their own readers, never from one variable).
_STRUCTURED = {
    "extra", "config_path", "config_text", "slos", "notifier", "reports", "retention", "canary", "automation", "costs",
    "drift_min_effect", "samples",
}  # fmt: skip
_SIMPLE_KEYS = {f.name for f in fields(Settings)} - _STRUCTURED - {"pii_drop", "pii_hash", "pii_hash_key"}
_NOTIFIER_ENV = ("CVMON_NOTIFIER_PAGE_URL", "CVMON_NOTIFIER_TICKET_URL")


_DAY = 86400
_FOREVER = {"forever", "off", "none", "never"}


@dataclass(frozen=True)
class Retention:
    """How long data is kept, in seconds (None: forever). ``retention:`` in cvmon.yaml::

        retention:
          embeddings: 7d        # raw embeddings: most of the bytes, needed only for drift
          predictions: 90d      # predictions, their ground truth (partitioned by prediction day),
                                # labels waiting for a prediction, late-label and dirty-hour marks
          eval_states: 98d      # hourly states: predictions + the longest window, so any window
                                # a late label can still change is re-reduced from complete hours
          metric_points: 400d   # metric history, what dashboards and reports read

    Reports are kept by ``reports.retention_weeks``; SLO event counts are folded by the slo job
    (deleting them would make the exported counters go back).
    """

    embeddings: int | None = 7 * _DAY
    predictions: int | None = 90 * _DAY
    eval_states: int | None = 98 * _DAY
    metric_points: int | None = 400 * _DAY

    KEYS: ClassVar[tuple[str, ...]] = ("embeddings", "predictions", "eval_states", "metric_points")

    def cutoff(self, name: str, now: datetime) -> datetime | None:
        """Data of kind ``name`` older than this is deleted (None: kept forever)."""
        seconds = getattr(self, name)
        return None if seconds is None else now - timedelta(seconds=seconds)

    def validate(self, longest_window: int) -> None:
        keep = {k: (float("inf") if getattr(self, k) is None else getattr(self, k)) for k in self.KEYS}
        for key, seconds in keep.items():
            if seconds < _DAY:
                raise ConfigError(f"retention.{key} must be at least 1d")
        if keep["embeddings"] > keep["predictions"]:
            raise ConfigError("retention.embeddings must not be longer than retention.predictions (an embedding belongs to its prediction)")
        if keep["eval_states"] < keep["predictions"] + longest_window:
            raise ConfigError(
                "retention.eval_states must be at least retention.predictions plus the longest window "
                f"({longest_window // 3600}h): late labels re-reduce every window that holds their hour"
            )
        if keep["metric_points"] < keep["eval_states"]:
            raise ConfigError("retention.metric_points must not be shorter than retention.eval_states")


def load_retention(section: Any, environ: Mapping[str, str], *, source: str | None = None) -> Retention:
    """The ``retention:`` mapping of cvmon.yaml (or None) with ``CVMON_RETENTION_*`` on top."""
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise ConfigError("retention must be a mapping, e.g. {embeddings: 7d, predictions: 90d}", source=source)
    unknown = sorted(set(section) - set(Retention.KEYS))
    if unknown:
        raise ConfigError(f"retention: unknown key {unknown[0]!r}; keys: {', '.join(Retention.KEYS)}", source=source)
    values: dict[str, int | None] = {}
    for key in Retention.KEYS:
        name = f"CVMON_RETENTION_{key.upper()}"
        raw, where = (environ[name], name) if environ.get(name, "") != "" else (section.get(key, ...), source)
        if raw is ...:
            continue
        if raw is None or str(raw).strip().lower() in _FOREVER:
            values[key] = None
            continue
        try:
            values[key] = parse_window(str(raw).strip())
        except ConfigError:
            raise ConfigError(f"retention.{key}: {raw!r} must look like 36h, 7d, 90d or 52w (or forever)", source=where) from None
    return Retention(**values)


def _default_canary() -> CanaryConfig:
    from monitor.server.rollout_config import CanaryConfig

    return CanaryConfig()


def _default_samples() -> SampleSettings:
    from monitor.server.sample_settings import SampleSettings

    return SampleSettings()


def _default_automation() -> AutomationConfig:
    from monitor.server.rollout_config import AutomationConfig

    return AutomationConfig()
_COST_KEYS = ("device_hour", "per_1k_requests", "currency", "default_device")


def load_costs(section: Any, *, source: str | None = None) -> CostPrices | None:
    """The ``costs:`` mapping of cvmon.yaml (None: no costs)::

        costs:
          currency: USD                # a label for reports and dashboards
          device_hour:                 # price of one device-hour, by device class (first match wins;
            cpu: 0.10                  #   * and ? match any text, e.g. "NVIDIA A100*")
            "Tesla T4": 0.53
          per_1k_requests: 0.002       # optional: a fixed cost per 1 000 inference calls
          default_device: cpu          # optional: the device of predictions that report none
    """
    if section is None:
        return None
    if not isinstance(section, Mapping):
        raise ConfigError("costs must be a mapping with device_hour (and optionally per_1k_requests, currency, default_device)", source=source)
    unknown = sorted(str(k) for k in set(section) - set(_COST_KEYS))
    if unknown:
        raise ConfigError(f"costs: unknown key {unknown[0]!r}; keys: {', '.join(_COST_KEYS)}", source=source)
    hours = section.get("device_hour")
    if not isinstance(hours, Mapping) or not hours:
        raise ConfigError("costs.device_hour must map device classes to the price of a device-hour, e.g. {cpu: 0.10}", source=source)
    prices: list[tuple[str, float]] = []
    for device, price in hours.items():
        if not isinstance(device, str) or not device.strip():
            raise ConfigError(f"costs.device_hour: {device!r} is not a device class name (quote names like \"Tesla T4\")", source=source)
        prices.append((device.strip(), _price(f"costs.device_hour[{device!r}]", price, source)))
    per_1k = _price("costs.per_1k_requests", section.get("per_1k_requests", 0), source)
    currency = section.get("currency", "USD")
    if not isinstance(currency, str) or not 0 < len(currency.strip()) <= 16:
        raise ConfigError(f"costs.currency must be a short label such as USD, got {currency!r}", source=source)
    default = section.get("default_device")
    if default is not None and (not isinstance(default, str) or not default.strip()):
        raise ConfigError(f"costs.default_device must be a device class name, got {default!r}", source=source)
    from monitor.metrics import CostPrices

    prices_obj = CostPrices(tuple(prices), per_1k, currency.strip(), default.strip() if default else None)
    if default and prices_obj.price_of(default.strip()) is None:
        raise ConfigError(f"costs.default_device {default!r} has no price in costs.device_hour", source=source)
    return prices_obj


def _price(name: str, value: Any, source: str | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a number >= 0 (a price), got {value!r}", source=source)
    return float(value)


def _default_reports() -> ReportSettings:
    from monitor.server.report_settings import ReportSettings

    return ReportSettings()


def _from_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the file is not UTF-8 text (byte {exc.start})", source=str(path)) from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(str(exc).splitlines()[0], source=str(path), line=mark.line + 1 if mark else None) from None
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of settings", source=str(path), line=1)
    _check_yaml_text(data, "", str(path))
    values: dict[str, Any] = {"config_path": str(path), "config_text": text}
    extra: dict[str, Any] = {}
    for key, value in data.items():
        if key == "pii":
            if not isinstance(value, dict):
                raise ConfigError("pii must be a mapping with drop / hash / hash_key", source=str(path))
            values["pii_drop"] = tuple(value.get("drop") or ())
            values["pii_hash"] = tuple(value.get("hash") or ())
            if "hash_key" in value:
                values["pii_hash_key"] = str(value["hash_key"])
        elif key in _SIMPLE_KEYS:
            values[key] = _coerce(key, value, str(path))
        elif key == "drift_min_effect":
            pairs = frozenset(f"{d}:{f}" for d, features in DRIFT_DETECTOR_FEATURES.items() for f in features)
            values[key] = parse_min_effect(value, pairs, str(path))
        else:
            extra[key] = value
    values["extra"] = extra
    if "slos" in data or "slo_alerting" in data or "notifier" in data:
        # parsed again from the text, as nodes, so every error points at its line
        from monitor.server.slo.receivers import load_notifier
        from monitor.server.slo.spec import load_slos

        values["slos"] = load_slos(text, source=str(path))
        values["notifier"] = load_notifier(text, source=str(path))
    return values


def _check_env_text(env: Mapping[str, str]) -> None:
    """Settings end up in the database (cohort keys, SLO and model names) and in messages: a value
    with NUL or a lone surrogate (bytes that are not UTF-8 in the environment) is refused here."""
    from monitor.wire import text_problem

    for name, value in env.items():
        if name.startswith("CVMON_"):
            problem = text_problem(value)
            if problem is not None:
                raise ConfigError(f"{name} {problem}", source=name)


def _check_yaml_text(node: Any, where: str, source: str) -> None:
    """Every key and string value of cvmon.yaml is text the database can store (YAML's ``"\\0"``
    and ``"\\ud800"`` escapes make ones it cannot)."""
    from monitor.wire import text_problem

    if isinstance(node, str):
        problem = text_problem(node)
        if problem is not None:
            raise ConfigError(f"{where or 'a value'} {problem}", source=source)
    elif isinstance(node, Mapping):
        for key, value in node.items():
            here = f"{where}.{key}" if where else str(key)
            _check_yaml_text(key, f"a key of {where or 'the top level'}", source)
            _check_yaml_text(value, here, source)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_yaml_text(value, f"{where}[{i}]", source)


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in fields(Settings):
        name = "CVMON_" + f.name.upper()
        if name in env and f.name not in _STRUCTURED:
            values[f.name] = _coerce(f.name, env[name], name)
    return values


def _coerce(name: str, value: Any, source: str) -> Any:
    default = getattr(Settings, name, None)
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError(f"expected a boolean, got {value!r}")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(i).strip() for i in items if str(i).strip())
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: {exc}", source=source) from None
