"""Alembic, driven from code: the only path by which the schema changes.

The migrations directory is ``migrations/`` in a source checkout and ships inside the wheel as
``monitor/server/store/migrations``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from monitor.errors import SchemaOutOfDate


def migrations_dir() -> Path:
    packaged = Path(__file__).parent / "migrations"
    if (packaged / "env.py").exists():
        return packaged
    source = Path(__file__).resolve().parents[3] / "migrations"
    if (source / "env.py").exists():
        return source
    raise FileNotFoundError("cvmon's migrations directory is missing from this installation")


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def check(engine: Engine) -> None:
    """``alembic check``: raises when the tables in code and the migrated database differ."""
    with engine.connect() as conn:
        command.check(alembic_config(conn))


def verify_schema(engine: Engine) -> None:
    """Refuse to run against a database that is not at the latest migration."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        state = "empty" if current is None else f"at revision {current}"
        raise SchemaOutOfDate(
            f"the database is {state}; this cvmon needs revision {head}. Run: cvmon db upgrade"
        )
