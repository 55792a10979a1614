"""Service settings: ``CVMON_*`` environment variables over an optional ``cvmon.yaml``.

Nothing here runs at import: :meth:`Settings.load` is called by the CLI or ``create_app``.

==============================  ==========================  ========================================
environment                      cvmon.yaml key               meaning (default)
==============================  ==========================  ========================================
CVMON_CONFIG                     -                            path of cvmon.yaml (./cvmon.yaml if present)
CVMON_DATABASE_URL               database_url                 sqlite:///./cvmon.db; or postgresql://...
CVMON_AUTH_DISABLED              auth_disabled                1 turns API-key auth off (local use only)
CVMON_MAX_BODY_BYTES             max_body_bytes               request body limit after gunzip (32 MiB)
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
-                                slos, slo_alerting           the SLOs (docs/slo.md), validated at load
CVMON_NOTIFIER_PAGE_URL          notifier.page.url            built-in notifier: page receiver webhook
CVMON_NOTIFIER_TICKET_URL        notifier.ticket.url          built-in notifier: ticket receiver webhook
-                                notifier                     the rest of the notifier (docs/slo.md)
CVMON_REPORTS_ENABLED            reports.enabled              write the weekly HTML reports (1)
CVMON_REPORTS_DAY                reports.day                  weekday they are written, UTC (monday)
CVMON_REPORTS_TIME               reports.time                 time of day they are written, UTC (06:00)
CVMON_REPORTS_RETENTION_WEEKS    reports.retention_weeks      weeks a stored report is kept (12)
==============================  ==========================  ========================================

Lists in the environment are comma-separated.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.errors import ConfigError

if TYPE_CHECKING:
    from monitor.server.reports.config import ReportSettings
    from monitor.server.slo.receivers import NotifierConfig
    from monitor.server.slo.spec import SLO

DEFAULT_DATABASE_URL = "sqlite:///./cvmon.db"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    auth_disabled: bool = False
    max_body_bytes: int = 32 * 1024 * 1024
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

    @property
    def sqlalchemy_url(self) -> str:
        """The URL with the psycopg 3 driver filled in for plain ``postgresql://`` URLs."""
        url = self.database_url
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read cvmon.yaml (when present) and the environment; keyword overrides win over both."""
        env = os.environ if environ is None else environ
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
        from monitor.server.reports.config import load_report_settings

        values["reports"] = load_report_settings(values.get("extra", {}).get("reports"), env, source=values.get("config_path"))
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def validate(self) -> None:
        if self.max_body_bytes < 1024:
            raise ConfigError("max_body_bytes must be at least 1024")
        if self.pii_hash and not self.pii_hash_key:
            raise ConfigError("pii.hash needs pii.hash_key (CVMON_PII_HASH_KEY): an unkeyed hash of a camera id is reversible")
        for window in self.windows:
            parse_window(window)
        if self.evaluate_interval_seconds < 1:
            raise ConfigError("evaluate_interval_seconds must be at least 1")
        if not (self.sqlalchemy_url.startswith("sqlite") or self.sqlalchemy_url.startswith("postgresql")):
            raise ConfigError(f"database_url must be sqlite:///PATH or postgresql://...; got {self.database_url!r}")
        self._validate_slos()

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
            if len(slo.cohort) > 1 or any(key not in self.cohort_keys for key, _ in slo.cohort):
                raise ConfigError(
                    f"SLO {slo.name!r} ({slo.sli}) reads the evaluation slice of its cohort, so its cohort "
                    f"must be one key of cohort_keys ({', '.join(self.cohort_keys) or 'none'})",
                    source=self.config_path,
                    line=line,
                )


_WINDOW_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400}


def parse_window(text: str) -> int:
    """``1h`` / ``1d`` / ``7d`` / ``4w`` to seconds; windows are whole hours so hour states tile them."""
    unit = _WINDOW_UNITS.get(text[-1:]) if text else None
    if unit is None or not text[:-1].isdigit() or int(text[:-1]) < 1:
        raise ConfigError(f"window {text!r} must look like 1h, 6h, 1d, 7d or 4w")
    return int(text[:-1]) * unit


#: Fields that are not plain values (parsed by their own readers, never from one variable).
_STRUCTURED = {"extra", "config_path", "config_text", "slos", "notifier", "reports"}
_SIMPLE_KEYS = {f.name for f in fields(Settings)} - _STRUCTURED - {"pii_drop", "pii_hash", "pii_hash_key"}
_NOTIFIER_ENV = ("CVMON_NOTIFIER_PAGE_URL", "CVMON_NOTIFIER_TICKET_URL")


def _default_reports() -> ReportSettings:
    from monitor.server.reports.config import ReportSettings

    return ReportSettings()


def _from_yaml(path: Path) -> dict[str, Any]:
    import yaml

    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(str(exc).splitlines()[0], source=str(path), line=mark.line + 1 if mark else None) from None
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of settings", source=str(path), line=1)
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
