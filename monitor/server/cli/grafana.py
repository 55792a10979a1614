"""``cvmon grafana``: the Grafana dashboards and provisioning files."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("grafana")
def grafana_group() -> None:
    """Grafana dashboards for cvmon's metrics (executive, on-call, debug)."""


@grafana_group.command("render")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default="grafana",
    show_default=True,
    help="Directory to write dashboards/ and provisioning/ into.",
)
@click.option(
    "--cohort-key",
    "cohort_keys",
    multiple=True,
    default=("camera",),
    show_default=True,
    help="A cohort label configured for slicing (repeat for several); the debug dashboard gets a "
    "breakdown per key and the other panels select the whole-model series.",
)
def render(out: Path, cohort_keys: tuple[str, ...]) -> None:
    """Write the dashboards and Grafana provisioning files.

    \b
    OUT/dashboards/cvmon-executive.json   SLO status, budget left, accuracy / mAP trend, incidents
    OUT/dashboards/cvmon-oncall.json      burn rates, latency p50/p95/p99 by version, error rate,
                                          precision / recall of chosen classes, recent drift
    OUT/dashboards/cvmon-debug.json       confusion matrix, reliability diagram, per-cohort
                                          breakdown, label coverage and latency
    OUT/provisioning/datasources/cvmon.yaml, OUT/provisioning/dashboards/cvmon.yaml

    Queries are generated from the metric names table, so they only use metrics cvmon exports.
    Mount OUT/provisioning at /etc/grafana/provisioning and OUT/dashboards at
    /var/lib/grafana/dashboards/cvmon.
    """
    from monitor.server.exporters.grafana import write_files

    for path in write_files(out, cohort_keys=cohort_keys):
        click.echo(f"wrote {path}")


commands = [grafana_group]
