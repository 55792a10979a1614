"""``cvmon models``: the model registry from the command line."""

from __future__ import annotations

from pathlib import Path

import click

from monitor.server.cli._common import MODEL, StoredText, check_models, csv_list, load_settings, now, open_engine


@click.group("models")
def models_group() -> None:
    """List, show and register models (the same registry as PUT /v1/models/{model})."""


@models_group.command("list")
def list_cmd() -> None:
    """List registered models with their task, classes and counts."""
    from monitor.server.services.models import model_info, model_names

    engine = open_engine(load_settings())
    with engine.connect() as conn:
        infos = [model_info(conn, name) for name in model_names(conn)]
    if not infos:
        click.echo("no models; register one with `cvmon models register NAME --task classification --classes a,b`")
        return
    click.echo(f"{'model':<28}  {'task':<14}  {'classes':>7}  {'versions':>8}  {'predictions':>11}  {'labelled':>9}")
    for info in infos:
        assert info is not None
        click.echo(
            f"{info.spec.name:<28}  {info.spec.task:<14}  {len(info.spec.classes):>7}  {len(info.versions):>8}  "
            f"{info.predictions:>11}  {info.labelled:>9}"
        )


@models_group.command("show")
@click.argument("model", type=MODEL)
def show(model: str) -> None:
    """Show MODEL: classes, operating threshold, label policy, counts and versions."""
    from monitor.server.services.models import model_info

    engine = open_engine(load_settings())
    check_models(engine, [model])
    with engine.connect() as conn:
        info = model_info(conn, model)
    if info is None:  # removed in between
        raise click.ClickException(f"no model {model!r}")
    spec = info.spec
    click.echo(f"model:               {spec.name}\ntask:                {spec.task}")
    click.echo(f"operating threshold: {spec.operating_threshold}\nlabel policy:        {info.label_policy}")
    click.echo(f"classes ({len(spec.classes)}):         {', '.join(spec.classes[:30])}{' ...' if len(spec.classes) > 30 else ''}")
    click.echo(f"predictions:         {info.predictions}\nground truth:        {info.ground_truth}\nlabelled:            {info.labelled}")
    for v in info.versions:
        click.echo(f"  version {v.version}: {v.predictions} predictions, {v.errors} errors, {v.labelled} labelled, "
                   f"{v.first_seen:%Y-%m-%d %H:%M} .. {v.last_seen:%Y-%m-%d %H:%M}")  # fmt: skip


@models_group.command("register")
@click.argument("model", type=MODEL)
@click.option("--task", type=click.Choice(["classification", "detection"]), required=True)
@click.option("--classes", required=True, type=StoredText(10_000_000), help="Comma-separated class names in the model's output order, or @FILE with one per line.")
@click.option("--threshold", "operating_threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="The score threshold the model acts on (detection precision/recall are measured there).")  # fmt: skip
@click.option("--label-policy", type=click.Choice(["newest", "majority", "exclude"]), default=None,
              help="Which annotation the quality metrics use when annotators disagree (classification; "
                   "docs/quality.md). Default: unchanged, newest for a new model.")  # fmt: skip
def register(model: str, task: str, classes: str, operating_threshold: float, label_policy: str | None) -> None:
    """Register MODEL or update it. Classes may be appended later, never reordered or removed."""
    from monitor.errors import RegistryConflict
    from monitor.server.services.models import register_model
    from monitor.server.store.engine import write_transaction
    from monitor.wire import text_problem

    if classes.startswith("@"):
        try:
            text = Path(classes[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise click.ClickException(f"cannot read classes from {classes[1:]}: {exc}") from None
        names = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        names = csv_list(classes) or []
    if not names or len(set(names)) != len(names):
        raise click.ClickException("classes must be a non-empty list of unique names")
    for name in names:
        problem = text_problem(name) or (f"is {len(name)} characters; the limit is 128" if len(name) > 128 else None)
        if problem is not None:
            raise click.ClickException(f"class {name[:60]!a} {problem}")
    engine = open_engine(load_settings())
    try:
        with write_transaction(engine) as conn:
            created = register_model(conn, model, task, names, operating_threshold, now=now(), label_policy=label_policy)
    except (RegistryConflict, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{'registered' if created else 'updated'} {model} ({task}, {len(names)} classes)")


commands = [models_group]
