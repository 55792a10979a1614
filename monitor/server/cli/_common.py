"""What the commands share: settings and the engine, with user errors as clean messages."""

from __future__ import annotations

from collections.abc import Iterable
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
    ctx = click.get_current_context(silent=True)
    if ctx is not None:  # the pool's connections close when the command ends, not at garbage collection
        ctx.call_on_close(engine.dispose)
    return engine


class StoredText(click.ParamType):
    """Text the database can store (no NUL, no lone surrogate: a command line with bytes that are
    not UTF-8 arrives as surrogates), of at most ``max_chars``; a model name also matches the API's
    path pattern, so what the command line registers can be addressed over HTTP."""

    name = "text"

    def __init__(self, max_chars: int = 256, *, model_name: bool = False) -> None:
        self.max_chars = max_chars
        self.model_name = model_name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        import re

        from monitor.wire import MAX_MODEL_CHARS, MODEL_NAME_PATTERN, text_problem

        text = str(value)
        shown = ascii(text[:60])
        problem = text_problem(text)
        if problem is not None:
            self.fail(f"{shown} {problem}", param, ctx)
        limit = MAX_MODEL_CHARS if self.model_name else self.max_chars
        if len(text) > limit:
            self.fail(f"{shown}... is {len(text)} characters; the limit is {limit}", param, ctx)
        if self.model_name and not re.fullmatch(MODEL_NAME_PATTERN, text):
            self.fail(f"{shown} is not a model name: a letter or digit, then letters, digits, '.', '_', ':' or '-'", param, ctx)
        return text


TEXT = StoredText()
MODEL = StoredText(model_name=True)


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


def check_models(engine: Engine, models: Iterable[str], *, force: bool = False, versions: Iterable[str] = ()) -> None:
    """Stop with the list of what exists when a model (or, with ``versions``, a version of the
    one model) is not registered; with ``force``, say so on stderr and go on."""
    from monitor.errors import UnknownName
    from monitor.server.services.models import require_models, require_versions

    names = list(models)
    try:
        with engine.connect() as conn:
            require_models(conn, names)
            if versions:
                require_versions(conn, names[0], versions)
    except UnknownName as exc:
        if not force:
            raise click.ClickException(str(exc)) from None
        click.echo(f"note: {exc}; going ahead (--force)", err=True)
