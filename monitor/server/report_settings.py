"""The ``reports:`` settings: when the weekly report is generated and how long it is kept.

::

    reports:
      enabled: true          # CVMON_REPORTS_ENABLED
      day: monday            # CVMON_REPORTS_DAY        weekday the scheduler writes last week's report
      time: "06:00"          # CVMON_REPORTS_TIME       HH:MM, UTC
      retention_weeks: 12    # CVMON_REPORTS_RETENTION_WEEKS  reports older than this are deleted

Pure: no I/O, no import of the rendering stack (``Settings.load`` calls this).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from monitor.errors import ConfigError

WEEKDAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_KEYS: Final = ("enabled", "day", "time", "retention_weeks")
_TRUE: Final = {"1", "true", "yes", "on"}
_FALSE: Final = {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class ReportSettings:
    """When the scheduler writes the weekly reports (UTC) and how many weeks they are kept."""

    enabled: bool = True
    day: str = "monday"
    hour: int = 6
    minute: int = 0
    retention_weeks: int = 12

    @property
    def time(self) -> str:
        """The time of day as written in cvmon.yaml, ``HH:MM``."""
        return f"{self.hour:02d}:{self.minute:02d}"

    @property
    def cron_day(self) -> str:
        """APScheduler's spelling of the weekday (``mon``)."""
        return self.day[:3]


def load_report_settings(section: Any, environ: Mapping[str, str], *, source: str | None = None) -> ReportSettings:
    """The ``reports:`` mapping of cvmon.yaml (or None) with ``CVMON_REPORTS_*`` variables on top."""
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise ConfigError("reports must be a mapping with enabled / day / time / retention_weeks", source=source)
    unknown = sorted(set(section) - set(_KEYS))
    if unknown:
        raise ConfigError(f"reports: unknown key {unknown[0]!r}; keys: {', '.join(_KEYS)}", source=source)
    values: dict[str, tuple[Any, str | None]] = {key: (section[key], source) for key in section}
    for key in _KEYS:
        name = f"CVMON_REPORTS_{key.upper()}"
        if environ.get(name, "") != "":
            values[key] = (environ[name], name)
    defaults = ReportSettings()
    enabled, day = defaults.enabled, defaults.day
    hour, minute, retention = defaults.hour, defaults.minute, defaults.retention_weeks
    if "enabled" in values:
        enabled = _boolean(*values["enabled"])
    if "day" in values:
        day = _weekday(*values["day"])
    if "time" in values:
        hour, minute = _time_of_day(*values["time"])
    if "retention_weeks" in values:
        retention = _weeks(*values["retention_weeks"])
    return ReportSettings(enabled=enabled, day=day, hour=hour, minute=minute, retention_weeks=retention)


def _boolean(value: Any, source: str | None) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"reports.enabled must be true or false, not {value!r}", source=source)


def _weekday(value: Any, source: str | None) -> str:
    text = str(value).strip().lower()
    for day in WEEKDAYS:
        if text in (day, day[:3]):
            return day
    raise ConfigError(f"reports.day must be a weekday (monday ... sunday), not {value!r}", source=source)


def _time_of_day(value: Any, source: str | None) -> tuple[int, int]:
    # YAML 1.1 reads an unquoted 06:00 as the sexagesimal integer 360: accept it as minutes.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return divmod(value, 60)
    text = str(value).strip()
    hours, sep, minutes = text.partition(":")
    if sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2:
        h, m = int(hours), int(minutes)
        if 0 <= h < 24 and 0 <= m < 60:
            return h, m
    raise ConfigError(f'reports.time must be HH:MM in UTC, e.g. "06:00", not {value!r}', source=source)


def _weeks(value: Any, source: str | None) -> int:
    try:
        weeks = int(str(value).strip())
    except ValueError:
        weeks = 0
    if weeks < 1:
        raise ConfigError(f"reports.retention_weeks must be a whole number of weeks >= 1, not {value!r}", source=source)
    return weeks
