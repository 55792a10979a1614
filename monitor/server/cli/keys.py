"""``cvmon keys``: API keys."""

from __future__ import annotations

import click

from monitor.server.cli._common import TEXT, StoredText, check_models, csv_list, load_settings, now, open_engine


@click.group("keys")
def keys_group() -> None:
    """Create, list and revoke API keys. Keys are stored hashed; a key is shown once."""


@keys_group.command("create")
@click.option("--scopes", required=True, type=TEXT, help="Comma-separated: ingest (send data), read (query), admin (register models), "
              "metrics (GET /metrics only: the key for Prometheus), samples (view and export sample images; every access "
              "is logged).")  # fmt: skip
@click.option("--models", default=None, type=StoredText(8192), help="Comma-separated models the key is limited to (default: every model).")
@click.option("--name", default="", type=StoredText(128), help="A label to recognise the key by in `cvmon keys list`.")
@click.option("--force", is_flag=True, help="Bind the key to --models that are not registered yet.")
def create(scopes: str, models: str | None, name: str, force: bool) -> None:
    """Create a key and print it. The key is the LAST line of the output, so scripts can take it
    with `cvmon keys create --scopes ingest | tail -n 1`.

    The --models must be registered (the command lists those that are); --force binds the key to
    models that will be registered later, e.g. by a service that registers its own model with an
    admin key bound to it.
    """
    from monitor.server.services.keys import create_key
    from monitor.server.store.engine import write_transaction

    engine = open_engine(load_settings())
    check_models(engine, csv_list(models) or [], force=force)
    try:
        with write_transaction(engine) as conn:
            key, text = create_key(conn, scopes=csv_list(scopes) or [], models=csv_list(models), name=name, now=now())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    limited = "every model" if key.models is None else ", ".join(sorted(key.models))
    click.echo(f"created key {key.key_id} ({', '.join(sorted(key.scopes))}; {limited}). Store it now: it is not shown again.")
    click.echo(text)


@keys_group.command("list")
def list_keys_cmd() -> None:
    """List keys (id, scopes, models, created, revoked). Secrets are never shown."""
    from monitor.server.services.keys import list_keys

    engine = open_engine(load_settings())
    with engine.connect() as conn:
        keys = list_keys(conn)
    if not keys:
        click.echo("no keys; create one with `cvmon keys create --scopes ingest,read`")
        return
    click.echo(f"{'id':<12}  {'scopes':<18}  {'models':<24}  {'created':<20}  {'revoked':<20}  name")
    for k in keys:
        models = "*" if k.models is None else ",".join(sorted(k.models))
        revoked = k.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if k.revoked_at else "-"
        click.echo(
            f"{k.key_id:<12}  {','.join(sorted(k.scopes)):<18}  {models:<24}  "
            f"{k.created_at:%Y-%m-%d %H:%M:%S}   {revoked:<20}  {k.name}"
        )


@keys_group.command("revoke")
@click.argument("key_id", type=StoredText(16))
def revoke(key_id: str) -> None:
    """Revoke the key KEY_ID (the 12-character id from `cvmon keys list`). Servers stop accepting it
    within CVMON_KEY_CACHE_SECONDS (10 s by default)."""
    from monitor.server.services.keys import revoke_key
    from monitor.server.store.engine import write_transaction

    engine = open_engine(load_settings())
    with write_transaction(engine) as conn:
        done = revoke_key(conn, key_id, now=now())
    if not done:
        raise click.ClickException(f"no active key {key_id!r}")
    click.echo(f"revoked {key_id}")


commands = [keys_group]
