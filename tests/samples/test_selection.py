"""Selection scores and k-center greedy against independent oracles (scipy, scikit-learn, brute force)."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.server.services import selection


@pytest.fixture
def probs() -> np.ndarray:
    return np.random.default_rng(0).dirichlet(np.ones(5) * 0.5, size=200)


def test_uncertainty_scores_match_their_definitions(probs: np.ndarray) -> None:
    from scipy import stats

    assert selection.least_confidence(probs) == pytest.approx(1 - probs.max(axis=1))
    ordered = np.sort(probs, axis=1)
    assert selection.margin(probs) == pytest.approx(1 - (ordered[:, -1] - ordered[:, -2]))
    assert selection.entropy(probs) == pytest.approx(stats.entropy(probs, axis=1) / np.log(5))
    assert selection.total_variation(probs[:100], probs[100:]) == pytest.approx(0.5 * np.abs(probs[:100] - probs[100:]).sum(axis=1))


def test_distance_to_reference_matches_nearest_neighbours() -> None:
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(1)
    reference, points = rng.normal(size=(500, 16)), rng.normal(size=(300, 16)) + 0.5
    distances, _ = NearestNeighbors(n_neighbors=5).fit(reference).kneighbors(points)
    assert selection.distance_to_reference(points, reference, chunk=64) == pytest.approx(distances.mean(axis=1), rel=1e-6)


def test_kcenter_greedy_picks_the_farthest_point_each_time() -> None:
    rng = np.random.default_rng(2)
    points = rng.normal(size=(60, 3))
    chosen = selection.kcenter_greedy(points, 8)
    for step in range(1, len(chosen)):
        d = np.linalg.norm(points[:, None, :] - points[None, chosen[:step], :], axis=2).min(axis=1)
        assert chosen[step] == int(np.argmax(d))


def test_select_keeps_budgets_and_spreads_over_the_embeddings() -> None:
    rng = np.random.default_rng(3)
    # two tight clusters of equally uncertain items, and a few far ones scored a little lower
    embeddings = np.vstack([rng.normal(0, 0.01, (40, 2)), rng.normal(5, 0.01, (40, 2)), rng.normal(-5, 0.01, (4, 2))])
    scores = np.concatenate([np.full(80, 0.9), np.full(4, 0.85)])
    classes = np.array([0] * 40 + [1] * 40 + [2] * 4)
    plain = selection.select(scores, classes, 6)
    assert plain == [0, 1, 2, 3, 4, 5]  # the best scores as they come: one cluster
    diverse = selection.select(scores, classes, 6, embeddings=embeddings, pool_factor=20)
    assert {int(classes[i]) for i in diverse} == {0, 1, 2}
    capped = selection.select(scores, classes, 10, budgets={0: 1}, per_class=2)
    assert sorted(int(classes[i]) for i in capped) == [0, 1, 1, 2, 2]


def test_detection_scores() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=float)
    same = (boxes, np.array([0, 0, 1], dtype=np.int32))
    assert selection.box_disagreement(same, same, 0.5) == 0.0
    moved = boxes.copy()
    moved[2] += 30
    assert selection.box_disagreement(same, (moved, same[1]), 0.5) == pytest.approx(1 - 2 * 2 / 6)  # two of three match
    assert selection.box_disagreement(same, (boxes + 30, same[1]), 0.5) == 1.0
    assert selection.box_disagreement((boxes[:0], same[1][:0]), (boxes[:0], same[1][:0]), 0.5) == 0.0
    # a confident box overlapping one of another class: likely a false positive
    overlap = selection.false_positive(boxes, np.array([0, 1, 1], dtype=np.int32), np.array([0.99, 0.98, 0.97]), 0.5)
    alone = selection.false_positive(boxes, np.array([0, 0, 1], dtype=np.int32), np.array([0.99, 0.98, 0.97]), 0.5)
    near = selection.false_positive(boxes[2:], np.array([1], dtype=np.int32), np.array([0.52]), 0.5)
    assert overlap > 0.6 > alone and near > 0.9
    assert selection.box_uncertainty([np.array([0.5, 0.99]), np.array([]), np.array([0.9])]) == pytest.approx([1.0, 0.0, 0.2])
