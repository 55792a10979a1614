"""Labelling-tool formats, both ways: a queue out as Label Studio tasks (predictions as
pre-annotations), CVAT for images 1.1 or COCO; labels back from Label Studio's webhook and JSON
export, CVAT XML and COCO JSON, as ground-truth records of the wire format. Pure: no I/O.

Geometry: cvmon stores boxes in the pixels of the image the model saw (``source``); a sample may
be smaller (the SDK's thumbnail). Exports draw boxes in the sample's pixels (what the labeller
sees) and imports scale them back, so a box survives the round trip.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from xml.etree import ElementTree as ET

from monitor.errors import WireError
from monitor.server.services.sample_views import SampleView
from monitor.wire import ModelSpec

FORMATS: Final = ("label-studio", "cvat", "coco")
_EXTENSIONS: Final = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
#: Label Studio control and object names in the generated labelling config.
FROM_NAME: Final = "label"
TO_NAME: Final = "image"
MAX_IMPORT_RECORDS: Final = 10_000


@dataclass(frozen=True)
class Geometry:
    """A sample's size and the size of the image its boxes refer to."""

    width: int
    height: int
    source_width: int
    source_height: int

    @property
    def sx(self) -> float:
        return self.width / max(1, self.source_width)

    @property
    def sy(self) -> float:
        return self.height / max(1, self.source_height)


def file_name(view: SampleView) -> str:
    return f"{view.sample_id}.{_EXTENSIONS.get(view.media_type, 'jpg')}"


def _scaled(view: SampleView, box: list[float]) -> tuple[float, float, float, float]:
    sx, sy = view.width / max(1, view.source_width), view.height / max(1, view.source_height)
    return box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy


# --------------------------------------------------------------------------------------------
# Label Studio


def label_studio_config(spec: ModelSpec) -> str:
    """The labelling interface (XML) whose names the tasks and imports use."""
    tag, item = ("Choices", "Choice") if spec.task == "classification" else ("RectangleLabels", "Label")
    extra = ' choice="single" showInline="true"' if spec.task == "classification" else ""
    labels = "".join(f'<{item} value="{_xml(c)}"/>' for c in spec.classes)
    return f'<View><Image name="{TO_NAME}" value="$image"/><{tag} name="{FROM_NAME}" toName="{TO_NAME}"{extra}>{labels}</{tag}></View>'


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


def label_studio_task(spec: ModelSpec, view: SampleView, data: bytes, *, queue: str) -> dict[str, Any]:
    """One task: the image inline (a data URI: no URL for Label Studio to reach, no key to hand
    it), the ids to route labels back, and the prediction as a pre-annotation."""
    uri = f"data:{view.media_type};base64,{base64.b64encode(data).decode('ascii')}"
    result: list[dict[str, Any]] = []
    score = view.confidence
    if spec.task == "classification" and view.predicted_class is not None:
        result.append({"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": {"choices": [view.predicted_class]}})
    elif spec.task == "detection":
        for j, box in enumerate(view.boxes or []):
            x1, y1, x2, y2 = _scaled(view, box)
            s: float | None = view.box_scores[j] if view.box_scores and j < len(view.box_scores) else None
            if s is not None and s < spec.operating_threshold:
                continue  # pre-annotations are what the model acts on
            result.append({
                "id": f"p{j}", "from_name": FROM_NAME, "to_name": TO_NAME, "type": "rectanglelabels",
                "original_width": view.width, "original_height": view.height, "image_rotation": 0,
                "value": {"x": 100 * x1 / view.width, "y": 100 * y1 / view.height, "width": 100 * (x2 - x1) / view.width,
                          "height": 100 * (y2 - y1) / view.height, "rotation": 0,
                          "rectanglelabels": [(view.box_classes or [])[j]]},
                "score": s,
            })  # fmt: skip
        scores = [s for s in (view.box_scores or []) if s is not None]
        score = max(scores) if scores else None
    task: dict[str, Any] = {
        "data": {TO_NAME: uri, "prediction_id": view.prediction_id, "sample_id": view.sample_id, "model": spec.name,
                 "queue": queue, "version": view.version},
    }  # fmt: skip
    if result:
        task["predictions"] = [{"model_version": view.version or "", "score": score, "result": result}]
    return task


def _annotator(value: Any) -> str:
    if isinstance(value, Mapping):
        value = value.get("email") or value.get("id")
    return f"label-studio:{value}"[:128] if value not in (None, "") else "label-studio"


def _timestamp(value: Any, fallback: datetime) -> str:
    if not isinstance(value, str) or not value:
        return fallback.isoformat()
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value  # refused later by the wire check, with its reason
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).isoformat()


def _ls_result(spec: ModelSpec, result: Sequence[Any], geometry: Geometry | None) -> dict[str, Any]:
    """The label of an annotation's ``result`` list, as ground-truth fields."""
    if spec.task == "classification":
        for item in result:
            if isinstance(item, Mapping) and item.get("type") == "choices":
                choices = (item.get("value") or {}).get("choices") or []
                if choices:
                    return {"label": choices[0]}
        raise WireError("the annotation has no choice (a classification label)", field="label")
    boxes, classes = [], []
    for item in result:
        if not isinstance(item, Mapping) or item.get("type") != "rectanglelabels":
            continue
        value = item.get("value") or {}
        try:
            width, height = float(item["original_width"]), float(item["original_height"])
            x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
            names = value["rectanglelabels"]
        except (KeyError, TypeError, ValueError):
            raise WireError("a rectangle needs original_width/height and x, y, width, height, rectanglelabels", field="boxes") from None
        sx, sy = (geometry.sx, geometry.sy) if geometry is not None else (1.0, 1.0)
        box = [x / 100 * width, y / 100 * height, (x + w) / 100 * width, (y + h) / 100 * height]
        boxes.append([round(box[0] / sx, 3), round(box[1] / sy, 3), round(box[2] / sx, 3), round(box[3] / sy, 3)])
        classes.append(names[0] if isinstance(names, list) and names else names)
    return {"boxes": boxes, "box_classes": classes}


def label_studio_records(
    spec: ModelSpec, tasks: Sequence[Any], geometry: Callable[[str], Geometry | None], *, now: datetime
) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Ground-truth records from Label Studio tasks with their annotations (a JSON export, or one
    webhook's task and annotation); cancelled (skipped) annotations are left out."""
    records: list[dict[str, Any]] = []
    rejected: list[tuple[int, str]] = []
    for i, task in enumerate(tasks):
        try:
            if not isinstance(task, Mapping) or not isinstance(task.get("data"), Mapping):
                raise WireError("a task must be an object with data")
            data = task["data"]
            pid = data.get("prediction_id")
            if not isinstance(pid, str) or not pid:
                raise WireError("task.data.prediction_id is missing: the task was not exported by cvmon", field="prediction_id")
            if data.get("model", spec.name) != spec.name:
                raise WireError(f"the task is of model {str(data.get('model'))[:128]!r}, not {spec.name!r}", field="model")
            for annotation in task.get("annotations") or []:
                if not isinstance(annotation, Mapping) or annotation.get("was_cancelled"):
                    continue
                fields = _ls_result(spec, annotation.get("result") or [], geometry(pid))
                records.append({
                    "prediction_id": pid, "model": spec.name, **fields,
                    "timestamp": _timestamp(annotation.get("updated_at") or annotation.get("created_at"), now),
                    "annotator": _annotator(annotation.get("completed_by")),
                })  # fmt: skip
        except WireError as exc:
            rejected.append((i, str(exc)))
    return records, rejected


def label_studio_webhook(payload: Any) -> tuple[str, Mapping[str, Any]] | None:
    """(action, task with its one annotation) of an ``ANNOTATION_CREATED`` / ``ANNOTATION_UPDATED``
    webhook; None for the other actions (acknowledged, nothing to do)."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("action"), str):
        raise WireError('a Label Studio webhook is an object with "action"')
    action = payload["action"]
    if action not in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
        return None
    task, annotation = payload.get("task"), payload.get("annotation")
    if not isinstance(task, Mapping) or not isinstance(annotation, Mapping):
        raise WireError(f"{action} carries task and annotation objects")
    return action, {**task, "annotations": [annotation]}


# --------------------------------------------------------------------------------------------
# CVAT for images 1.1


def cvat_zip(spec: ModelSpec, items: Sequence[tuple[SampleView, bytes]], *, queue: str, now: datetime) -> bytes:
    """annotations.xml (the model's predictions as ``source="auto"`` boxes or tags) and the images."""
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    meta = ET.SubElement(ET.SubElement(root, "meta"), "task")
    ET.SubElement(meta, "name").text = f"{spec.name} {queue}"
    ET.SubElement(meta, "size").text = str(len(items))
    ET.SubElement(meta, "mode").text = "annotation"
    labels = ET.SubElement(meta, "labels")
    for c in spec.classes:
        ET.SubElement(ET.SubElement(labels, "label"), "name").text = c
    ET.SubElement(ET.SubElement(root, "meta"), "dumped").text = now.isoformat()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index, (view, data) in enumerate(items):
            name = file_name(view)
            image = ET.SubElement(root, "image", id=str(index), name=name, width=str(view.width), height=str(view.height))
            if spec.task == "classification" and view.predicted_class is not None:
                ET.SubElement(image, "tag", label=view.predicted_class, source="auto")
            for j, box in enumerate(view.boxes or []):
                score = (view.box_scores or [0.0] * (j + 1))[j]
                if score < spec.operating_threshold:
                    continue
                x1, y1, x2, y2 = _scaled(view, box)
                ET.SubElement(image, "box", label=(view.box_classes or [])[j], source="auto", occluded="0", z_order="0",
                              xtl=f"{x1:.2f}", ytl=f"{y1:.2f}", xbr=f"{x2:.2f}", ybr=f"{y2:.2f}")  # fmt: skip
            archive.writestr(f"images/{name}", data)
        archive.writestr("annotations.xml", ET.tostring(root, encoding="utf-8", xml_declaration=True))
    return buffer.getvalue()


def xml_root(data: bytes) -> ET.Element:
    """The root of a CVAT annotations.xml, given alone or in its zip; refuses DTDs and entities
    (the standard library's parser would expand them: billion laughs)."""
    if data[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            data = archive.read("annotations.xml")
    if b"<!DOCTYPE" in data[:2048] or b"<!ENTITY" in data:
        raise WireError("annotations.xml must not declare a DOCTYPE or entities")
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise WireError(f"annotations.xml does not parse: {exc}") from None


def cvat_records(
    spec: ModelSpec, data: bytes, by_file: Callable[[str], tuple[str, Geometry] | None], *, annotator: str, now: datetime
) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Ground truth from CVAT for images 1.1 (``annotations.xml``, alone or in its zip); images
    are matched by file name (``<sample id>.<ext>``, as exported). Every shape in the file is the
    label, whoever drew it (import after annotating); an image without any shape is not labelled,
    as an empty image cannot be told from one nobody looked at."""
    root = xml_root(data)
    dumped = root.findtext("meta/dumped")
    stamp = _timestamp(dumped, now) if dumped else now.isoformat()
    records: list[dict[str, Any]] = []
    rejected: list[tuple[int, str]] = []
    for index, image in enumerate(root.iter("image")):
        found = by_file(image.get("name", ""))
        if found is None:
            rejected.append((index, f"image {image.get('name', '')[:80]!r} is not a sample of {spec.name!r}"))
            continue
        pid, geometry = found
        if spec.task == "classification":
            tags = [tag.get("label") for tag in image.iter("tag")]
            if tags:
                records.append({"prediction_id": pid, "model": spec.name, "label": tags[0], "timestamp": stamp, "annotator": annotator})
            continue
        boxes, classes = [], []
        try:
            for box in image.iter("box"):
                x1, y1, x2, y2 = (float(box.get(k, "")) for k in ("xtl", "ytl", "xbr", "ybr"))
                boxes.append([x1 / geometry.sx, y1 / geometry.sy, x2 / geometry.sx, y2 / geometry.sy])
                classes.append(box.get("label", ""))
        except ValueError:
            rejected.append((index, "a box needs numeric xtl, ytl, xbr, ybr"))
            continue
        if boxes:
            records.append({"prediction_id": pid, "model": spec.name, "boxes": boxes, "box_classes": classes,
                            "timestamp": stamp, "annotator": annotator})  # fmt: skip
    return records, rejected


# --------------------------------------------------------------------------------------------
# COCO


def coco_zip(spec: ModelSpec, items: Sequence[tuple[SampleView, bytes]], *, queue: str, now: datetime) -> bytes:
    """annotations.json (COCO detection; the predictions with their ``score``) and the images."""
    if spec.task != "detection":
        raise ValueError("COCO exports detection models; export classification queues as label-studio or cvat")
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index, (view, data) in enumerate(items, start=1):
            name = file_name(view)
            images.append({"id": index, "file_name": name, "width": view.width, "height": view.height,
                           "cvmon_prediction_id": view.prediction_id})  # fmt: skip
            for j, box in enumerate(view.boxes or []):
                score = (view.box_scores or [0.0] * (j + 1))[j]
                if score < spec.operating_threshold:
                    continue
                x1, y1, x2, y2 = _scaled(view, box)
                annotations.append({
                    "id": len(annotations) + 1, "image_id": index,
                    "category_id": spec.classes.index((view.box_classes or [])[j]) + 1,
                    "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                    "area": round((x2 - x1) * (y2 - y1), 2), "iscrowd": 0, "score": score,
                })  # fmt: skip
            archive.writestr(f"images/{name}", data)
        body = {
            "info": {"description": f"cvmon {spec.name} queue {queue}", "date_created": now.isoformat()},
            "images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": c} for i, c in enumerate(spec.classes)],
        }  # fmt: skip
        archive.writestr("annotations.json", json.dumps(body))
    return buffer.getvalue()


def coco_records(
    spec: ModelSpec, data: bytes, by_file: Callable[[str], tuple[str, Geometry] | None], *, annotator: str, now: datetime
) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Ground truth from a COCO detection file (``annotations.json``, alone or in its zip); an
    image without any annotation is not labelled (as for CVAT)."""
    if spec.task != "detection":
        raise WireError("COCO files label detection models")
    if data[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            data = archive.read("annotations.json")
    try:
        body = json.loads(data)
        categories = {int(c["id"]): str(c["name"]) for c in body.get("categories", [])}
        images = list(body["images"])
    except (ValueError, KeyError, TypeError):
        raise WireError("not a COCO file: images, annotations and categories are needed") from None
    per_image: dict[Any, list[Any]] = {}
    for a in body.get("annotations", []):
        if isinstance(a, Mapping):
            per_image.setdefault(a.get("image_id"), []).append(a)
    records: list[dict[str, Any]] = []
    rejected: list[tuple[int, str]] = []
    stamp = now.isoformat()
    for index, image in enumerate(images):
        found = by_file(str(image.get("file_name", ""))) if isinstance(image, Mapping) else None
        if found is None:
            rejected.append((index, "an image that is not a sample of this model"))
            continue
        pid, geometry = found
        boxes, classes, crowd = [], [], []
        try:
            for a in per_image.get(image.get("id"), []):
                x, y, w, h = (float(v) for v in a["bbox"])
                boxes.append([x / geometry.sx, y / geometry.sy, (x + w) / geometry.sx, (y + h) / geometry.sy])
                classes.append(categories[int(a["category_id"])])
                crowd.append(int(a.get("iscrowd", 0)))
        except (KeyError, TypeError, ValueError):
            rejected.append((index, "an annotation needs bbox [x, y, w, h] and a known category_id"))
            continue
        if not boxes:
            continue
        records.append({"prediction_id": pid, "model": spec.name, "boxes": boxes, "box_classes": classes, "iscrowd": crowd,
                        "timestamp": stamp, "annotator": annotator})  # fmt: skip
    return records, rejected
