"""The one exception tree of cvmon.

::

    CvmonError
    ├── WireError               a record or array that does not follow the wire format
    │   └── LimitExceeded       a body, array or field over its configured limit
    ├── ConfigError             bad settings or a bad cvmon.yaml (carries the line when known)
    ├── RegistryConflict        a model update that would reinterpret stored data
    ├── UnknownName             a model or version that does not exist (the message lists those that do)
    ├── SchemaOutOfDate         the database is not at the latest migration
    ├── MissingExtra            an optional extra is needed for this feature
    ├── detectors.NotFittedError   a drift detector scored before ``fit``
    └── detectors.SummaryError     a stored reference summary that cannot be read

Errors carry the context a person needs to act: the field, the index, the command that fixes it.
"""

from __future__ import annotations


class CvmonError(Exception):
    """Base class of every error cvmon raises on purpose."""


class WireError(CvmonError, ValueError):
    """A record does not follow the wire format; the message says which field and why."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class LimitExceeded(WireError):
    """A body, array or string is over its limit."""


class ConfigError(CvmonError, ValueError):
    """Invalid configuration. ``line`` is the 1-based line in cvmon.yaml when known."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None) -> None:
        where = ""
        if source is not None:
            where = f"{source}:{line}: " if line is not None else f"{source}: "
        super().__init__(where + message)
        self.source = source
        self.line = line


class RegistryConflict(CvmonError, ValueError):
    """A model registration that would reinterpret stored data (e.g. reordering classes)."""


class UnknownName(CvmonError, LookupError):
    """A model or model version that is not registered; the message says which ones are."""


class SchemaOutOfDate(CvmonError, RuntimeError):
    """The database schema is behind the code; run ``cvmon db upgrade``."""


class MissingExtra(CvmonError, ImportError):
    """An optional dependency group is not installed."""

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(f"{feature} needs the '{extra}' extra: pip install 'cvmon[{extra}]'")
        self.extra = extra


def require(module: str, *, feature: str, extra: str):  # type: ignore[no-untyped-def]
    """Import ``module`` or raise :class:`MissingExtra` naming the pip command that fixes it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MissingExtra(feature, extra) from exc
