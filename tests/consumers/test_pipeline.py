"""The broker-neutral pipeline, in process, on both databases: what is acknowledged when, how the
rejections of a combined batch map back to each message, and what happens when storing fails.

The broker here is an in-memory stand-in for the adapter seam (:class:`Broker`), so that the
order of commits, dead letters and acknowledgements can be checked step by step; the real
brokers are exercised end to end in test_nats.py and test_mqtt.py.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy.exc
from prometheus_client import CollectorRegistry

from monitor.server.consumers.message import ModelScope
from monitor.server.consumers.metrics import ConsumerMetrics
from monitor.server.consumers.pipeline import DeadLetter, Delivery, Options, Pipeline
from monitor.server.consumers.sink import Sink
from monitor.server.settings import Settings
from tests.consumers.brokers import body, records, register, stored
from tests.faults.servers import wait_for


class RecordingBroker:
    """Keeps what the pipeline does; at each acknowledgement it checks that the message's good
    records are already committed (``committed(delivery)``)."""

    name = "test"
    separator = "."

    def __init__(self, committed: Any) -> None:
        self.committed = committed
        self.acked: list[Delivery] = []
        self.letters: list[tuple[Delivery, DeadLetter]] = []
        self.released: list[Delivery] = []
        self.done = threading.Event()
        self.expect = 0

    def ack(self, delivery: Delivery) -> None:
        assert self.committed(delivery), f"{delivery.subject} acknowledged before its records were committed"
        self.acked.append(delivery)
        if len(self.acked) >= self.expect:
            self.done.set()

    def release(self, deliveries: Sequence[Delivery], delay: float = 0.0) -> None:
        self.released += deliveries
        self.release_delay = delay

    def dead_letter(self, delivery: Delivery, letter: DeadLetter) -> None:
        assert delivery not in self.acked, "dead-lettered after its acknowledgement"
        self.letters.append((delivery, letter))


def _pipeline(db: Any, broker: RecordingBroker, sink: Sink | None = None, **options: Any) -> Pipeline:
    sink = sink or Sink(db.engine, Settings(database_url=db.url), clock=lambda: datetime.now(UTC))
    return Pipeline(
        broker, sink, scope=ModelScope(None), metrics=ConsumerMetrics(CollectorRegistry()),
        options=Options(consumer="test", backoff_base=0.01, backoff_max=0.05, **options),
    )  # fmt: skip


def _ids_stored(db: Any, model: str, ids: list[str]) -> bool:
    import sqlalchemy as sa

    with db.engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT count(*) FROM predictions WHERE model = :m AND prediction_id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"m": model, "ids": ids},
        ).scalar_one()
    return int(found) == len(ids)


def test_rejections_of_a_combined_batch_map_back_to_each_message(db, model_name: str) -> None:
    """Three messages stored in one transaction: each dead letter names its own message's record
    indices, and each message is acknowledged after the commit."""
    register(db.engine, model_name)
    bad = {0: [2], 1: [], 2: [0, 4]}
    messages = []
    for m, indices in bad.items():
        recs = records(model_name, 5, run=f"msg{m}")
        for i in indices:
            recs[i]["probabilities"] = [1.5, 0.0, 0.0]
        messages.append((recs, indices))

    def committed(d: Delivery) -> bool:
        recs, indices = messages[int(d.subject.split(".")[1])]
        return _ids_stored(db, model_name, [r["prediction_id"] for i, r in enumerate(recs) if i not in indices])

    broker = RecordingBroker(committed)
    broker.expect = 3
    pipeline = _pipeline(db, broker, workers=1)
    for m, (recs, _) in enumerate(messages):  # queued before the worker starts: one combined batch
        pipeline.offer(Delivery(f"in.{m}.predictions", body(recs)))
    pipeline.start()
    assert broker.done.wait(30)
    pipeline.stop()
    assert stored(db.engine, model_name) == 15 - 3
    letters = {d.subject: letter for d, letter in broker.letters}
    assert set(letters) == {"in.0.predictions", "in.2.predictions"}
    assert [i for i, _ in letters["in.0.predictions"].errors] == [2]
    assert [i for i, _ in letters["in.2.predictions"].errors] == [0, 4]
    assert letters["in.2.predictions"].reason.startswith("2 of 5 records rejected; first: record 0: probabilities")
    assert pipeline.totals.snapshot() | {} == {
        "accepted": 12, "duplicates": 0, "rejected": 3, "messages": 3, "dead_letters": 2, "redelivered": 0,
    }  # fmt: skip


class FailingSink(Sink):
    """A sink whose writes fail as told: ``transient`` times with a database error, or for ever with
    a bug when a record has the id ``boom`` (neither can be produced on demand by a real database)."""

    def __init__(self, db: Any, transient: int = 0) -> None:
        super().__init__(db.engine, Settings(database_url=db.url), clock=lambda: datetime.now(UTC))
        self.transient = transient
        self.calls = 0

    def write(self, kind: Any, recs: Sequence[Any]) -> Any:
        self.calls += 1
        if self.transient:
            self.transient -= 1
            raise sqlalchemy.exc.OperationalError("INSERT", {}, Exception("connection refused"))
        if any(r.get("prediction_id") == "boom" for r in recs):
            raise RuntimeError("a bug that waiting cannot fix")
        return super().write(kind, recs)


def test_an_error_waiting_cannot_fix_is_isolated_to_its_message(db, model_name: str) -> None:
    register(db.engine, model_name)
    good_a, good_b = records(model_name, 3, run="a"), records(model_name, 3, run="b")
    boom = [{**records(model_name, 1, run="c")[0], "prediction_id": "boom"}]
    broker = RecordingBroker(lambda d: True)
    broker.expect = 3
    pipeline = _pipeline(db, broker, FailingSink(db), workers=1)
    for n, recs in enumerate((good_a, boom, good_b)):
        pipeline.offer(Delivery(f"in.{n}.predictions", body(recs)))
    pipeline.start()
    assert broker.done.wait(30)
    pipeline.stop()
    assert stored(db.engine, model_name) == 6
    [(delivery, letter)] = broker.letters
    assert delivery.subject == "in.1.predictions"
    assert letter.reason.startswith("cvmon could not store these records (RuntimeError: a bug that waiting cannot fix)")


def test_a_failing_database_is_waited_out_holding_the_messages(db, model_name: str) -> None:
    register(db.engine, model_name)
    recs = records(model_name, 10)
    broker = RecordingBroker(lambda d: _ids_stored(db, model_name, [r["prediction_id"] for r in recs]))
    broker.expect = 1
    sink = FailingSink(db, transient=3)
    pipeline = _pipeline(db, broker, sink, workers=1)
    pipeline.start()
    pipeline.offer(Delivery("in.predictions", body(recs)))
    assert broker.done.wait(30)
    pipeline.stop()
    assert sink.calls == 4 and not broker.letters and not broker.released
    assert stored(db.engine, model_name) == 10
    assert not pipeline.paused


def test_stopping_while_the_database_is_away_releases_the_held_messages(db, model_name: str) -> None:
    register(db.engine, model_name)
    broker = RecordingBroker(lambda d: False)
    pipeline = _pipeline(db, broker, FailingSink(db, transient=10**9), workers=2, max_in_flight=4)
    pipeline.start()
    for n in range(4):
        pipeline.offer(Delivery(f"in.{n}.predictions", body(records(model_name, 2))))
    assert pipeline.room() == 0
    wait_for(lambda: pipeline.paused, "the pipeline to pause")
    pipeline.stop(timeout=0.2)
    assert not broker.acked and not broker.letters
    assert sorted(d.subject for d in broker.released) == [f"in.{n}.predictions" for n in range(4)]


def test_a_bug_in_the_pipeline_hands_the_message_back_and_the_stream_goes_on(db, model_name: str) -> None:
    """A failure outside storage (here: the broker adapter raising on a dead letter) neither stops
    the worker nor loops: the message is handed back for later, the next one is stored."""
    register(db.engine, model_name)

    class BrokenDeadLetters(RecordingBroker):
        def dead_letter(self, delivery: Delivery, letter: DeadLetter) -> None:
            raise RuntimeError("adapter bug")

    broker = BrokenDeadLetters(lambda d: True)
    broker.expect = 1
    pipeline = _pipeline(db, broker, workers=1)
    pipeline.start()
    pipeline.offer(Delivery("in.0.predictions", b"{not json"))
    wait_for(lambda: broker.released, "the poison message handed back")
    pipeline.offer(Delivery("in.1.predictions", body(records(model_name, 3))))
    assert broker.done.wait(30)
    pipeline.stop()
    assert [d.subject for d in broker.released] == ["in.0.predictions"] and broker.release_delay == 60.0
    assert [d.subject for d in broker.acked] == ["in.1.predictions"]
    assert pipeline.room() == pipeline.options.max_in_flight


@pytest.mark.parametrize(
    ("subject", "payload", "reason"),
    [
        pytest.param("a.predictions", b"[1, 2]", 'the body must be a JSON object {"records": [...]}', id="not-an-object"),
        pytest.param("a.predictions", b'{"records": [], "x": 1}', "unknown top-level field 'x'", id="extra-field"),
        pytest.param("a.labels", b'{"records": [{}]}', "the subject 'a.labels' must end in .predictions or .ground-truth", id="kind"),
        pytest.param("a.predictions", b"\x1f\x8b", "payload is not valid gzip", id="truncated-gzip"),
        pytest.param("a.predictions", b'{"records": [NaN]}', "", id="nan-is-parsed"),
    ],
)
def test_unreadable_messages(subject: str, payload: bytes, reason: str) -> None:
    from monitor.server.consumers.message import Poison, read_message

    if not reason:  # Python's json writes NaN: parsed, and the record is rejected by itself later
        assert read_message(subject, payload, separator=".", limit=1000, scope=ModelScope(None)).total == 1
        return
    with pytest.raises(Poison) as caught:
        read_message(subject, payload, separator=".", limit=1000, scope=ModelScope(None))
    assert str(caught.value).startswith(reason)
