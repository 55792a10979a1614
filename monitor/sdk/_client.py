"""The :class:`Client`: what an inference service calls on its hot path."""

from __future__ import annotations

import atexit
import itertools
import logging
import math
import os
import queue
import threading
import time
import weakref
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from monitor.sdk._records import (
    GROUND_TRUTH,
    PREDICTION,
    SAMPLE,
    TRACE_KEY,
    check_boxes,
    check_embedding,
    check_latency,
    check_probabilities,
    check_resources,
    unix_seconds,
)
from monitor.sdk._samples import Keeper, SamplePolicy, check_image
from monitor.sdk._sender import MAX_BATCH_RECORDS, Counters, Flush, Options, Sender, Stop
from monitor.sdk._spool import Spool
from monitor.sdk._trace import current_ids
from monitor.sdk._transport import Transport, transport_for
from monitor.wire import Resources

log = logging.getLogger("monitor.sdk")

_EMBEDDING_DTYPES: Final = ("float32", "float16")


def embedding_sampled(prediction_id: str, one_in: int) -> bool:
    """Whether a client with ``embedding_one_in=one_in`` keeps the embedding of ``prediction_id``.

    Deterministic (CRC-32 of the id), so every process, and a later analysis, agrees on which
    predictions carry embeddings.
    """
    return one_in <= 1 or zlib.crc32(prediction_id.encode()) % one_in == 0


@dataclass(frozen=True, slots=True)
class Stats:
    """Counts of records since this client started (in this process).

    ``sent``: acknowledged by the server (a record sent again after a lost acknowledgement
    counts again; the database keeps it once). ``retried``: re-sent after a failed attempt,
    spool replays included. ``spooled``: written to the spool. ``dropped``: lost on purpose —
    the in-memory queue or the spool was full (the oldest spooled batches go first), or the
    spool was unwritable. ``rejected``: refused as invalid by the server (or unencodable);
    never retried. ``queued``: in memory now. ``spool_records`` / ``spool_bytes``: on disk now.
    """

    sent: int
    retried: int
    spooled: int
    dropped: int
    rejected: int
    queued: int
    spool_records: int
    spool_bytes: int


class TimedPrediction:
    """The record being built inside :meth:`Client.timed`; set its outputs in the block."""

    __slots__ = (
        "_start", "box_classes", "box_scores", "boxes", "cohort", "confidence", "embedding", "image", "input_hash",
        "latency_ms", "predicted_class", "prediction_id", "probabilities", "request_id", "resources",
    )  # fmt: skip

    def __init__(
        self, prediction_id: str, cohort: Mapping[str, Any] | None, request_id: str | None, resources: Any = None
    ) -> None:
        self.prediction_id = prediction_id
        self.cohort = cohort
        self.request_id = request_id
        #: What the call used (:class:`monitor.sdk.Resources` or a mapping); may be set in the block.
        self.resources: Any = resources
        self.input_hash: str | None = None
        self.probabilities: Any = None
        self.predicted_class: str | int | None = None
        self.confidence: float | None = None
        self.embedding: Any = None
        self.boxes: Any = None
        self.box_classes: Any = None
        self.box_scores: Any = None
        #: The input image (encoded bytes or an H×W×C uint8 array), for the samples policy.
        self.image: Any = None
        #: Set when the block ends.
        self.latency_ms: float | None = None
        self._start = 0.0


class _Timed:
    __slots__ = ("_client", "_rec")

    def __init__(self, client: Client, rec: TimedPrediction) -> None:
        self._client = client
        self._rec = rec

    def __enter__(self) -> TimedPrediction:
        self._rec._start = time.perf_counter()
        return self._rec

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        rec = self._rec
        rec.latency_ms = (time.perf_counter() - rec._start) * 1000.0
        c = self._client
        common: dict[str, Any] = {
            "latency_ms": rec.latency_ms, "cohort": rec.cohort, "prediction_id": rec.prediction_id,
            "request_id": rec.request_id, "input_hash": rec.input_hash, "resources": rec.resources,
            "image": rec.image,
        }  # fmt: skip
        if exc_type is not None:
            c._log_error(**common)  # the exception propagates: __exit__ returns None
        elif rec.boxes is not None or rec.box_classes is not None:
            c.log_detection(boxes=rec.boxes, box_classes=rec.box_classes, box_scores=rec.box_scores,
                            embedding=rec.embedding, **common)  # fmt: skip
        elif rec.probabilities is not None or rec.predicted_class is not None:
            c.log_classification(probabilities=rec.probabilities, predicted_class=rec.predicted_class,
                                 confidence=rec.confidence, embedding=rec.embedding, **common)  # fmt: skip
        else:
            raise ValueError(
                "nothing to log: set rec.probabilities (or rec.predicted_class), or rec.boxes, rec.box_classes "
                "and rec.box_scores inside the `with client.timed() as rec:` block"
            )


class Client:
    """Send predictions and ground truth to cvmon without slowing down or endangering inference.

    ::

        from monitor.sdk import Client

        mon = Client("http://cvmon:8000", api_key="cvm_...", model="shelf-classifier", version="v3")
        pid = mon.log_classification(probabilities=p, latency_ms=12.1, cohort={"camera": "cam-3"}, embedding=e)
        pid = mon.log_detection(boxes=b, box_classes=c, box_scores=s, latency_ms=30.2)
        mon.log_ground_truth(pid, label="scratch")          # later, e.g. from the review tool
        with mon.timed(cohort={"camera": "cam-3"}) as rec:  # measures latency; an exception is
            rec.probabilities = model(x)                     # logged as status="error" and re-raised
        mon.flush()                                          # optional; close() also runs at exit
        mon.close()

    **The hot path.** A ``log_*`` call copies the arrays (so the caller may reuse its buffers),
    makes a prediction id, runs the cheap checks and puts the record on an in-memory queue: a
    few microseconds, no I/O, no lock but the queue's. It returns the prediction id; keep it to
    attach ground truth later (or pass your own ``prediction_id``, e.g. an image id).

    **Errors.** A log call raises :class:`ValueError` (:class:`monitor.errors.WireError`) at
    once for mistakes in the calling code that would make the record useless: probabilities of
    the wrong length (when ``classes`` is given) or not summing to 1 (logits), NaN or infinity,
    box arrays of different lengths. It never raises because cvmon is slow, down, misconfigured
    or rejects the record: those are logged on the ``monitor.sdk`` logger (at most once a
    minute per kind) and counted in :meth:`stats`.

    **Delivery.** A background thread batches records (``batch_size`` or ``flush_interval``),
    gzips them and POSTs them, retrying with exponential backoff and jitter. When the server
    stays unreachable past ``retry_deadline`` seconds, batches go to an on-disk spool
    (``spool_dir``, default ``$CVMON_SPOOL_DIR/<model>``, else
    ``$XDG_CACHE_HOME/cvmon/spool/<model>``, else ``~/.cache/cvmon/spool/<model>``), bounded by
    ``spool_max_bytes`` and ``spool_max_records`` per process: when full, the oldest batches are
    dropped and counted. Spooled batches are replayed in order when the server answers again —
    and by the next client that starts with the same spool directory after this process died
    (even of SIGKILL). Prediction ids make replays idempotent: each record is stored once.
    Records still in memory (at most the queue plus one batch) are lost if the process is
    killed; at normal interpreter exit :meth:`close` runs (bounded by ``exit_timeout``) and what
    cannot be sent is spooled.

    **Through a broker.** With ``nats://`` or ``mqtt://`` URLs the batches are published to NATS
    JetStream or an MQTT broker (QoS 1) instead, for ``cvmon consume`` to store; the queue,
    retries and spool are the same, and a batch counts as sent once the broker acknowledges it.

    **Processes and threads.** Log calls are thread-safe. After ``os.fork()`` (gunicorn,
    multiprocessing) the child gets its own queue, sender thread, prediction-id prefix and spool
    directory; the parent's are untouched.

    **Embeddings.** ``embedding_one_in=10`` keeps the embedding of one prediction in 10, chosen
    by the prediction id (:func:`embedding_sampled`), to bound bandwidth and storage.
    ``embedding_dtype="float16"`` halves their size on the wire.

    **Samples.** With ``samples=SamplePolicy(...)``, a log call's ``image`` (encoded JPEG, PNG
    or WebP bytes, or an H×W×C uint8 RGB array: ``pip install 'cvmon[images]'``) is kept when
    the policy says so (errors, low confidence, a rate per cohort, an hourly reservoir; see
    :class:`SamplePolicy`), thumbnailed on the sender thread and sent to ``/v1/samples``, where
    the server masks faces and licence plates and encrypts it. Without a policy ``image`` is
    ignored; when nothing is kept the call costs a few hundred nanoseconds more.

    **Tracing.** When OpenTelemetry is in use in the process (``opentelemetry.trace`` imported),
    each prediction carries the current span's W3C ``trace_id`` and ``span_id`` (``trace=False``
    turns this off). The SDK never imports OpenTelemetry itself.

    **From async code.** Log calls never block, so call them directly from coroutines. The
    calls that wait have async forms that run in a worker thread::

        async with Client(url, model="m", version="v1") as mon:
            mon.log_classification(probabilities=p)
            await mon.aflush()
        # leaving the block awaits mon.aclose()
    """

    def __init__(
        self,
        url: str,
        *,
        model: str,
        version: str,
        api_key: str | None = None,
        classes: int | Sequence[str] | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = 256 * 1024 * 1024,
        spool_max_records: int = 1_000_000,
        batch_size: int = 500,
        max_batch_bytes: int = 8 * 1024 * 1024,
        flush_interval: float = 1.0,
        max_queue: int = 50_000,
        retry_deadline: float = 5.0,
        backoff_base: float = 0.2,
        backoff_max: float = 30.0,
        timeout: float = 10.0,
        embedding_one_in: int = 1,
        embedding_dtype: str = "float32",
        trace: bool = True,
        exit_timeout: float = 5.0,
        transport: Transport | None = None,
        samples: SamplePolicy | None = None,
    ) -> None:
        """
        Parameters
        ----------
        url: the cvmon server, e.g. ``http://cvmon:8000``; or a broker that ``cvmon consume``
            reads: ``nats://host:4222/<subject prefix>`` (JetStream; ``pip install 'cvmon[nats]'``)
            or ``mqtt://host:1883/<topic prefix>`` (QoS 1; ``pip install 'cvmon[mqtt]'``). A batch
            counts as sent once the broker has stored it; docs/streaming.md.
        model, version: the registered model name and the version of the weights serving now.
        api_key: a key with the ``ingest`` scope; default ``$CVMON_API_KEY``.
        classes: the class count or names, to check the length of ``probabilities`` on the call.
        spool_dir: the spool root for this model (see above).
        batch_size: records per request (at most 10 000); ``max_batch_bytes`` bounds the JSON size.
        flush_interval: the longest a record waits in memory before its batch is sent.
        max_queue: records held in memory at most; beyond it new records are dropped and counted.
        retry_deadline: how long a fresh batch is retried before it is spooled.
        backoff_base, backoff_max: the exponential backoff between attempts, in seconds.
        timeout: of one HTTP request.
        exit_timeout: the longest :meth:`close` may hold up interpreter exit.
        transport: replaces the transport the URL picks (see :class:`MockTransport`).
        samples: which input images to keep (see above); None keeps none.
        """
        if not model or not version:
            raise ValueError("model and version are required")
        if not 1 <= batch_size <= MAX_BATCH_RECORDS:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH_RECORDS}")
        if embedding_dtype not in _EMBEDDING_DTYPES:
            raise ValueError(f"embedding_dtype must be one of {_EMBEDDING_DTYPES}")
        if embedding_one_in < 1:
            raise ValueError("embedding_one_in must be at least 1")
        self.model = model
        self.version = version
        self._n_classes = classes if isinstance(classes, int) or classes is None else len(classes)
        self._options = Options(
            url=url, model=model, version=version,
            api_key=api_key if api_key is not None else os.environ.get("CVMON_API_KEY"),
            batch_size=batch_size, max_batch_bytes=max_batch_bytes, flush_interval=flush_interval,
            retry_deadline=retry_deadline, backoff_base=backoff_base, backoff_max=backoff_max,
            embedding_dtype=embedding_dtype,
            sample_max_side=samples.max_side if samples else 0, sample_max_bytes=samples.max_bytes if samples else 0,
        )  # fmt: skip
        self._url = url
        self._timeout = timeout
        self._custom_transport = transport
        if transport is None:
            # refuse a malformed URL or a missing extra now, not on the sender thread
            transport_for(url).close()
        self.spool_dir = Path(spool_dir) if spool_dir is not None else default_spool_dir(model)
        self._spool_limits = (spool_max_bytes, spool_max_records)
        self._max_queue = max_queue
        self._one_in = embedding_one_in
        self._trace = trace
        self._exit_timeout = exit_timeout
        self._samples = samples
        self._reset()
        _LIVE.add(self)

    def _reset(self) -> None:
        """Fresh per-process state: at construction and in a forked child."""
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._counters = Counters()
        self._sender: Sender | None = None
        self._spool: Spool | None = None
        # A random prefix per process (not per client) keeps ids unique across processes and
        # forks; a counter is ~20x cheaper than uuid4 on the hot path.
        self._prefix = os.urandom(8).hex() + "-"
        self._ids = itertools.count(1)
        self._start_lock = threading.Lock()
        self._keeper = Keeper(self._samples) if self._samples is not None else None

    # ---------------------------------------------------------------------------------------
    # hot path

    def log_classification(
        self,
        probabilities: Any = None,
        *,
        latency_ms: float | None = None,
        cohort: Mapping[str, str | int | float | bool] | None = None,
        embedding: Any = None,
        predicted_class: str | int | None = None,
        confidence: float | None = None,
        prediction_id: str | None = None,
        timestamp: float | datetime | None = None,
        request_id: str | None = None,
        input_hash: str | None = None,
        resources: Resources | Mapping[str, Any] | None = None,
        image: Any = None,
    ) -> str:
        """Log one classification; returns its prediction id.

        ``probabilities``: one sample's softmax outputs in the registered class order (or give
        ``predicted_class`` and optionally ``confidence`` instead). ``cohort``: slicing fields
        such as ``{"camera": "cam-3"}``. ``embedding``: a 1-D feature vector (up to 8192 values).
        ``timestamp``: Unix seconds or an aware datetime; default now. ``resources``: what the
        inference call used (:class:`monitor.sdk.Resources`: device, batch size, CPU time, GPU
        utilisation and memory), for cost per inference; the adapters fill it. ``image``: the
        input, kept as a sample when the client's ``samples`` policy says so.
        """
        pid = prediction_id or f"{self._prefix}{next(self._ids):x}"
        rec: dict[str, Any] = {"prediction_id": pid, "timestamp": unix_seconds(timestamp, time.time())}
        if probabilities is not None:
            rec["probabilities"] = check_probabilities(probabilities, self._n_classes)
        elif predicted_class is not None:
            rec["predicted_class"] = predicted_class
            if confidence is not None:
                if not 0 <= confidence <= 1:
                    raise ValueError(f"confidence must lie in [0, 1], got {confidence!r}")
                rec["confidence"] = float(confidence)
        else:
            raise ValueError("log_classification needs probabilities or predicted_class")
        self._common(rec, latency_ms, cohort, embedding, request_id, input_hash, resources)
        keeper = self._keeper
        if image is None or keeper is None:
            self._put(PREDICTION, rec)
            return pid
        # decided before the record is queued: the sender thread encodes records in place
        unsure = keeper.unsure_classification(rec.get("probabilities"), rec.get("confidence"))
        self._put_with_sample(keeper, rec, image, error=False, unsure=unsure)
        return pid

    def log_detection(
        self,
        boxes: Any,
        box_classes: Any,
        box_scores: Any,
        *,
        latency_ms: float | None = None,
        cohort: Mapping[str, str | int | float | bool] | None = None,
        embedding: Any = None,
        prediction_id: str | None = None,
        timestamp: float | datetime | None = None,
        request_id: str | None = None,
        input_hash: str | None = None,
        resources: Resources | Mapping[str, Any] | None = None,
        image: Any = None,
    ) -> str:
        """Log one image's detections; returns its prediction id.

        ``boxes``: ``(n, 4)`` x1, y1, x2, y2 in pixels; ``box_classes``: ``n`` class indices or
        names; ``box_scores``: ``n`` scores in [0, 1]. Log every box the model returns (not only
        those above its operating threshold): mAP needs the low-scoring ones. ``resources`` and
        ``image`` as for :meth:`log_classification`.
        """
        pid = prediction_id or f"{self._prefix}{next(self._ids):x}"
        rec: dict[str, Any] = {"prediction_id": pid, "timestamp": unix_seconds(timestamp, time.time())}
        rec.update(check_boxes(boxes, box_classes, box_scores))
        self._common(rec, latency_ms, cohort, embedding, request_id, input_hash, resources)
        keeper = self._keeper
        if image is None or keeper is None:
            self._put(PREDICTION, rec)
            return pid
        self._put_with_sample(keeper, rec, image, error=False, unsure=keeper.unsure_detection(rec["box_scores"]))
        return pid

    def log_ground_truth(
        self,
        prediction_id: str,
        *,
        label: str | int | None = None,
        boxes: Any = None,
        box_classes: Any = None,
        iscrowd: Any = None,
        timestamp: float | datetime | None = None,
        annotator: str | None = None,
        audit: bool = False,
    ) -> None:
        """Attach ground truth to a prediction: ``label`` (classification) or ``boxes`` +
        ``box_classes`` (+ ``iscrowd``) for detection. It may be sent before, after or long after
        the prediction; per annotator, the newest ``timestamp`` (when it was labelled) wins.

        ``annotator``: who labelled it; the labels of several annotators are all kept, and the
        model's label policy decides which one the quality metrics use (docs/quality.md).
        ``audit=True``: a reviewed reference label, which scores the annotators."""
        rec: dict[str, Any] = {"prediction_id": prediction_id, "timestamp": unix_seconds(timestamp, time.time())}
        if annotator is not None:
            if not isinstance(annotator, str) or not annotator:
                raise ValueError("annotator must be a non-empty string")
            rec["annotator"] = annotator
        if audit:
            rec["audit"] = True
        if label is not None:
            if boxes is not None or box_classes is not None:
                raise ValueError("give label (classification) or boxes + box_classes (detection), not both")
            rec["label"] = label
        elif boxes is not None and box_classes is not None:
            rec.update(check_boxes(boxes, box_classes, None))
            if iscrowd is not None:
                import numpy as np

                crowd = np.array(iscrowd, dtype=np.uint8).reshape(-1)
                if len(crowd) != len(rec["boxes"]):
                    raise ValueError(f"iscrowd has {len(crowd)} values for {len(rec['boxes'])} boxes")
                rec["iscrowd"] = crowd
        else:
            raise ValueError("log_ground_truth needs label, or boxes and box_classes")
        self._put(GROUND_TRUTH, rec)

    def timed(
        self,
        *,
        cohort: Mapping[str, str | int | float | bool] | None = None,
        prediction_id: str | None = None,
        request_id: str | None = None,
        resources: Resources | Mapping[str, Any] | None = None,
    ) -> _Timed:
        """Time a block with :func:`time.perf_counter` and log it as one prediction::

            with mon.timed(cohort={"camera": cam}) as rec:
                rec.probabilities = model(x)      # or rec.boxes / rec.box_classes / rec.box_scores
            return rec.prediction_id

        An exception in the block logs ``status="error"`` with the latency and propagates.
        """
        pid = prediction_id or f"{self._prefix}{next(self._ids):x}"
        return _Timed(self, TimedPrediction(pid, cohort, request_id, resources))

    def _log_error(
        self, *, prediction_id: str, latency_ms: float | None, cohort: Any, request_id: Any, input_hash: Any, resources: Any,
        image: Any = None,
    ) -> None:
        rec: dict[str, Any] = {"prediction_id": prediction_id, "timestamp": time.time(), "status": "error"}
        self._common(rec, latency_ms, cohort, None, request_id, input_hash, resources)
        if image is None or self._keeper is None:
            self._put(PREDICTION, rec)
        else:
            self._put_with_sample(self._keeper, rec, image, error=True, unsure=False)

    def _put_with_sample(self, keeper: Keeper, rec: dict[str, Any], image: Any, *, error: bool, unsure: bool) -> None:
        """Queue the prediction, then the samples the keep policy releases (the prediction first,
        so that its batch usually reaches the server before its sample)."""
        image = check_image(image)
        pid = rec["prediction_id"]
        samples = keeper.offer(pid, rec["timestamp"], image, keeper.reason(pid, rec.get("cohort"), error=error, unsure=unsure))
        self._put(PREDICTION, rec)
        for sample in samples:
            self._put(SAMPLE, sample)

    def _common(
        self,
        rec: dict[str, Any],
        latency_ms: float | None,
        cohort: Any,
        embedding: Any,
        request_id: Any,
        input_hash: Any,
        resources: Any = None,
    ) -> None:
        if latency_ms is not None:
            check_latency(latency_ms)
            rec["latency_ms"] = latency_ms
        if cohort:
            rec["cohort"] = dict(cohort)  # a copy: callers often reuse one dict
        if embedding is not None and (self._one_in == 1 or embedding_sampled(rec["prediction_id"], self._one_in)):
            rec["embedding"] = check_embedding(embedding)
        if request_id is not None:
            rec["request_id"] = request_id
        if input_hash is not None:
            rec["input_hash"] = input_hash
        if resources is not None:
            rec["resources"] = check_resources(resources)

    def _put(self, kind: str, rec: dict[str, Any]) -> None:
        if self._sender is None:
            self._start()
        if self._trace:
            ids = current_ids()
            if ids is not None and kind == PREDICTION:
                rec[TRACE_KEY] = ids
        q = self._queue
        if q.qsize() >= self._max_queue:
            # The sender cannot keep up (or is stuck on a dead disk): shed load, never block.
            self._counters.add("dropped", 1)
            return
        q.put((kind, rec))

    # ---------------------------------------------------------------------------------------
    # life cycle

    def _start(self) -> None:
        with self._start_lock:
            if self._sender is not None:
                return
            transport = self._custom_transport or transport_for(self._url, timeout=self._timeout)
            self._spool = Spool(self.spool_dir, max_bytes=self._spool_limits[0], max_records=self._spool_limits[1])
            sender = Sender(self._queue, transport, self._spool, self._options, self._counters)
            sender.start()
            self._sender = sender

    def start(self) -> None:
        """Start the sender now (replaying any spool left by a dead process) instead of on the
        first log call."""
        if self._sender is None:
            self._start()

    def stats(self) -> Stats:
        """A snapshot of the delivery counters (see :class:`Stats`)."""
        c, spool = self._counters, self._spool
        return Stats(
            sent=c.sent, retried=c.retried, spooled=c.spooled, dropped=c.dropped, rejected=c.rejected,
            queued=self._queue.qsize(),
            spool_records=spool.records if spool is not None else 0,
            spool_bytes=spool.bytes if spool is not None else 0,
        )  # fmt: skip

    def flush(self, timeout: float = 30.0) -> bool:
        """Send what was logged before this call and replay the spool. Returns True when all of
        it reached the server within ``timeout`` seconds; False otherwise (the rest is spooled or
        on its way, and keeps being retried)."""
        self.start()
        marker = Flush(time.monotonic() + timeout)
        self._queue.put(marker)
        return marker.done.wait(timeout + 1.0) and marker.ok

    def close(self, timeout: float = 10.0) -> bool:
        """Flush within ``timeout`` seconds, spool what is left and stop the sender. True when
        everything reached the server. Logging again later starts a new sender. The samples
        reservoir of the current hour is sent as it stands."""
        if self._keeper is not None:
            for sample in self._keeper.drain():
                self._put(SAMPLE, sample)
        sender = self._sender
        if sender is None or not sender.is_alive():
            return True
        deadline = time.monotonic() + timeout
        # Leave a share of the time to spool what the sender could not send.
        marker = Stop(deadline - min(1.0, timeout / 4))
        self._queue.put(marker)
        sender.join(max(0.0, deadline - time.monotonic()))
        if sender.is_alive():
            sender.stopping.set()
            sender.join(0.2)
        if sender.is_alive():
            log.warning("cvmon: the sender did not finish within %.1fs; spooling what is left", timeout)
            sender.abandon(self._drain_queue)
            self._queue.put(Stop(0.0))  # ends the thread if its request ever returns
        self._sender = None
        return marker.done.is_set() and marker.ok

    def _drain_queue(self) -> list[tuple[str, dict[str, Any]]]:
        items: list[tuple[str, dict[str, Any]]] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return items
            if type(item) is tuple:
                items.append(item)

    async def aflush(self, timeout: float = 30.0) -> bool:
        """:meth:`flush` without blocking the event loop."""
        import asyncio

        return await asyncio.to_thread(self.flush, timeout)

    async def aclose(self, timeout: float = 10.0) -> bool:
        """:meth:`close` without blocking the event loop."""
        import asyncio

        return await asyncio.to_thread(self.close, timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"Client({self._url!r}, model={self.model!r}, version={self.version!r})"

    def _after_fork_in_child(self) -> None:
        # The parent's thread does not exist here, and its locks may have been held at the fork.
        if self._spool is not None:
            self._spool.forget_after_fork()
        self._reset()

    def _at_exit(self) -> None:
        if math.isfinite(self._exit_timeout) and self._exit_timeout > 0:
            self.close(self._exit_timeout)


def default_spool_dir(model: str) -> Path:
    root = os.environ.get("CVMON_SPOOL_DIR")
    if root:
        return Path(root) / model
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "cvmon" / "spool" / model


#: Every live client, for the fork and exit hooks (weak: a dropped client is not kept alive).
_LIVE: weakref.WeakSet[Client] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_LIVE):
        client._after_fork_in_child()


def _at_exit() -> None:
    for client in list(_LIVE):
        client._at_exit()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
