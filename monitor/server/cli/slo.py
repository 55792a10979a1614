"""``cvmon slo``: validate SLOs and render their Prometheus rules."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from monitor.server.slo.spec import SLO

_CONFIG_HELP = "The cvmon.yaml holding `slos:` (default: $CVMON_CONFIG, else ./cvmon.yaml)."


def _load(config: Path) -> tuple[SLO, ...]:
    from monitor.errors import ConfigError
    from monitor.server.slo.spec import load_slos

    try:
        text = config.read_text(encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot read {config}: {exc.strerror or exc}") from None
    try:
        slos = load_slos(text, source=str(config))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not slos:
        raise click.ClickException(f"{config}: no `slos:` defined (see docs/slo.md)")
    return slos


_config_option = click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="CVMON_CONFIG",
    default="cvmon.yaml",
    show_default=True,
    help=_CONFIG_HELP,
)


@click.group("slo")
def slo_group() -> None:
    """Model-quality SLOs: error budgets and multiwindow, multi-burn-rate alerts.

    SLOs live under `slos:` in cvmon.yaml (docs/slo.md). `cvmon slo check` validates them and
    shows each alert's burn-rate factor, windows and low-event guard; `cvmon slo render` writes
    the Prometheus rules.
    """


@slo_group.command("render")
@_config_option
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default="alerts",
    show_default=True,
    help="Directory for the rule files (created if missing).",
)
@click.option(
    "--check/--no-check",
    default=False,
    show_default=True,
    help="Run `promtool check rules` on the written files (needs promtool on PATH).",
)
def render(config: Path, out: Path, check: bool) -> None:
    """Write Prometheus recording and alerting rules for every SLO in CONFIG.

    One file per SLO, OUT/<slo>.rules.yml, holding recording rules (events and bad events over each
    alert window, as increase() totals per model version, or summed over versions with
    per_version: false) and CvmonErrorBudgetBurn alerts with labels slo, model, version, severity
    (page | ticket), long_window and short_window, following the Google SRE Workbook (page: 14.4x
    over 1h and 5m, 6x over 6h and 30m; ticket: 3x over 1d and 2h, 1x over 3d and 6h, for a 30-day
    SLO; windows scale with the SLO window, at least 5m / 10m). Each alert keeps firing for its
    short window after its condition stops (keep_firing_for, Prometheus 2.42+), as the built-in
    notifier does. The rules read only cvmon_slo_events_total and cvmon_slo_bad_events_total.

    Files an earlier render wrote for SLOs no longer in CONFIG are removed; other files are left
    alone. Load the rules in Prometheus with `rule_files: [<OUT>/*.rules.yml]`. OUT/prometheus.example.yml
    shows the scrape job: a key with only the `metrics` scope (`cvmon keys create --scopes metrics`)
    read from a file, the rules and an Alertmanager.
    """
    from monitor.server.slo.render import write_rules

    slos = _load(config)
    result = write_rules(slos, out)
    for path in result.written:
        click.echo(f"wrote {path}")
    for path in result.removed:
        click.echo(f"removed {path} (its SLO is gone)")
    if result.example is not None:
        click.echo(f"wrote {result.example} (an example prometheus.yml: scrape with a `metrics` key)")
    if check:
        from monitor.server.slo.promtool import PromtoolMissing, check_rules

        try:
            proc = check_rules(list(result.written))
        except PromtoolMissing as exc:
            raise click.ClickException(str(exc)) from None
        if proc.returncode != 0:
            raise click.ClickException(f"promtool check rules failed:\n{proc.stdout}{proc.stderr}")
        click.echo("promtool check rules: ok")


@slo_group.command("check")
@_config_option
def check_cmd(config: Path) -> None:
    """Validate the SLOs in CONFIG and show what each alert does.

    Per alert: severity, long / short window, burn-rate factor, the share of the error budget it
    takes to fire, how long a total outage (every event bad) takes to fire it, the low-event
    guard (events the long window must hold before a page) and how long it keeps firing after
    the burn stops.
    """
    from monitor.server.slo.burnrate import detection_time_s

    slos = _load(config)
    for slo in slos:
        what = slo.sli + (f" {slo.class_name!r}" if slo.class_name else "")
        what += f" {slo.metric}" if slo.metric else ""
        if slo.threshold is not None:
            what += f" {'>=' if slo.lower_bound else '<='} {slo.threshold:g}"
        cohort = "".join(f" {k}={v}" for k, v in slo.cohort)
        scope = "per version" if slo.per_version else "summed over versions"
        click.echo(f"{slo.name}: {slo.model}{cohort}, {what}, {slo.objective:g} over {slo.window}, {scope}")
        for alert in slo.alerts:
            t = detection_time_s(alert, slo.window_s, 1 / slo.error_budget)
            detect = "never" if t is None else f"{t / 60:.3g} min"
            guard = (
                f"; pages only with >= {alert.min_events} events in {alert.long_window}"
                if alert.min_events
                else ""
            )
            click.echo(
                f"  {alert.severity:<6} {alert.long_window:>5} / {alert.short_window:<5} {alert.burn_rate:>6.4g}x"
                f"  {alert.budget_fraction:.3g} of the budget; an outage fires it after {detect}{guard}; "
                f"held {alert.keep_firing_for // 60} min after the burn"
            )
    click.echo(f"{len(slos)} SLOs ok")


commands = [slo_group]
