"""COCO detection metrics from a mergeable matching state.

pycocotools evaluates in three stages: ``evaluate`` greedily matches each image's detections to
its ground truth (per class, IoU threshold and area range), ``accumulate`` sorts every class's
matched detections by score over all images and integrates precision over 101 recall points,
``summarize`` averages. Only the first stage looks at boxes, and it is per image; its output is
the :class:`DetectionState`: for every detection its class, score, image key, rank within its
image and class, and two bit masks over (area range × IoU threshold) saying whether it was a
true positive or ignored (everything else is a false positive); plus, per class and area range,
the number of ground-truth boxes that count. States of images, hours, versions or cohorts merge
by concatenation; :func:`detection_metrics` is ``accumulate`` + ``summarize`` on a state.

Exactness: ``accumulate`` sees, per class, the per-image lists cut to ``maxDet`` and
concatenated in image-id order, then stably sorted by score; ties therefore break by (image,
rank within image). The state is kept sorted by (class, -score, image key, rank) and the cut is
``rank < maxDet``, which is the same order. The maxDet cut after matching is exact because a
greedy match by descending score never depends on lower-scored detections. Merging sorts by the
flags too, so any merge order gives the same state, byte for byte.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from ._calibration import ReliabilityBin
from ._codec import pack, readonly, unpack
from ._jit import kernel

_KIND: Final = "detection"

#: pycocotools' IoU thresholds 0.50:0.05:0.95, computed the same way (bit for bit).
IOU_THRESHOLDS: Final = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
#: pycocotools' 101 recall points.
RECALL_THRESHOLDS: Final = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
#: Area ranges all, small, medium, large (pixels²; closed at both ends, as in pycocotools).
AREA_RANGES: Final = ((0.0, 1e5**2), (0.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e5**2))
MAX_DETS: Final = (1, 10, 100)
N_IOU: Final = len(IOU_THRESHOLDS)
N_REC: Final = len(RECALL_THRESHOLDS)
N_AREA: Final = len(AREA_RANGES)
#: Bytes that hold the N_AREA × N_IOU flag bits of one detection.
_FLAG_BYTES: Final = (N_AREA * N_IOU + 7) // 8
#: The per-detection columns of a state, in its sort order.
_COLUMNS: Final = ("det_class", "score", "image", "rank", "tp", "ignored")


@dataclass(frozen=True, eq=False, slots=True)
class DetectionState:
    """Mergeable result of matching detections to ground truth over a set of images.

    Flag bit ``a * 10 + t`` of ``tp`` / ``ignored`` is for area range ``a`` (all, small, medium,
    large) and IoU threshold ``t`` (0.50, 0.55, ... 0.95). A detection with neither bit is a
    false positive there. Detection arrays are sorted by (class, -score, image, rank, flags).

    Attributes
    ----------
    classes
        Sorted class ids that have ground truth or detections.
    gt_counts
        ``(len(classes), 4)``: ground-truth boxes that count (not crowd, area within range).
    n_images
        Images evaluated (summed over merged parts).
    det_class, score, image, rank, tp, ignored
        One entry per detection, all detections kept (also those past ``maxDets``).
    """

    classes: NDArray[np.int64]
    gt_counts: NDArray[np.int64]
    n_images: int
    det_class: NDArray[np.int64]
    score: NDArray[np.float64]
    image: NDArray[np.int64]
    rank: NDArray[np.int32]
    tp: NDArray[np.int64]
    ignored: NDArray[np.int64]

    @property
    def n_detections(self) -> int:
        """Number of detections."""
        return int(self.score.size)

    @classmethod
    def empty(cls) -> DetectionState:
        """The state of no images (the identity of :meth:`merge`)."""
        z = np.zeros(0, dtype=np.int64)
        return cls(
            readonly(z.copy()), readonly(np.zeros((0, N_AREA), dtype=np.int64)), 0,
            readonly(z.copy()), readonly(np.zeros(0)), readonly(z.copy()),
            readonly(np.zeros(0, dtype=np.int32)), readonly(z.copy()), readonly(z.copy()),
        )  # fmt: skip

    @classmethod
    def merge(cls, *states: DetectionState) -> DetectionState:
        """The state of the union of the parts (exact, associative and commutative).

        Parts are assumed to hold different images, or the same images seen by different
        models; image keys only order tied scores.
        """
        if not states:
            raise ValueError("merge needs at least one state")
        classes = np.unique(np.concatenate([s.classes for s in states]))
        counts = np.zeros((classes.size, N_AREA), dtype=np.int64)
        for s in states:
            counts[np.searchsorted(classes, s.classes)] += s.gt_counts
        runs = [s for s in states if s.n_detections]
        if len(runs) <= 1:
            columns = tuple(getattr(runs[0] if runs else states[0], name) for name in _COLUMNS)
        elif len(runs) == 2:
            # two sorted runs (an hour and the late labels merged into it, two halves of a window):
            # merged straight into the new columns, one pass that reads and writes each row once
            a, b = runs
            merged = tuple(
                np.empty(a.n_detections + b.n_detections, dtype=np.result_type(getattr(a, name), getattr(b, name)))
                for name in _COLUMNS
            )
            _merge_two_runs(*(getattr(a, name) for name in _COLUMNS), *(getattr(b, name) for name in _COLUMNS), *merged)
            columns = tuple(readonly(c) for c in merged)
        else:
            det_class, score, image, rank, tp, ignored = (np.concatenate([getattr(s, name) for s in runs]) for name in _COLUMNS)
            # every part is in the canonical order already: merging the sorted runs gives the order
            # a sort of the whole would (keys equal in all six columns are equal rows), in
            # O(n log parts) rather than the six stable passes of a lexsort (most of a window's cost)
            bounds = np.cumsum([0] + [s.n_detections for s in runs], dtype=np.int64)
            order = np.empty(int(bounds[-1]), dtype=np.int64)
            _merge_sorted_runs(det_class, score, image, rank, tp, ignored, bounds, order)
            columns = tuple(readonly(c[order]) for c in (det_class, score, image, rank, tp, ignored))
        return DetectionState(readonly(classes), readonly(counts), sum(s.n_images for s in states), *columns)

    def to_bytes(self) -> bytes:
        """Compact, versioned bytes (see :mod:`monitor.metrics._codec`); no pickle.

        34 bytes a detection: score and image key (8 each), class as an index into ``classes``
        and rank (4 each), and the 2 × 40 flag bits in 10 bytes.
        """
        n = self.n_detections
        flags = np.concatenate(
            [self.tp.astype("<u8").view(np.uint8).reshape(n, 8)[:, :_FLAG_BYTES],
             self.ignored.astype("<u8").view(np.uint8).reshape(n, 8)[:, :_FLAG_BYTES]], axis=1,
        )  # fmt: skip
        meta = {
            "n_images": self.n_images,
            "iou_thresholds": N_IOU,
            "area_ranges": [list(r) for r in AREA_RANGES],
        }
        return pack(
            _KIND,
            meta,
            {
                "classes": self.classes, "gt_counts": self.gt_counts,
                "class_index": np.searchsorted(self.classes, self.det_class).astype(np.int32),
                "score": self.score, "image": self.image, "rank": self.rank, "flags": flags,
            },
        )  # fmt: skip

    @classmethod
    def from_bytes(cls, data: bytes) -> DetectionState:
        """Read a state written by :meth:`to_bytes`."""
        meta, a = unpack(
            data, _KIND, required=("classes", "gt_counts", "class_index", "score", "image", "rank", "flags")
        )
        if meta.get("iou_thresholds") != N_IOU or meta.get("area_ranges") != [list(r) for r in AREA_RANGES]:
            raise ValueError("detection state was matched with other IoU thresholds or area ranges")
        n = a["score"].size
        words = np.zeros((2, n, 8), dtype=np.uint8)
        words[0, :, :_FLAG_BYTES] = a["flags"][:, :_FLAG_BYTES]
        words[1, :, :_FLAG_BYTES] = a["flags"][:, _FLAG_BYTES:]
        tp, ignored = (readonly(w.view("<i8").reshape(n).astype(np.int64)) for w in words)
        return cls(
            a["classes"], a["gt_counts"], int(meta["n_images"]), readonly(a["classes"][a["class_index"]]),
            a["score"], a["image"], a["rank"], tp, ignored,
        )  # fmt: skip


def build_state(
    classes: NDArray[np.int64],
    gt_counts: NDArray[np.int64],
    n_images: int,
    det_class: NDArray[np.int64],
    score: NDArray[np.float64],
    image: NDArray[np.int64],
    rank: NDArray[np.int32],
    tp: NDArray[np.int64],
    ignored: NDArray[np.int64],
) -> DetectionState:
    """A state with its detections put in the canonical order."""
    order = np.lexsort((ignored, tp, rank, image, -score, det_class))
    return DetectionState(
        readonly(np.ascontiguousarray(classes, dtype=np.int64)),
        readonly(np.ascontiguousarray(gt_counts, dtype=np.int64)),
        int(n_images),
        readonly(det_class[order]),
        readonly(score[order]),
        readonly(image[order]),
        readonly(rank[order]),
        readonly(tp[order]),
        readonly(ignored[order]),
    )


@kernel
def _merge_sorted_runs(det_class: Any, score: Any, image: Any, rank: Any, tp: Any, ignored: Any, runs: Any, order: Any) -> None:
    """The permutation that puts concatenated runs, each sorted by (class, -score, image, rank,
    tp, ignored), in that order overall: adjacent runs merged pairwise until one is left."""
    src = np.arange(order.shape[0])
    dst = np.empty_like(src)
    bounds = runs.copy()
    while bounds.shape[0] > 2:
        n_runs = bounds.shape[0] - 1
        merged = np.empty((n_runs + 1) // 2 + 1, dtype=np.int64)
        for p in range(0, n_runs, 2):
            lo, mid = bounds[p], bounds[p + 1]
            hi = bounds[p + 2] if p + 2 <= n_runs else mid
            i, j, out = lo, mid, lo
            while i < mid and j < hi:
                a, b = src[i], src[j]
                # does b come strictly before a? (ties take a: the merge is stable)
                if det_class[b] != det_class[a]:
                    b_first = det_class[b] < det_class[a]
                elif score[b] != score[a]:
                    b_first = score[b] > score[a]
                elif image[b] != image[a]:
                    b_first = image[b] < image[a]
                elif rank[b] != rank[a]:
                    b_first = rank[b] < rank[a]
                elif tp[b] != tp[a]:
                    b_first = tp[b] < tp[a]
                else:
                    b_first = ignored[b] < ignored[a]
                if b_first:
                    dst[out] = b
                    j += 1
                else:
                    dst[out] = a
                    i += 1
                out += 1
            while i < mid:
                dst[out] = src[i]
                i += 1
                out += 1
            while j < hi:
                dst[out] = src[j]
                j += 1
                out += 1
            merged[p // 2] = lo
        merged[-1] = bounds[-1]
        bounds = merged
        src, dst = dst, src
    order[:] = src


@kernel
def _merge_two_runs(
    a_class: Any, a_score: Any, a_image: Any, a_rank: Any, a_tp: Any, a_ignored: Any,
    b_class: Any, b_score: Any, b_image: Any, b_rank: Any, b_tp: Any, b_ignored: Any,
    class_out: Any, score_out: Any, image_out: Any, rank_out: Any, tp_out: Any, ignored_out: Any,
) -> None:
    """Merge two runs sorted by (class, -score, image, rank, tp, ignored) into the ``_out``
    columns, by the comparisons of :func:`_merge_sorted_runs` (ties take ``a``), written out again
    because a kernel cannot call another (see :mod:`monitor.metrics._jit`). For two runs a
    permutation, and the concatenation and gather around it, cost 2 to 5 times this pass."""
    n, m = a_class.shape[0], b_class.shape[0]
    i = j = 0
    for out in range(n + m):
        if j == m:
            b_first = False
        elif i == n:
            b_first = True
        elif b_class[j] != a_class[i]:
            b_first = b_class[j] < a_class[i]
        elif b_score[j] != a_score[i]:
            b_first = b_score[j] > a_score[i]
        elif b_image[j] != a_image[i]:
            b_first = b_image[j] < a_image[i]
        elif b_rank[j] != a_rank[i]:
            b_first = b_rank[j] < a_rank[i]
        elif b_tp[j] != a_tp[i]:
            b_first = b_tp[j] < a_tp[i]
        else:
            b_first = b_ignored[j] < a_ignored[i]
        if b_first:
            class_out[out], score_out[out], image_out[out] = b_class[j], b_score[j], b_image[j]
            rank_out[out], tp_out[out], ignored_out[out] = b_rank[j], b_tp[j], b_ignored[j]
            j += 1
        else:
            class_out[out], score_out[out], image_out[out] = a_class[i], a_score[i], a_image[i]
            rank_out[out], tp_out[out], ignored_out[out] = a_rank[i], a_tp[i], a_ignored[i]
            i += 1


@dataclass(frozen=True, slots=True)
class ClassDetectionMetrics:
    """One class: COCO AP and the operating point (score ≥ threshold, IoU ≥ 0.5)."""

    #: AP@[.50:.95], ``None`` without ground truth
    ap: float | None
    ap50: float | None
    ap75: float | None
    #: ground-truth boxes that count (not crowd)
    ground_truth: int
    detections: int
    #: at the operating threshold; ``None`` when undefined (no detections / no ground truth)
    precision: float | None
    recall: float | None
    true_positives: int
    false_positives: int


@dataclass(frozen=True, slots=True)
class DetectionMetrics:
    """COCO summary by name, per-class results, operating point and D-ECE.

    The twelve summary numbers are pycocotools' ``stats`` in order, with ``None`` where
    pycocotools reports -1 (no class has ground truth in that area range).
    """

    ap: float | None
    ap50: float | None
    ap75: float | None
    ap_small: float | None
    ap_medium: float | None
    ap_large: float | None
    ar1: float | None
    ar10: float | None
    ar100: float | None
    ar_small: float | None
    ar_medium: float | None
    ar_large: float | None
    #: by class id; empty when computed with ``per_class=False``
    per_class: Mapping[int, ClassDetectionMetrics]
    score_threshold: float
    #: all classes pooled, at the operating threshold
    precision: float | None
    recall: float | None
    #: detection ECE (confidence bins vs precision) over detections at or above the threshold
    dece: float | None
    dece_bins: tuple[ReliabilityBin, ...]
    n_images: int
    n_detections: int
    n_ground_truth: int

    def summary(self) -> dict[str, float | None]:
        """The twelve COCO summary numbers by name, in pycocotools' order."""
        return {name: getattr(self, name) for name in SUMMARY_NAMES}


SUMMARY_NAMES: Final = (
    "ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large",
    "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large",
)  # fmt: skip


def detection_metrics(
    state: DetectionState, *, score_threshold: float = 0.5, dece_bins: int = 10, per_class: bool = True
) -> DetectionMetrics:
    """pycocotools' ``accumulate`` + ``summarize`` on a state, plus the operating point and D-ECE.

    ``per_class=False`` leaves :attr:`DetectionMetrics.per_class` empty (the summary is the same):
    the per-class table of 80 classes cost as much as the rest of a small window's summary.

    Operating point: detections with score ≥ ``score_threshold`` are matched greedily by score at
    IoU ≥ 0.5 (the COCO match; a detection's match never depends on lower-scored ones, so this is
    the COCO matching cut at the threshold). A match to a crowd region counts neither way;
    precision = TP / (TP + FP), recall = TP / non-crowd ground truth. No ``maxDets`` cap.

    D-ECE (Küppers et al. 2020, confidence only): the same detections in ``dece_bins``
    equal-width score bins ``[e_k, e_k+1)`` (last closed), per bin |precision − mean score|,
    weighted by the bin's share of detections; netcal's ``ECE(detection=True)`` on
    (score, matched).
    """
    if dece_bins < 1:
        raise ValueError(f"dece_bins must be at least 1, got {dece_bins}")
    starts, ends = _class_segments(state)
    precision_sum, recall = _accumulate(state, (starts, ends))
    k = state.classes.size
    # the operating point per class and the D-ECE bins in one pass over the detections: a dozen
    # numpy passes over them would cost half as much as the COCO accumulation itself
    tps_array, fps_array = np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
    edges = _dece_edges(dece_bins)
    bin_counts, bin_hits = np.zeros(dece_bins, dtype=np.int64), np.zeros(dece_bins, dtype=np.int64)
    bin_score_sums = np.zeros(dece_bins)
    _operating_point(
        starts, ends, state.score, state.tp, state.ignored, float(score_threshold), edges,
        tps_array, fps_array, bin_counts, bin_score_sums, bin_hits,
    )  # fmt: skip
    tps, fps = tps_array.tolist(), fps_array.tolist()
    classes: dict[int, ClassDetectionMetrics] = {}
    if per_class:
        ap = _defined_means(precision_sum[0], axes=(0,))
        ap50 = _defined_means(precision_sum[0, :1], axes=(0,))
        ap75 = _defined_means(precision_sum[0, 5:6], axes=(0,))
        n_gt = state.gt_counts[:, 0].tolist() if k else []
        n_det = (ends - starts).tolist()
        classes = {
            cls: ClassDetectionMetrics(
                ap=ap[i], ap50=ap50[i], ap75=ap75[i], ground_truth=n_gt[i], detections=n_det[i],
                precision=tps[i] / (tps[i] + fps[i]) if tps[i] + fps[i] else None,
                recall=tps[i] / n_gt[i] if n_gt[i] else None,
                true_positives=tps[i], false_positives=fps[i],
            )
            for i, cls in enumerate(state.classes.tolist())
        }  # fmt: skip
    all_tp = sum(tps)
    all_fp = sum(fps)
    all_gt = int(state.gt_counts[:, 0].sum()) if k else 0
    dece, bins = _dece(edges, bin_counts, bin_score_sums, bin_hits)
    a_small, a_medium, a_large = 1, 2, 3
    return DetectionMetrics(
        ap=_mean_defined(precision_sum[0], per_entry=N_REC),
        ap50=_mean_defined(precision_sum[0, 0], per_entry=N_REC),
        ap75=_mean_defined(precision_sum[0, 5], per_entry=N_REC),
        ap_small=_mean_defined(precision_sum[a_small], per_entry=N_REC),
        ap_medium=_mean_defined(precision_sum[a_medium], per_entry=N_REC),
        ap_large=_mean_defined(precision_sum[a_large], per_entry=N_REC),
        ar1=_mean_defined(recall[0, 0]),
        ar10=_mean_defined(recall[0, 1]),
        ar100=_mean_defined(recall[0, 2]),
        ar_small=_mean_defined(recall[a_small, 2]),
        ar_medium=_mean_defined(recall[a_medium, 2]),
        ar_large=_mean_defined(recall[a_large, 2]),
        per_class=classes,
        score_threshold=float(score_threshold),
        precision=all_tp / (all_tp + all_fp) if all_tp + all_fp else None,
        recall=all_tp / all_gt if all_gt else None,
        dece=dece,
        dece_bins=bins,
        n_images=state.n_images,
        n_detections=state.n_detections,
        n_ground_truth=all_gt,
    )


def _class_segments(state: DetectionState) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Where each class's detections start and end (detections are sorted by class)."""
    return np.searchsorted(state.det_class, state.classes, side="left"), np.searchsorted(state.det_class, state.classes, side="right")


def _accumulate(
    state: DetectionState, segments: tuple[NDArray[np.intp], NDArray[np.intp]] | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Precision at the largest maxDets summed over the recall points ``(A, T, K)``, and recall
    ``(A, M, T, K)``; -1 where undefined.

    pycocotools keeps precision ``(T, R, K, A, M)`` and recall ``(T, K, A, M)`` and averages them
    in ``summarize``. Precision at maxDets 1 and 10 is never summarised (AP is read at maxDets 100
    only), and every average of precision is over whole rows of recall points (a class and
    threshold is defined for all 101 or for none), so the kernel keeps one sum per row: the
    (A, T, R, K) array of 80 classes was most of the time of a small window.
    """
    k_count = state.classes.size
    precision_sum = -np.ones((N_AREA, N_IOU, k_count))
    recall = -np.ones((N_AREA, len(MAX_DETS), N_IOU, k_count))
    starts, ends = _class_segments(state) if segments is None else segments
    _accumulate_classes(
        starts, ends, state.rank, state.tp, state.ignored, state.gt_counts,
        np.array(MAX_DETS, dtype=np.int64), N_IOU, RECALL_THRESHOLDS, precision_sum, recall,
    )  # fmt: skip
    return precision_sum, recall


@kernel
def _accumulate_classes(
    starts: Any,
    ends: Any,
    rank: Any,
    tp: Any,
    ignored: Any,
    gt_counts: Any,
    max_dets: Any,
    n_thr: int,
    rec_thrs: Any,
    precision_sum: Any,
    recall: Any,
) -> None:
    """pycocotools' ``accumulate`` on the sorted detections of each class.

    Per class, maxDets cut, area range and IoU threshold, pycocotools takes cumulative true /
    false positives over the detections in order (ignored ones count as neither), recall
    ``tp / npig`` and precision ``tp / (tp + fp + eps)`` at every detection, makes precision
    non-increasing from the right, and reads it at the first detection whose recall reaches each
    of the 101 recall points (0 past the last).

    One pass per class visits, for each detection, only the flag bits it sets (a detection that
    is a false positive at every area and threshold sets none): true positives are counted by
    the smallest maxDets cut that holds them, and false positives are the detections so far less
    the true positives and ignored ones, an exact integer. Forty passes of every detection, and a
    bit loop per detection and cut for recall, took twice as long.

    Recall is the true positives of the cut over ``npig``. Precision (at the last cut only), summed
    over the recall points in their order, takes a division per true positive rather than two
    per detection: recall only rises at a true
    positive, so every read lands on one (or on the first detection, for recall point 0); and
    between two true positives precision only falls (same ``tp``, more ``fp``, and correctly
    rounded division is monotone), so the running maximum from the right over true positives
    equals pycocotools' over all detections. Each value is computed by the same floating-point
    operations as pycocotools', so the recall and each summed precision agree bit for bit with
    pycocotools' arrays (the oracle tests compare with ``==``).
    """
    n_area = gt_counts.shape[1]
    eps = np.spacing(1.0)
    n_rec = rec_thrs.shape[0]
    n_cuts = max_dets.shape[0]
    largest_cut = max_dets[n_cuts - 1]
    n_bits = n_area * n_thr
    longest = 1
    for k in range(starts.shape[0]):
        longest = max(longest, ends[k] - starts[k])
    tp_in_cut = np.zeros((n_cuts, n_bits), dtype=np.int64)  # true positives by smallest cut
    tp_seen = np.zeros(n_bits, dtype=np.int64)
    ignored_seen = np.zeros(n_bits, dtype=np.int64)
    pr = np.empty((n_bits, longest))  # precision at each true positive, per bit, in order
    reads = np.empty(n_rec, dtype=np.int64)  # the true positive each recall point reads
    for k in range(starts.shape[0]):
        tp_in_cut[:, :] = 0
        tp_seen[:] = 0
        ignored_seen[:] = 0
        # one pass over the class's detections, visiting only the bits a detection sets: a false
        # positive everywhere sets none, and its count follows from the others
        # (fp = detections so far - true positives - ignored)
        n_det = 0
        for i in range(starts[k], ends[k]):
            if rank[i] >= largest_cut:
                continue
            n_det += 1
            flags = tp[i] | ignored[i]
            cut = 0
            while rank[i] >= max_dets[cut]:
                cut += 1
            b = 0
            while flags != 0:
                if flags & 1:
                    if (tp[i] >> b) & 1:
                        tp_in_cut[cut, b] += 1
                        tp_seen[b] += 1
                        tps = float(tp_seen[b])
                        fps = float(n_det - tp_seen[b] - ignored_seen[b])
                        pr[b, tp_seen[b] - 1] = tps / (fps + tps + eps)
                    else:
                        ignored_seen[b] += 1
                flags >>= 1
                b += 1
        for a in range(n_area):
            npig = gt_counts[k, a]
            if npig == 0:
                continue  # no ground truth that counts: stays -1
            # which true positive each recall point reads depends on npig alone, not on the
            # threshold: found once per area, by the same comparisons (a division each) that
            # pycocotools' searchsorted makes, for the area's ten thresholds
            most = 0
            for t in range(n_thr):
                most = max(most, tp_seen[a * n_thr + t])
            i = 0
            for r in range(n_rec):
                while i < most and (i + 1.0) / npig < rec_thrs[r]:
                    i += 1
                reads[r] = i
            for t in range(n_thr):
                b = a * n_thr + t
                found = 0
                for m in range(n_cuts):
                    found += tp_in_cut[m, b]
                    recall[a, m, t, k] = found / npig
                n_tp = tp_seen[b]
                for i in range(n_tp - 1, 0, -1):
                    pr[b, i - 1] = max(pr[b, i - 1], pr[b, i])
                # recall point 0 reads the first detection: the best precision of all, or 0
                # without a true positive (every precision before the first one is 0)
                total = 0.0
                first = 0
                if rec_thrs[0] <= 0.0:
                    total += pr[b, 0] if n_tp else 0.0
                    first = 1
                for r in range(first, n_rec):
                    if reads[r] >= n_tp:
                        break  # recall points past the last true positive read 0: the sum is final
                    total += pr[b, reads[r]]
                precision_sum[a, t, k] = total


def _mean_defined(values: NDArray[np.float64], per_entry: int = 1) -> float | None:
    """pycocotools' ``mean(s[s > -1])``, ``None`` instead of -1 when nothing is defined;
    ``per_entry``: each value is a sum of that many of pycocotools' entries."""
    defined = values[values > -1]
    if not defined.size:
        return None
    # np.mean's own arithmetic (a pairwise sum, one division) without its argument handling
    return float(defined.sum() / defined.size) if per_entry == 1 else float(defined.sum()) / (defined.size * per_entry)


def _defined_means(sums: NDArray[np.float64], axes: tuple[int, ...]) -> list[float | None]:
    """Per class (the last axis), the mean precision over its defined rows of recall points."""
    defined = sums > -1
    counts = defined.sum(axis=axes).tolist()
    totals = np.where(defined, sums, 0.0).sum(axis=axes).tolist()
    return [total / (n * N_REC) if n else None for total, n in zip(totals, counts, strict=True)]


@functools.cache
def _dece_edges(n_bins: int) -> NDArray[np.float64]:
    """The D-ECE bin edges, made once per bin count."""
    return readonly(np.linspace(0.0, 1.0, n_bins + 1))


@kernel
def _operating_point(
    starts: Any,
    ends: Any,
    score: Any,
    tp: Any,
    ignored: Any,
    threshold: float,
    edges: Any,
    tps: Any,
    fps: Any,
    bin_counts: Any,
    bin_score_sums: Any,
    bin_hits: Any,
) -> None:
    """Per class, the true and false positives at IoU 0.50 (flag bit 0) among detections scoring
    at least ``threshold``; of those not ignored, the D-ECE bins: count, score sum and true
    positives per bin of ``edges`` (``[e_k, e_k+1)``, the last one closed: numpy's
    ``searchsorted(edges, score, "right") - 1`` clipped to the bins). Scores are added in
    detection order, as ``np.bincount`` adds its weights."""
    n_bins = edges.shape[0] - 1
    for k in range(starts.shape[0]):
        for i in range(starts[k], ends[k]):
            s = score[i]
            if not s >= threshold:
                continue
            hit = tp[i] & 1
            if hit:
                tps[k] += 1
            elif not ignored[i] & 1:
                fps[k] += 1
            if ignored[i] & 1:
                continue
            above = 0
            while above <= n_bins and edges[above] <= s:
                above += 1
            slot = min(max(above - 1, 0), n_bins - 1)
            bin_counts[slot] += 1
            bin_score_sums[slot] += s
            bin_hits[slot] += hit


def _dece(
    edges: NDArray[np.float64], counts_array: NDArray[np.int64], score_sums_array: NDArray[np.float64], hits_array: NDArray[np.int64]
) -> tuple[float | None, tuple[ReliabilityBin, ...]]:
    """D-ECE and its bins from the per-bin count, score sum and true positives."""
    counts, score_sums, hits = counts_array.tolist(), score_sums_array.tolist(), hits_array.tolist()
    n = sum(counts)
    bounds = edges.tolist()
    bins = []
    total = 0.0
    for k, cnt in enumerate(counts):
        if cnt == 0:
            bins.append(ReliabilityBin(bounds[k], bounds[k + 1], 0, None, None))
            continue
        conf = score_sums[k] / cnt
        prec = hits[k] / cnt
        total += abs(prec - conf) * (cnt / n)
        bins.append(ReliabilityBin(bounds[k], bounds[k + 1], cnt, conf, prec))
    return (total if n else None), tuple(bins)
