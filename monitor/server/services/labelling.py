"""The labelling loop over a connection: a queue exported for labellers (every sample in it logged
as an export), and labels taken back from the tools as ground-truth records for the ingest
service (idempotent, newest revision wins, each annotator kept).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from monitor.errors import WireError
from monitor.server.services import label_formats as fmt
from monitor.server.services import queues, sample_views
from monitor.server.services.sample_audit import Accessed, record_access
from monitor.server.services.samples import ObjectMissing, SampleRuntime, StoredObject, read_bytes
from monitor.server.store import tables as t
from monitor.wire import ModelSpec


@dataclass(frozen=True)
class Export:
    body: bytes
    media_type: str
    filename: str
    items: int


def export_queue(
    conn: Connection, runtime: SampleRuntime, spec: ModelSpec, queue: str, form: str, *,
    principal: str, now: datetime, pending_only: bool = True,
) -> Export | None:
    """The queue in a labelling tool's format, with the sample images; None when there is no such
    queue. Every exported sample is logged as an export by ``principal`` (commit before sending)."""
    if form not in fmt.FORMATS:
        raise ValueError(f"format must be one of {', '.join(fmt.FORMATS)}")
    if form == "coco" and spec.task != "detection":
        raise ValueError("COCO exports detection models; export classification queues as label-studio or cvat")
    if queues.queue_status(conn, spec.name, queue, now=now) is None:
        return None
    items: list[tuple[sample_views.SampleView, bytes]] = []
    for item in queues.queue_items(conn, spec.name, queue, pending_only=pending_only):
        if item.sample_id is None:
            continue  # its sample expired since the queue was built
        view = sample_views.get(conn, spec, item.sample_id)
        if view is None:
            continue
        obj = StoredObject(spec.name, view.sample_id, view.key_id, _object_key(conn, spec.name, view.sample_id),
                           view.media_type, bytes.fromhex(view.sha256))  # fmt: skip
        try:
            items.append((view, read_bytes(runtime, obj)))
        except ObjectMissing:
            continue  # deleted by retention after this transaction's snapshot
    record_access(conn, spec.name, [Accessed(v.sample_id, v.exposed) for v, _ in items], principal=principal,
                  action="export", detail=f"queue {queue} as {form}", now=now)  # fmt: skip
    queues.mark_exported(conn, spec.name, queue, [v.prediction_id for v, _ in items], now=now)
    stem = f"cvmon-{spec.name}-{queue}"
    if form == "label-studio":
        tasks = [fmt.label_studio_task(spec, view, data, queue=queue) for view, data in items]
        return Export(json.dumps(tasks).encode(), "application/json", f"{stem}.json", len(items))
    if form == "cvat":
        return Export(fmt.cvat_zip(spec, items, queue=queue, now=now), "application/zip", f"{stem}-cvat.zip", len(items))
    return Export(fmt.coco_zip(spec, items, queue=queue, now=now), "application/zip", f"{stem}-coco.zip", len(items))


def _object_key(conn: Connection, model: str, sid: str) -> str:
    s = t.samples.c
    return str(conn.execute(sa.select(s.object_key).where(s.model == model, s.sample_id == sid)).scalar_one())


def _geometries(conn: Connection, model: str, column: Any, values: Sequence[str]) -> dict[str, tuple[str, fmt.Geometry]]:
    s = t.samples.c
    out: dict[str, tuple[str, fmt.Geometry]] = {}
    for k in range(0, len(values), 500):
        rows = conn.execute(
            sa.select(column.label("key"), s.prediction_id, s.width, s.height, s.source_width, s.source_height)
            .where(s.model == model, column.in_(values[k : k + 500]))
        )  # fmt: skip
        for r in rows:
            out[r.key] = (r.prediction_id, fmt.Geometry(r.width, r.height, r.source_width or r.width, r.source_height or r.height))
    return out


def label_studio_labels(
    conn: Connection, spec: ModelSpec, tasks: Sequence[Any], *, now: datetime
) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Ground-truth records from Label Studio tasks (its JSON export, or a webhook's task)."""
    pids = sorted({
        task["data"]["prediction_id"] for task in tasks
        if isinstance(task, dict) and isinstance(task.get("data"), dict) and isinstance(task["data"].get("prediction_id"), str)
    })  # fmt: skip
    known = _geometries(conn, spec.name, t.samples.c.prediction_id, pids)
    return fmt.label_studio_records(spec, tasks, lambda pid: known[pid][1] if pid in known else None, now=now)


def file_labels(
    conn: Connection, spec: ModelSpec, form: str, data: bytes, *, annotator: str, now: datetime
) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Ground-truth records from a labelling tool's file (``label-studio`` JSON export, ``cvat``
    annotations.xml or its zip, ``coco`` annotations.json or its zip)."""
    if form == "label-studio":
        try:
            tasks = json.loads(data)
        except ValueError:
            raise WireError("a Label Studio export is a JSON list of tasks") from None
        if not isinstance(tasks, list):
            raise WireError("a Label Studio export is a JSON list of tasks")
        return label_studio_labels(conn, spec, tasks, now=now)
    s = t.samples.c
    by_id = _geometries(conn, spec.name, s.sample_id, _sample_ids(data, form))

    def by_file(name: str) -> tuple[str, fmt.Geometry] | None:
        return by_id.get(name.rsplit("/", 1)[-1].split(".", 1)[0])

    if form == "cvat":
        return fmt.cvat_records(spec, data, by_file, annotator=annotator, now=now)
    if form == "coco":
        return fmt.coco_records(spec, data, by_file, annotator=annotator, now=now)
    raise ValueError(f"format must be one of {', '.join(fmt.FORMATS)}")


def _sample_ids(data: bytes, form: str) -> list[str]:
    """Sample ids named by the file's images (``<sample id>.<ext>``), for one lookup."""
    names: list[str] = []
    try:
        if form == "cvat":
            names = [image.get("name", "") for image in fmt.xml_root(data).iter("image")]
        else:
            raw = zipfile.ZipFile(io.BytesIO(data)).read("annotations.json") if data[:2] == b"PK" else data
            names = [str(i.get("file_name", "")) for i in json.loads(raw).get("images", []) if isinstance(i, dict)]
    except (ValueError, KeyError, AttributeError, zipfile.BadZipFile):
        return []  # the format's own reader says what is wrong
    return sorted({n.rsplit("/", 1)[-1].split(".", 1)[0] for n in names if n})[: fmt.MAX_IMPORT_RECORDS]

