"""Detection features (boxes per image, box areas) and drift tests on them."""

from __future__ import annotations

import numpy as np
import pytest
from drift_trials import MAX_FALSE_ALARM_RATE, NULL_TRIALS, PairSampler, flag_rate

from detectors import KSDrift, WassersteinDrift, box_areas, boxes_per_image


def test_boxes_per_image_counts_boxes_at_the_operating_threshold() -> None:
    boxes = [np.zeros((0, 4)), [[0, 0, 10, 10], [5, 5, 6, 6]], [[0, 0, 1, 2]]]
    scores = [np.zeros(0), [0.9, 0.3], [0.5]]
    assert boxes_per_image(boxes).tolist() == [0, 2, 1]
    assert boxes_per_image(boxes, scores=scores, min_score=0.5).tolist() == [0, 1, 1]


def test_box_areas_in_pixels_or_image_fractions() -> None:
    boxes = [[[0, 0, 10, 20]], [[10, 10, 30, 30], [0, 0, 1, 1]]]
    assert box_areas(boxes).tolist() == [200.0, 400.0, 1.0]
    fractions = box_areas(boxes, image_sizes=[[100, 100], [40, 50]])
    np.testing.assert_allclose(fractions, [0.02, 0.2, 0.0005])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"min_score": 0.5}, "scores are needed", id="threshold-without-scores"),
        pytest.param({"min_score": 0.5, "scores": [[0.9, 0.8]]}, "1 boxes but 2 scores", id="score-count-mismatch"),
        pytest.param({"image_sizes": [[10, 10], [10, 10]]}, "2 rows for 1 images", id="image-size-count-mismatch"),
    ],
)
def test_inconsistent_detection_inputs_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        box_areas([[[0, 0, 1, 1]]], **kwargs)  # type: ignore[arg-type]


def detections(n_images: int, mean_boxes: float, size_scale: float = 1.0) -> PairSampler:
    """Synthetic detector output: Poisson box counts, log-normal box sizes in a 640 × 480 frame."""

    def draw(rng: np.random.Generator, mean: float, scale: float) -> list[np.ndarray]:
        images = []
        for k in rng.poisson(mean, n_images):
            wh = np.exp(rng.normal(3.5, 0.6, (k, 2))) * scale
            xy = rng.random((k, 2)) * [640, 480]
            images.append(np.hstack([xy, xy + wh]))
        return images

    def sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return draw(rng, 3.0, 1.0), draw(rng, mean_boxes, size_scale)  # type: ignore[return-value]

    return sample


def per_image_counts(sampler: PairSampler) -> PairSampler:
    return lambda rng: tuple(boxes_per_image(x) for x in sampler(rng))  # type: ignore[return-value]


def areas(sampler: PairSampler) -> PairSampler:
    return lambda rng: tuple(box_areas(x) for x in sampler(rng))  # type: ignore[return-value]


def test_boxes_per_image_no_shift_false_alarm_rate_holds() -> None:
    # Integer counts are full of ties: the permutation p-value stays exact.
    rate = flag_rate(lambda s: WassersteinDrift(seed=s), per_image_counts(detections(200, 3.0)), NULL_TRIALS, 11)
    assert rate <= MAX_FALSE_ALARM_RATE


def test_box_area_no_shift_false_alarm_rate_holds() -> None:
    rate = flag_rate(lambda s: KSDrift(seed=s), areas(detections(100, 3.0)), NULL_TRIALS, 12)
    assert rate <= MAX_FALSE_ALARM_RATE


def test_more_boxes_per_image_is_detected() -> None:
    rate = flag_rate(lambda s: WassersteinDrift(seed=s), per_image_counts(detections(200, 4.0)), 30, 13)
    assert rate >= 0.9


def test_smaller_boxes_are_detected() -> None:
    # Objects 20 % smaller (a camera moved back): a quarter σ in log-size, ~300 boxes per side.
    rate = flag_rate(lambda s: KSDrift(seed=s), areas(detections(100, 3.0, size_scale=0.8)), 30, 14)
    assert rate >= 0.9
