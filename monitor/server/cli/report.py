"""``cvmon report``: a model's weekly HTML report, on demand."""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from monitor.server.cli._common import MODEL, check_models, cvmon_command, load_settings, now, open_engine

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from monitor.server.services.weeks import Week


@click.command("report")
@click.option("--model", required=True, type=MODEL, help="The model to report on.")
@click.option(
    "--week",
    metavar="YYYY-Www",
    help="ISO week, e.g. 2026-W47 (Monday to Sunday, UTC). Default: the last complete week.",
)
@click.option(
    "--out",
    "out",
    metavar="FILE",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Where to write the HTML; '-' for standard output. Default: cvmon-report-MODEL-WEEK.html.",
)
@click.option(
    "--store/--no-store",
    default=False,
    show_default=True,
    help="Also keep it in the database (replacing that week's stored report), where the API serves it.",
)
def report(model: str, week: str | None, out: Path | None, store: bool) -> None:
    """Write the weekly report of MODEL for one ISO week as a single HTML file.

    The report says what changed since the week before and what to do about it: SLOs and error
    budgets, accuracy or mAP by version, the per-class table and confusion matrix, calibration,
    drift per detector and cohort, latency and errors, and a list of actions (where to send
    labelling effort). It is self-contained (no scripts, fonts or images to fetch), opens
    offline, prints, and stays under 1 MB for 100 classes.

    The scheduler writes the same report every week (reports.day / reports.time in cvmon.yaml)
    and keeps it for reports.retention_weeks; GET /v1/models/MODEL/reports lists those.

    \b
    Examples:
      cvmon report --model digits                       # last week, to ./cvmon-report-digits-2026-W47.html
      cvmon report --model digits --week 2026-W45 --out w45.html
    """
    from monitor.server.reports.build import build_report_data
    from monitor.server.reports.data import ReportError
    from monitor.server.reports.render import render_report
    from monitor.server.services.weeks import WeekError, last_complete_week, parse_week

    try:
        chosen = parse_week(week) if week else last_complete_week(now())
    except WeekError as exc:
        raise click.BadParameter(str(exc), param_hint="--week") from None
    settings = load_settings()
    engine = open_engine(settings)
    check_models(engine, [model])
    try:
        click.echo(
            f"building the report of {model} for {chosen.name} ({chosen.start:%a %d %b} - {(chosen.end - timedelta(days=1)):%a %d %b %Y}, UTC) ...",
            err=True,
        )
        t0 = time.perf_counter()
        try:
            data = build_report_data(engine, model, chosen.start, settings=settings, clock=now)
        except ReportError as exc:
            raise click.ClickException(str(exc)) from None
        t1 = time.perf_counter()
        html = render_report(data)
        t2 = time.perf_counter()
        if store:
            from monitor.server.services.reports import save_report
            from monitor.server.store.engine import write_transaction

            with write_transaction(engine) as conn:
                save_report(conn, model, chosen, html, generated_at=data.generated_at)
        if not data.versions:
            _say_where_the_data_is(engine, model, chosen)
    finally:
        engine.dispose()
    size = len(html.encode("utf-8"))
    target = out or Path(f"cvmon-report-{model}-{chosen.name}.html")
    if str(target) == "-":
        sys.stdout.write(html)
        sys.stdout.flush()
        where = "standard output"
    else:
        target.write_text(html, encoding="utf-8")
        where = str(target)
    stored = " and stored in the database" if store else ""
    click.echo(
        f"read the data in {t1 - t0:.2f} s, rendered in {t2 - t1:.2f} s: {size / 1024:.0f} KiB written to {where}{stored}",
        err=True,
    )


def _say_where_the_data_is(engine: Engine, model: str, week: Week) -> None:
    """An empty report says why: no predictions at all, predictions of the week not evaluated
    yet, or a week without traffic (then: which weeks have it, and the command for the latest)."""
    from monitor.server.services.traffic import traffic_span
    from monitor.server.services.weeks import Week

    with engine.connect() as conn:
        span = traffic_span(conn, model)
    if span is None:
        click.echo(f"note: {model} has no predictions yet, so the report of {week.name} is empty", err=True)
        return
    if span[0] < week.end and span[1] >= week.start:
        click.echo(f"note: the predictions of {week.name} are not evaluated yet; run `{cvmon_command()} jobs run-once "
                   f"--model {model}` (or wait for the scheduler) and make the report again", err=True)  # fmt: skip
        return
    first, last = Week.containing(span[0]).name, Week.containing(span[1]).name
    weeks = first if first == last else f"{first} to {last}"
    click.echo(
        f"note: {model} had no traffic in {week.name}; its predictions are in {weeks}. For the latest: "
        f"{cvmon_command()} report --model {model} --week {last}",
        err=True,
    )


commands = [report]
