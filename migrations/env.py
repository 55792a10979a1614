"""Alembic environment for cvmon. Run through ``cvmon db upgrade`` (monitor.server.store.migrate),
which passes an open connection in ``config.attributes["connection"]``."""

from __future__ import annotations

import re

from alembic import context

from monitor.server.store.tables import PARTITIONED, metadata

#: Daily partitions (predictions_p20261125, ...) are created at run time, not by migrations.
_PARTITION = re.compile(rf"^({'|'.join(PARTITIONED)})_p\d{{8}}$")


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    return not (type_ == "table" and name is not None and _PARTITION.match(name))


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `cvmon db upgrade`, which supplies the connection")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_name=include_name,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; run `cvmon db upgrade`")
run_migrations_online()
