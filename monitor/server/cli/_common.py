"""What the commands share: settings and the engine, with user errors as clean messages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from monitor.errors import CvmonError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from monitor.server.settings import Settings


def load_settings(**overrides: Any) -> Settings:
    from monitor.server.settings import Settings

    try:
        return Settings.load(**{k: v for k, v in overrides.items() if v is not None})
    except CvmonError as exc:
        raise click.ClickException(str(exc)) from None


def open_engine(settings: Settings, *, verify: bool = True) -> Engine:
    """The engine, refusing (with the fix) a schema that is not current when ``verify``."""
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    from monitor.server.store.engine import make_engine
    from monitor.server.store.migrate import verify_schema

    engine = make_engine(settings.sqlalchemy_url)
    if verify:
        try:
            verify_schema(engine)
        except CvmonError as exc:
            raise click.ClickException(str(exc)) from None
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
            where = make_url(settings.sqlalchemy_url).render_as_string(hide_password=True)
            reason = str(exc.orig if exc.orig is not None else exc).strip().splitlines()[0]
            raise click.ClickException(f"cannot reach the database at {where}: {reason}") from None
    return engine


def now() -> datetime:
    return datetime.now(UTC)


def csv_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def cvmon_command() -> str:
    """How to run ``cvmon`` from the user's shell: ``cvmon`` when that is this program on PATH,
    else the path it was started by (``.venv/bin/cvmon`` after ``make run``)."""
    import os
    import shutil
    import sys
    from pathlib import Path

    started = Path(sys.argv[0])
    if started.name != "cvmon":
        return f"{sys.executable} -m monitor.server.cli"
    found = shutil.which("cvmon")
    if found and Path(found).resolve() == started.resolve():
        return "cvmon"
    relative = os.path.relpath(started)
    return relative if not relative.startswith("..") else str(started.resolve())
