"""``cvmon samples``: encryption keys, re-sealing after a key rotation, the access log, queues."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import datetime

import click

from monitor.server.cli._common import check_models, load_settings, now, open_engine


@click.group("samples")
def samples_group() -> None:
    """Sample images: their encryption keys, the access log and labelling queues.

    Samples are opt-in per model (`samples.models` in cvmon.yaml) and stored encrypted
    (AES-256-GCM) in the object store of `samples.store`. See docs/samples.md.
    """


@samples_group.command("keygen")
@click.option("--id", "key_id", default=None, help="The key id (default: k + the date and 4 random hex digits).")
def keygen(key_id: str | None) -> None:
    """Print a new encryption key as a key-file line, `<id> <base64 key>`.

    Append it to the key file (samples.key_file) as the FIRST line, or set samples.active_key
    to its id, to seal new samples with it; keep the old keys until `cvmon samples rotate-keys`
    has re-sealed every sample."""
    key_id = key_id or f"k{datetime.now():%Y%m%d}{secrets.token_hex(2)}"
    click.echo(f"{key_id} {base64.b64encode(secrets.token_bytes(32)).decode('ascii')}")


@samples_group.command("rotate-keys")
@click.option("--batch", default=200, show_default=True, help="Samples re-sealed per transaction.")
@click.option("--model", "models", multiple=True, help="Only this model's samples (repeatable; default: every model).")
def rotate_keys(batch: int, models: tuple[str, ...]) -> None:
    """Re-seal every sample (or MODEL's) under the active key, so that old keys can leave the ring.

    Runs beside a live server: each batch writes new objects, updates their rows in one
    transaction and only then deletes the old objects. Safe to interrupt and run again."""
    from monitor.server.services.samples import SampleRuntime, reseal
    from monitor.server.store.engine import write_transaction

    settings = load_settings()
    runtime = SampleRuntime.from_settings(settings.samples)
    if runtime is None:
        raise click.ClickException("samples are not enabled (samples.models in cvmon.yaml)")
    engine = open_engine(settings)
    active, _ = runtime.keys.active()
    total = 0
    try:
        check_models(engine, models)
        while True:
            with write_transaction(engine) as conn:
                done, old = reseal(conn, runtime, limit=batch, models=models or None)
            runtime.store.delete(old)
            total += done
            if done:
                click.echo(f"re-sealed {total} samples under {active} ...", err=True)
            if done < batch:
                break
    finally:
        engine.dispose()
    click.echo(f"{total} samples re-sealed; every sample is now under key {active}")


@samples_group.command("access")
@click.option("--model", required=True, help="The model whose access log to show.")
@click.option("--since", default=None, help="From this time on (RFC 3339).")
@click.option("--limit", default=100, show_default=True)
def access(model: str, since: str | None, limit: int) -> None:
    """Who viewed or exported MODEL's samples, newest first (one JSON object a line)."""
    from monitor.server.services.sample_audit import access_log
    from monitor.wire import parse_timestamp

    engine = open_engine(load_settings())
    try:
        with engine.connect() as conn:
            rows = access_log(conn, model, since=parse_timestamp(since) if since else None, limit=limit)
    finally:
        engine.dispose()
    for r in rows:
        click.echo(json.dumps({"at": r.at.isoformat(), "sample_id": r.sample_id, "principal": r.principal,
                               "action": r.action, "exposed": r.exposed, "detail": r.detail}))  # fmt: skip


@samples_group.command("queue")
@click.option("--model", required=True)
@click.option("--queue", "name", default="default", show_default=True, help="The queue's name.")
@click.option("--strategy", default="least_confidence", show_default=True,
              type=click.Choice(["least_confidence", "margin", "entropy", "disagreement", "drift", "false_positive", "random"]))
@click.option("--size", default=100, show_default=True)
@click.option("--per-class", type=int, default=None, help="The most items of one predicted class.")
@click.option("--no-diversity", is_flag=True, help="Take the best scores as they come (no k-center spread).")
def queue(model: str, name: str, strategy: str, size: int, per_class: int | None, no_diversity: bool) -> None:
    """Build (or rebuild) a labelling queue of MODEL's unlabelled samples of the last 7 days and
    emit labelling.ready; prints its status."""
    from monitor.server.services.models import model_spec
    from monitor.server.services.queues import QueueSpec, build_queue
    from monitor.server.store.engine import write_transaction

    settings = load_settings()
    engine = open_engine(settings)
    try:
        with write_transaction(engine) as conn:
            spec = model_spec(conn, model)
            if spec is None:
                raise click.ClickException(f"no model {model!r}")
            q = QueueSpec(strategy=strategy, size=size, per_class=per_class, diversity=not no_diversity)
            status = build_queue(conn, settings.automation, spec, name, q, now=now())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    click.echo(f"queue {status.queue} of {model}: {status.size} items ({status.pending} pending), strategy {status.strategy}")


commands = [samples_group]
