"""``cvmon silence``: maintenance silences for the built-in notifier."""

from __future__ import annotations

import getpass

import click

from monitor.server.cli._common import MODEL, TEXT, StoredText, check_models, load_settings, now, open_engine


@click.group("silence")
def silence_group() -> None:
    """Mute the built-in notifier for a model (or one SLO) during maintenance.

    A silence holds back firing notifications while it lasts; cvmon keeps evaluating, and an
    incident still firing when the silence ends is notified once. Silences are stored in the
    database, so every server and worker honours them. They do not affect Prometheus: silence
    Prometheus alerts in Alertmanager.
    """


def _duration(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    from monitor.server.slo.burnrate import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@silence_group.command("add")
@click.option("--model", required=True, type=MODEL, help="The model to silence.")
@click.option("--slo", default=None, type=TEXT, help="Only this SLO of the model (default: every SLO of it).")
@click.option("--for", "seconds", required=True, callback=_duration, metavar="DURATION",
              help="How long, from now: 30m, 2h, 1d, ...")  # fmt: skip
@click.option("--comment", default="", type=StoredText(4096), help="Why (shown in `cvmon silence list` and the notifier's log).")
@click.option("--by", "created_by", default=None, type=StoredText(128), help="Who (default: the current user).")
@click.option("--force", is_flag=True,
              help="Silence a model that is not registered yet, or an SLO the configuration does not have yet "
                   "(e.g. ahead of a first deployment).")  # fmt: skip
def add(model: str, slo: str | None, seconds: int, comment: str, created_by: str | None, force: bool) -> None:
    """Silence MODEL's notifications (or one SLO's) from now for DURATION; prints the silence id.

    MODEL must be registered and SLO one of its SLOs in the configuration; otherwise the command
    says which exist and stops, unless --force.
    """
    from datetime import timedelta

    from monitor.server.slo.silences import add_silence
    from monitor.server.store.engine import write_transaction

    settings = load_settings()
    engine = open_engine(settings)
    check_models(engine, [model], force=force)
    known = sorted(s.name for s in settings.slos if s.model == model)
    if slo is not None and slo not in known:
        where = f" ({settings.config_path})" if settings.config_path else ""
        problem = (f"model {model!r} has no SLO {slo!r} in the configuration{where}; its SLOs: "
                   f"{', '.join(known) or 'none'}")  # fmt: skip
        if not force:
            raise click.ClickException(problem)
        click.echo(f"note: {problem}; going ahead (--force)", err=True)
    elif not known:
        click.echo(f"note: the configuration has no SLOs for model {model!r}", err=True)
    with write_transaction(engine) as conn:
        silence = add_silence(
            conn, model=model, slo=slo, duration=timedelta(seconds=seconds), now=now(),
            created_by=created_by if created_by is not None else _user(), comment=comment,
        )  # fmt: skip
    what = f"SLO {slo} of model {model}" if slo else f"every SLO of model {model}"
    click.echo(f"silenced {what} until {silence.ends_at:%Y-%m-%d %H:%M:%S} UTC; id:")
    click.echo(silence.silence_id)


@silence_group.command("list")
@click.option("--all", "include_expired", is_flag=True, help="Include silences that have ended.")
@click.option("--model", default=None, type=MODEL, help="Only this model's silences.")
def list_cmd(include_expired: bool, model: str | None) -> None:
    """List active and future silences (newest first)."""
    from monitor.server.slo.silences import list_silences

    engine = open_engine(load_settings())
    at = now()
    with engine.connect() as conn:
        silences = list_silences(conn, now=at, include_expired=include_expired, model=model)
        forced = model is not None and bool(list_silences(conn, now=at, include_expired=True, model=model))
    if model is not None and not forced:  # a model silenced with --force before it was registered is listed
        check_models(engine, [model])
    if not silences:
        click.echo("no silences" if include_expired else "no active silences")
        return
    click.echo(f"{'id':<10}{'model':<28}{'slo':<28}{'until (UTC)':<21}{'state':<9}{'by':<14}comment")
    for s in silences:
        state = "active" if s.active(at) else "ended" if s.ends_at <= at else "future"
        click.echo(
            f"{s.silence_id:<10}{s.model:<28}{s.slo or '*':<28}{s.ends_at:%Y-%m-%d %H:%M:%S}  {state:<9}"
            f"{s.created_by or '-':<14}{s.comment}"
        )


@silence_group.command("expire")
@click.argument("silence_id", type=StoredText(16))
def expire(silence_id: str) -> None:
    """End the silence SILENCE_ID now (the id from `cvmon silence add` or `list`)."""
    from monitor.server.slo.silences import expire_silence
    from monitor.server.store.engine import write_transaction

    engine = open_engine(load_settings())
    with write_transaction(engine) as conn:
        silence = expire_silence(conn, silence_id, now=now())
    if silence is None:
        raise click.ClickException(f"no active silence {silence_id!r}; see `cvmon silence list`")
    click.echo(f"expired silence {silence_id} of model {silence.model}")


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (containers)
        return ""


commands = [silence_group]
