"""The root ``cvmon`` group; every command module registers here."""

from __future__ import annotations

import importlib

import click

from monitor import __version__

#: Command modules, each exposing ``commands``: a list of click commands or groups.
_COMMAND_MODULES: tuple[str, ...] = (
    "monitor.server.cli.serve",
    "monitor.server.cli.db",
    "monitor.server.cli.keys",
    "monitor.server.cli.models",
    "monitor.server.cli.jobs",
    "monitor.server.cli.eval",
    "monitor.server.cli.slo",
    "monitor.server.cli.silence",
    "monitor.server.cli.grafana",
    "monitor.server.cli.demo",
    "monitor.server.cli.report",
    "monitor.server.cli.canary",
    "monitor.server.cli.consume",
    "monitor.server.cli.samples",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cvmon")
def cli() -> None:
    """cvmon watches computer-vision models in production: quality metrics from delayed ground
    truth, drift, SLOs with error budgets and burn-rate alerts, and weekly reports.

    Configuration comes from CVMON_* environment variables and an optional cvmon.yaml
    (CVMON_CONFIG, default ./cvmon.yaml). The database is CVMON_DATABASE_URL
    (default sqlite:///./cvmon.db; PostgreSQL: postgresql+psycopg://user@host/db).
    """


for _name in _COMMAND_MODULES:
    for _command in importlib.import_module(_name).commands:
        cli.add_command(_command)
