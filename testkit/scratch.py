"""A scratch PostgreSQL database per benchmark run, created next to ``--database-url`` and dropped
after it, so a benchmark never touches data of its own or anyone else's."""

from __future__ import annotations

import os
import secrets

import psycopg
from sqlalchemy.engine import URL, make_url


def create_scratch_database(admin: str, prefix: str) -> URL:
    """Create ``<prefix>_<pid>_<random>`` on the server of ``admin`` (a libpq URL); its SQLAlchemy URL."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(admin.replace("postgresql://", "postgresql+psycopg://", 1)).set(database=name)


def drop_scratch_database(admin: str, url: URL) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


def sqlalchemy_url(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def libpq_dsn(url: URL) -> str:
    """The same database for psycopg itself (raw COPY, sizes)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
