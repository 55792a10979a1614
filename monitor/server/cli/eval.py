"""``cvmon eval``: offline evaluation of COCO detection results and classifier outputs.

The same code the scheduled evaluation runs (:mod:`monitor.metrics`), on files: a COCO
ground-truth and result json, or an ``.npz`` of labels and class probabilities. Large inputs
are processed in chunks whose mergeable states are merged at the end, which is what drives the
progress bar. Errors in the files are reported in one line, without a traceback.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from monitor.metrics import CalibrationMetrics, ClassificationMetrics, DetectionMetrics

#: Inputs at least this large get a progress bar (images / rows).
_BAR_IMAGES = 1000
_BAR_ROWS = 200_000
_IMAGES_PER_CHUNK = 500
_ROWS_PER_CHUNK = 100_000

_SUMMARY_LABELS = {
    "ap": "AP @[IoU=0.50:0.95 | area=all    | maxDets=100]",
    "ap50": "AP @[IoU=0.50      | area=all    | maxDets=100]",
    "ap75": "AP @[IoU=0.75      | area=all    | maxDets=100]",
    "ap_small": "AP @[IoU=0.50:0.95 | area=small  | maxDets=100]",
    "ap_medium": "AP @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "ap_large": "AP @[IoU=0.50:0.95 | area=large  | maxDets=100]",
    "ar1": "AR @[IoU=0.50:0.95 | area=all    | maxDets=1]",
    "ar10": "AR @[IoU=0.50:0.95 | area=all    | maxDets=10]",
    "ar100": "AR @[IoU=0.50:0.95 | area=all    | maxDets=100]",
    "ar_small": "AR @[IoU=0.50:0.95 | area=small  | maxDets=100]",
    "ar_medium": "AR @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "ar_large": "AR @[IoU=0.50:0.95 | area=large  | maxDets=100]",
}


@click.group("eval")
def eval_group() -> None:
    """Evaluate a model offline: COCO detection results or classifier probabilities.

    Numbers are identical to the reference tools (pycocotools, scikit-learn, torchmetrics) and
    to what the service computes from logged predictions.
    """


@eval_group.command("coco")
@click.option(
    "--gt",
    "gt_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="COCO ground truth json (images, annotations, categories).",
)
@click.option(
    "--dt",
    "dt_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="COCO results json: a list of {image_id, category_id, bbox [x,y,w,h], score}.",
)
@click.option(
    "--score-threshold",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Operating threshold for per-class precision / recall and D-ECE.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON (the 12 COCO numbers by name, per_class) instead of tables.",
)
def coco_cmd(gt_path: Path, dt_path: Path, score_threshold: float, as_json: bool) -> None:  # fmt: skip
    """Evaluate COCO bbox results against ground truth, exactly as pycocotools' COCOeval.

    Prints AP, AP50, AP75, AP by area, AR@1/10/100 and AR by area, then AP and AP50 per
    category, with precision and recall at --score-threshold (IoU 0.5).
    """
    from monitor.metrics import DetectionState, coco_input, detection_metrics

    gt = _read_json(gt_path, "ground truth")
    dt = _read_json(dt_path, "detections")
    try:
        data = coco_input(gt, dt)
    except (TypeError, ValueError) as exc:
        raise click.ClickException(f"{gt_path.name} / {dt_path.name}: {exc}") from None
    n_images = int(data.image_ids.size)
    states = []
    with _progress(n_images, "matching images", n_images >= _BAR_IMAGES) as advance:
        for start, stop in data.chunks(_IMAGES_PER_CHUNK):
            states.append(data.detection_state(start, stop))
            advance(stop - start)
    metrics = detection_metrics(DetectionState.merge(*states) if states else DetectionState.empty(),
                                score_threshold=score_threshold)  # fmt: skip
    if as_json:
        click.echo(json.dumps(_coco_json(metrics, data.categories), indent=2))
    else:
        _print_coco(metrics, data.categories)


@eval_group.command("classification")
@click.option(
    "--npz",
    "npz_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A .npz with 'labels' (int, N) and 'probabilities' (float, N x C).",
)
@click.option(
    "--bins",
    default=15,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Equal-width bins for ECE, MCE and classwise ECE (and equal-mass bins for adaptive ECE).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def classification_cmd(npz_path: Path, bins: int, as_json: bool) -> None:  # fmt: skip
    """Evaluate classifier probabilities against labels.

    Accuracy, top-5 accuracy, per-class precision / recall / F1 / support, macro and weighted
    averages, confusion matrix; calibration: ECE (L1, equal width), adaptive ECE (equal mass),
    MCE, classwise ECE, Brier score and the reliability diagram.
    """
    import numpy as np

    from monitor.metrics import (
        CalibrationState,
        ClassificationState,
        calibration_metrics,
        classification_metrics,
        probability_states,
    )

    labels, probs = _read_npz(npz_path)
    n = labels.shape[0]
    cls_states: list[ClassificationState] = []
    cal_states: list[CalibrationState] = []
    with _progress(n, "scanning rows", n >= _BAR_ROWS) as advance:
        for start in range(0, max(n, 1), _ROWS_PER_CHUNK):
            stop = min(start + _ROWS_PER_CHUNK, n)
            try:
                cls_state, cal_state = probability_states(
                    labels[start:stop], np.asarray(probs[start:stop]), n_bins=bins
                )
            except ValueError as exc:
                raise click.ClickException(f"{npz_path.name}: {_shift_row(str(exc), start)}") from None
            cls_states.append(cls_state)
            cal_states.append(cal_state)
            advance(stop - start)
    cls = classification_metrics(ClassificationState.merge(*cls_states), top_k=(1, 5))
    cal = calibration_metrics(CalibrationState.merge(*cal_states))
    if as_json:
        click.echo(json.dumps(_classification_json(cls, cal), indent=2))
    else:
        _print_classification(cls, cal, bins)


commands = [eval_group]


# --------------------------------------------------------------------------------------------
# input


def _read_json(path: Path, what: str) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise click.ClickException(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        import orjson

        return orjson.loads(raw)
    except ImportError:
        pass
    except ValueError:
        pass  # fall through: the standard parser says where the error is
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{what} {path} is not valid JSON: {exc}") from None


def _read_npz(path: Path) -> tuple[Any, Any]:
    import zipfile

    import numpy as np

    try:
        archive = np.load(path, allow_pickle=False)
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, zipfile.BadZipFile) as exc:
        raise click.ClickException(f"{path} is not a .npz archive: {exc}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise click.ClickException(f"{path} is a single array; save labels and probabilities with np.savez")
    with archive:
        missing = {"labels", "probabilities"} - set(archive.files)
        if missing:
            raise click.ClickException(
                f"{path} has no {', '.join(sorted(missing))} (it has: {', '.join(archive.files)})"
            )
        try:
            labels, probs = archive["labels"], archive["probabilities"]
        except ValueError as exc:
            raise click.ClickException(f"{path}: {exc}") from None
    if probs.ndim != 2:
        raise click.ClickException(f"{path}: probabilities must be N x C, got shape {probs.shape}")
    if labels.ndim != 1 or labels.shape[0] != probs.shape[0]:
        raise click.ClickException(
            f"{path}: labels must have one entry per row ({probs.shape[0]}), got shape {labels.shape}"
        )
    return labels, probs


def _shift_row(message: str, offset: int) -> str:
    """Error messages name rows within a chunk; report them in the file's numbering."""
    import re

    return re.sub(r"(row |labels\[)(\d+)", lambda m: f"{m.group(1)}{int(m.group(2)) + offset}", message)


@contextlib.contextmanager
def _progress(total: int, label: str, show: bool) -> Iterator[Any]:
    if not show:
        yield lambda _n: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


# --------------------------------------------------------------------------------------------
# output


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _fmt(value: float | None, width: int = 7) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.4f}"


def _coco_json(m: DetectionMetrics, categories: Mapping[int, str]) -> dict[str, Any]:
    out: dict[str, Any] = {name: _num(value) for name, value in m.summary().items()}
    per_class: dict[str, Any] = {}
    for cid in sorted(set(categories) | set(m.per_class)):
        c = m.per_class.get(cid)
        per_class[str(cid)] = {
            "name": categories.get(cid, str(cid)),
            "ap": None if c is None else _num(c.ap),
            "ap50": None if c is None else _num(c.ap50),
            "ap75": None if c is None else _num(c.ap75),
            "ground_truth": 0 if c is None else c.ground_truth,
            "detections": 0 if c is None else c.detections,
            "precision": None if c is None else _num(c.precision),
            "recall": None if c is None else _num(c.recall),
        }
    out["per_class"] = per_class
    out.update(
        score_threshold=m.score_threshold, precision=_num(m.precision), recall=_num(m.recall), dece=_num(m.dece),
        n_images=m.n_images, n_ground_truth=m.n_ground_truth, n_detections=m.n_detections,
    )  # fmt: skip
    return out


def _print_coco(m: DetectionMetrics, categories: Mapping[int, str]) -> None:
    click.echo(f"{m.n_images} images, {m.n_ground_truth} ground-truth boxes, {m.n_detections} detections\n")
    for name, value in m.summary().items():
        click.echo(f"{name:<10} {_SUMMARY_LABELS[name]:<47}  {_fmt(value)}")
    t = m.score_threshold
    click.echo(f"\nat score >= {t:g} (IoU 0.5): precision {_fmt(m.precision, 0).strip()}, "
               f"recall {_fmt(m.recall, 0).strip()}, D-ECE {_fmt(m.dece, 0).strip()}\n")  # fmt: skip
    click.echo(f"{'id':>6}  {'category':<24} {'AP':>7} {'AP50':>7} {'AP75':>7} {'GT':>7} {'prec':>7} {'recall':>7}")
    for cid in sorted(set(categories) | set(m.per_class)):
        c = m.per_class.get(cid)
        name = categories.get(cid, str(cid))[:24]
        if c is None:
            click.echo(f"{cid:>6}  {name:<24} {_fmt(None)} {_fmt(None)} {_fmt(None)} {0:>7} {_fmt(None)} {_fmt(None)}")
            continue
        click.echo(f"{cid:>6}  {name:<24} {_fmt(c.ap)} {_fmt(c.ap50)} {_fmt(c.ap75)} {c.ground_truth:>7} "
                   f"{_fmt(c.precision)} {_fmt(c.recall)}")  # fmt: skip


def _classification_json(cls: ClassificationMetrics, cal: CalibrationMetrics) -> dict[str, Any]:
    return {
        "n": cls.n,
        "accuracy": _num(cls.accuracy),
        "top5_accuracy": _num(cls.top_k_accuracy[5]),
        "per_class": {
            str(i): {
                "precision": _num(c.precision),
                "recall": _num(c.recall),
                "f1": _num(c.f1),
                "support": c.support,
            }
            for i, c in enumerate(cls.per_class)
        },
        "macro": {
            "precision": _num(cls.macro.precision),
            "recall": _num(cls.macro.recall),
            "f1": _num(cls.macro.f1),
        },
        "weighted": {
            "precision": _num(cls.weighted.precision),
            "recall": _num(cls.weighted.recall),
            "f1": _num(cls.weighted.f1),
        },
        "confusion_matrix": cls.confusion_matrix.tolist(),
        "ece": _num(cal.ece),
        "adaptive_ece": _num(cal.adaptive_ece),
        "mce": _num(cal.mce),
        "classwise_ece": _num(cal.classwise_ece),
        "brier": _num(cal.brier),
        "reliability": [
            {
                "lower": b.lower,
                "upper": b.upper,
                "count": b.count,
                "confidence": _num(b.confidence),
                "accuracy": _num(b.accuracy),
            }
            for b in cal.reliability
        ],
    }


def _print_classification(cls: ClassificationMetrics, cal: CalibrationMetrics, bins: int) -> None:
    click.echo(f"{cls.n} samples, {len(cls.per_class)} classes\n")
    rows = [
        ("accuracy", cls.accuracy), ("top-5 accuracy", cls.top_k_accuracy[5]),
        ("macro precision", cls.macro.precision), ("macro recall", cls.macro.recall), ("macro F1", cls.macro.f1),
        ("weighted precision", cls.weighted.precision), ("weighted recall", cls.weighted.recall),
        ("weighted F1", cls.weighted.f1),
        (f"ECE ({bins} bins, L1)", cal.ece),
        ("adaptive ECE", cal.adaptive_ece), ("MCE", cal.mce), ("classwise ECE", cal.classwise_ece),
        ("Brier score", cal.brier),
    ]  # fmt: skip
    for name, value in rows:
        click.echo(f"{name:<20} {_fmt(value)}")
    click.echo(f"\n{'class':>6} {'precision':>9} {'recall':>7} {'F1':>7} {'support':>8}")
    for i, c in enumerate(cls.per_class):
        click.echo(f"{i:>6} {_fmt(c.precision, 9)} {_fmt(c.recall)} {_fmt(c.f1)} {c.support:>8}")
    click.echo(f"\nreliability diagram\n{'bin':>17} {'count':>9} {'confidence':>10} {'accuracy':>8}")
    for b in cal.reliability:
        span = f"[{b.lower:.3f}, {b.upper:.3f}{']' if b.lower == b.upper else ')'}"
        click.echo(f"{span:>17} {b.count:>9} {_fmt(b.confidence, 10)} {_fmt(b.accuracy, 8)}")
    if len(cls.per_class) <= 20:
        click.echo("\nconfusion matrix (rows: true class, columns: predicted)")
        for row in cls.confusion_matrix.tolist():
            click.echo(" ".join(f"{v:>6}" for v in row))
