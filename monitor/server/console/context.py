"""What every model page starts from: the model (if this viewer may see it), its controls, and
the connection the page reads through (one read transaction per request)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi import Request
from sqlalchemy import Connection

from monitor.server.api.deps import AppState
from monitor.server.console.auth import Viewer
from monitor.server.console.params import View, parse_view
from monitor.server.console.web import ConsoleError
from monitor.server.services.console_data import ModelView, aligned, model_view
from monitor.server.settings import Settings, parse_window

#: Model names as the API accepts them (monitor/server/api/models.py).
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-")

TABS: tuple[tuple[str, str], ...] = (
    ("", "Quality"), ("classes", "Classes"), ("calibration", "Calibration"), ("drift", "Drift"),
    ("service", "Latency & errors"), ("slos", "SLOs"), ("incidents", "Incidents"), ("reports", "Reports"),
)  # fmt: skip


@dataclass(frozen=True)
class ModelContext:
    model: str
    info: ModelView
    view: View
    settings: Settings
    viewer: Viewer
    tab: str
    #: rows the page's charts share (model_charts.prefetch), for this request only
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def task(self) -> str:
        return self.info.spec.task

    @property
    def primary(self) -> str:
        """The headline quality metric: accuracy, or mAP@[.5:.95] for detection models."""
        return "accuracy" if self.task == "classification" else "map"

    @property
    def primary_name(self) -> str:
        return "accuracy" if self.task == "classification" else "mAP"

    @property
    def versions(self) -> list[str]:
        return [v.version for v in self.info.versions]

    @property
    def cohorts(self) -> list[str]:
        return [f"{k}:{v}" for k, v in self.info.cohorts]

    @property
    def base(self) -> str:
        return f"/models/{quote(self.model, safe='')}"

    @property
    def since(self) -> datetime:
        """The range's start, aligned to the window (the first whole window of the range)."""
        return aligned(self.view.since, parse_window(self.view.window))

    @property
    def until(self) -> datetime:
        return self.view.until

    def url(self, tab: str | None = None, **changes: str | None) -> str:
        path = self.base + (f"/{tab}" if (tab if tab is not None else self.tab) else "")
        query = self.view.query(**changes)
        return f"{path}?{query}" if query else path

    def src(self, chart: str) -> str:
        return f"{self.base}/chart.json?{self.view.query(id=chart)}"


def check_name(model: str) -> None:
    if not model or len(model) > 128 or not set(model) <= _NAME_CHARS:
        raise ConsoleError(404, "no such model")


@contextmanager
def model_page(
    request: Request, state: AppState, viewer: Viewer, model: str, *, tab: str, extra: Sequence[str] = ()
) -> Iterator[tuple[Connection, ModelContext]]:
    """Open the page's read connection; 404 for a model that does not exist or that this key may
    not see (the same answer, so a bound key cannot learn which other models exist)."""
    check_name(model)
    if not viewer.sees(model):
        raise ConsoleError(404, f"no model {model!r} that this key may see")
    with state.engine.connect() as conn:
        info = model_view(conn, model)
        if info is None:
            raise ConsoleError(404, f"no model {model!r} that this key may see")
        view = parse_view(
            request.query_params, windows=state.settings.windows, versions=[v.version for v in info.versions],
            cohorts=[f"{k}:{v}" for k, v in info.cohorts], now=state.clock(), extra=extra,
        )  # fmt: skip
        yield conn, ModelContext(model, info, view, state.settings, viewer, tab)
