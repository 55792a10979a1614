"""``cvmon consume nats`` / ``cvmon consume mqtt``: ingest from a message broker."""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import click

from monitor.server.cli._common import csv_list, load_settings, now, open_engine

_LOG_LEVELS = click.Choice(["debug", "info", "warning", "error"])


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options every consumer has: who may be written, how much is held, metrics and progress."""
    options = [
        click.option("--models", help="Comma-separated models this consumer may write (like a key bound to models); "
                                      "records of other models are dead-lettered. Default: any registered model."),
        click.option("--max-in-flight", default=256, show_default=True, type=click.IntRange(1, 65535),
                     help="Messages held at most (received, not yet acknowledged); fetching pauses beyond it."),
        click.option("--batch-records", default=10_000, show_default=True, type=click.IntRange(1, 10_000),
                     help="Records of several messages stored in one transaction at most."),
        click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64),
                     help="Threads storing batches (one parses while another waits on the database)."),
        click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Interface of the metrics port."),
        click.option("--metrics-port", default=9465, show_default=True, type=click.IntRange(0, 65535),
                     help="Serve the consumer's Prometheus metrics at http://HOST:PORT/metrics (0: off). "
                          "Give each consumer process on a host its own port."),
        click.option("--progress-seconds", default=10.0, show_default=True, type=click.FloatRange(0),
                     help="Print a progress line this often (0: never)."),
        click.option("--log-level", default="info", show_default=True, type=_LOG_LEVELS),
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return f


@click.group("consume")
def consume_group() -> None:
    """Ingest predictions and ground truth from NATS JetStream or MQTT.

    A message carries what an ingest request carries: {"records": [...]} as JSON, or gzipped as the
    SDK sends it. The last token of its subject or topic says the kind: `predictions` or
    `ground-truth` (e.g. cvmon.ingest.site-3.predictions, cvmon/ingest/cam-7/ground-truth).
    A message is acknowledged only after its records are committed; malformed records, and
    records of models this consumer may not write, are published to a dead-letter subject or
    topic with the reason and the original payload. While the database fails, the consumer holds
    its messages and stops fetching. See docs/streaming.md.
    """


@consume_group.command("nats")
@click.option("--url", "urls", multiple=True, default=["nats://127.0.0.1:4222"], show_default=True,
              help="A NATS server (repeatable); nats://user:password@host:4222 or tls://host:4222 work too.")
@click.option("--stream", default="CVMON", show_default=True, help="The JetStream stream to consume.")
@click.option("--subjects", default="cvmon.ingest.>", show_default=True,
              help="The consumer's subject filter (and the stream's subjects when it is created).")
@click.option("--consumer", "durable", default="cvmon", show_default=True,
              help="Durable consumer name; processes with the same name share the messages.")
@click.option("--dead-letter-prefix", default="cvmon.dead", show_default=True,
              help="Dead letters go to PREFIX.<original subject>.")
@click.option("--dead-letter-stream", default="CVMON_DEAD", show_default=True, help="The stream that keeps the dead letters.")
@click.option("--create/--no-create", default=True, show_default=True,
              help="Create the streams when missing (work-queue retention; dead letters kept 30 days).")
@click.option("--ack-wait", default=30.0, show_default=True, type=click.FloatRange(1),
              help="Seconds before an unacknowledged message is delivered again (a consumer died).")
@click.option("--user", envvar="CVMON_NATS_USER", help="User name [env CVMON_NATS_USER].")
@click.option("--password", envvar="CVMON_NATS_PASSWORD", help="Password [env CVMON_NATS_PASSWORD].")
@click.option("--token", envvar="CVMON_NATS_TOKEN", help="Authentication token [env CVMON_NATS_TOKEN].")
@click.option("--creds", type=click.Path(exists=True, dir_okay=False), help="A .creds file (JWT and NKey seed).")
@click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False), help="CA certificate to verify the server.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Client certificate (mutual TLS).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="Client certificate key.")
@_common
def consume_nats(urls: tuple[str, ...], stream: str, subjects: str, durable: str, dead_letter_prefix: str,
                 dead_letter_stream: str, create: bool, ack_wait: float, user: str | None, password: str | None,
                 token: str | None, creds: str | None, tls_ca: str | None, tls_cert: str | None,
                 tls_key: str | None, **common: Any) -> None:  # fmt: skip
    """Consume a NATS JetStream stream with a durable pull consumer.

    Run several processes with the same --consumer to share the work. The stream (and a
    dead-letter stream) are created when missing, unless --no-create.

    \b
      cvmon consume nats --url nats://nats:4222 --models shelf,door
      nats pub cvmon.ingest.predictions '{"records": [...]}'
    """
    from monitor.server.consumers.jetstream import JetStreamBroker, NatsConfig

    cfg = NatsConfig(
        servers=urls, stream=stream, subjects=subjects, durable=durable, dead_letter_prefix=dead_letter_prefix,
        dead_letter_stream=dead_letter_stream, create=create, ack_wait=ack_wait, max_ack_pending=max(10_000, common["max_in_flight"]),
        user=user, password=password, token=token, creds=creds, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key,
    )  # fmt: skip
    _run(lambda: JetStreamBroker(cfg), durable, f"{stream}/{durable} on {', '.join(urls)}", **common)


@consume_group.command("mqtt")
@click.option("--url", default="mqtt://127.0.0.1:1883", show_default=True,
              help="The broker: mqtt://[user:password@]host:1883, or mqtts:// for TLS (port 8883).")
@click.option("--topic", default="cvmon/ingest/#", show_default=True, help="The topic filter to subscribe to.")
@click.option("--group", default="cvmon", show_default=True,
              help="Shared-subscription group ($share/GROUP/TOPIC): consumers of one group split the messages. '' for none.")
@click.option("--client-id", default=None, help="MQTT client id; the persistent session is kept under it, so keep it "
                                                "across restarts and give each consumer its own. Default: cvmon-consume-<hostname>.")
@click.option("--protocol", default="5", show_default=True, type=click.Choice(["5", "3.1.1"]), help="MQTT version.")
@click.option("--dead-letter-prefix", default="cvmon/dead", show_default=True, help="Dead letters go to PREFIX/<original topic>.")
@click.option("--session-expiry", default=7 * 86400, show_default=True, type=click.IntRange(1),
              help="MQTT 5: seconds the broker keeps the session (and its queued messages) while the consumer is away.")
@click.option("--username", envvar="CVMON_MQTT_USERNAME", help="User name [env CVMON_MQTT_USERNAME].")
@click.option("--password", envvar="CVMON_MQTT_PASSWORD", help="Password [env CVMON_MQTT_PASSWORD].")
@click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False), help="CA certificate to verify the broker (implies TLS).")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Client certificate (mutual TLS).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="Client certificate key.")
@_common
def consume_mqtt(url: str, topic: str, group: str, client_id: str | None, protocol: str, dead_letter_prefix: str,
                 session_expiry: int, username: str | None, password: str | None, tls_ca: str | None,
                 tls_cert: str | None, tls_key: str | None, **common: Any) -> None:  # fmt: skip
    """Consume an MQTT topic: QoS 1, persistent session, shared subscription.

    Start the consumers before the publishers: the broker keeps messages only for sessions that
    exist. Several consumers with the same --group and distinct --client-id split the messages.

    \b
      cvmon consume mqtt --url mqtt://broker:1883 --client-id cvmon-a --models shelf
      mosquitto_pub -q 1 -t cvmon/ingest/cam-7/predictions -m '{"records": [...]}'
    """
    from monitor.server.consumers.mqtt import MqttBroker, MqttConfig, default_client_id

    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise click.BadParameter("must look like mqtt://host:1883 or mqtts://host:8883", param_hint="--url")
    tls = parts.scheme == "mqtts" or tls_ca is not None
    cfg = MqttConfig(
        host=parts.hostname, port=parts.port or (8883 if tls else 1883), topic=topic, group=group,
        client_id=client_id or default_client_id(), protocol=protocol,  # type: ignore[arg-type]
        dead_letter_prefix=dead_letter_prefix, session_expiry=session_expiry, receive_maximum=common["max_in_flight"],
        username=username or (urllib.parse.unquote(parts.username) if parts.username else None),
        password=password or (urllib.parse.unquote(parts.password) if parts.password else None),
        tls=tls, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key,
    )  # fmt: skip
    _run(lambda: MqttBroker(cfg), group or cfg.client_id, f"{cfg.subscription} on {parts.hostname}:{cfg.port} as {cfg.client_id}", **common)


def _run(make_broker: Callable[[], Any], consumer: str, what: str, *, models: str | None, max_in_flight: int,
         batch_records: int, workers: int, metrics_host: str, metrics_port: int, progress_seconds: float,
         log_level: str) -> None:  # fmt: skip
    import logging
    import signal

    from prometheus_client import CollectorRegistry

    from monitor.errors import CvmonError
    from monitor.server.consumers.message import ModelScope
    from monitor.server.consumers.metrics import ConsumerMetrics, serve
    from monitor.server.consumers.pipeline import Options, Pipeline
    from monitor.server.consumers.sink import Sink

    try:  # settings of the broker first: a bad filter or a missing extra needs no database
        broker = make_broker()
    except CvmonError as exc:  # a missing extra names the pip command
        raise click.ClickException(str(exc)) from None
    settings = load_settings()
    engine = open_engine(settings)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = None
    try:
        sink = Sink(engine, settings, clock=now)
        sink.prepare()
        registry = CollectorRegistry()
        metrics = ConsumerMetrics(registry)
        scope = ModelScope(csv_list(models))
        options = Options(consumer=consumer, max_body_bytes=settings.max_body_bytes, max_in_flight=max_in_flight,
                          batch_records=batch_records, workers=workers)  # fmt: skip
        pipeline = Pipeline(broker, sink, scope=scope, options=options, metrics=metrics)
        if metrics_port:
            try:
                server = serve(registry, metrics_host, metrics_port)
            except OSError as exc:
                raise click.ClickException(
                    f"cannot serve metrics on {metrics_host}:{metrics_port} ({exc}); pass another --metrics-port, or 0"
                ) from None
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        click.echo(f"consuming {what}; models: {', '.join(sorted(scope.models)) if scope.models else 'any'}"
                   + (f"; metrics at http://{metrics_host}:{metrics_port}/metrics" if metrics_port else ""), err=True)  # fmt: skip
        if progress_seconds:
            threading.Thread(target=_progress, args=(pipeline, broker, stop, progress_seconds), daemon=True).start()
        broker.run(pipeline, stop)
    except CvmonError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        engine.dispose()
    click.echo(_progress_line(pipeline, broker, None), err=True)


def _progress(pipeline: Any, broker: Any, stop: threading.Event, every: float) -> None:
    last = (time.monotonic(), 0)
    while not stop.wait(every):
        line = _progress_line(pipeline, broker, last)
        last = (time.monotonic(), pipeline.totals.snapshot()["accepted"])
        click.echo(line, err=True)


def _progress_line(pipeline: Any, broker: Any, last: tuple[float, int] | None) -> str:
    t = pipeline.totals.snapshot()
    parts = [f"stored {t['accepted']:,} records"]
    if last is not None:
        rate = (t["accepted"] - last[1]) / max(1e-9, time.monotonic() - last[0])
        parts[0] += f" ({rate:,.0f}/s)"
    parts += [f"{t['duplicates']:,} duplicates", f"{t['rejected']:,} rejected", f"{t['dead_letters']:,} dead letters",
              f"{t['messages']:,} messages", f"{t['redelivered']:,} redelivered", f"{len(pipeline.held())} in flight"]  # fmt: skip
    pending = getattr(broker, "pending", None)
    if pending is not None:
        parts.append(f"{pending:,} pending")
    if pipeline.paused:
        parts.append("PAUSED: the database is failing")
    return "consume: " + ", ".join(parts)


commands = [consume_group]
