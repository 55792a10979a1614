"""Real image data for drift tests and benchmarks: scikit-learn's bundled digits through a real classifier.

Independent of :mod:`detectors` so the demo can stream the same data later. Nothing is downloaded:
``load_digits`` ships with scikit-learn (1 797 images of 8×8 pixels, values 0–16).

The classifier is an ``MLPClassifier`` with one ReLU hidden layer; the embedding of an image is that
hidden-layer activation, computed from the fitted ``coefs_`` and ``intercepts_`` exactly as the
network computes it. Shifts are real image transforms on the 8×8 images (scipy.ndimage).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Pixel range of the digits images: 4-bit grey levels.
PIXEL_MAX = 16.0


@dataclasses.dataclass(frozen=True)
class DigitsModel:
    """A trained digits classifier and the images it was not trained on.

    Attributes
    ----------
    classifier
        The fitted ``sklearn.neural_network.MLPClassifier``.
    images
        Held-out images, shape ``(n, 8, 8)``, float64 in ``[0, 16]``.
    labels
        True digit of each held-out image, shape ``(n,)``.
    train_images, train_labels
        The labelled data the classifier was trained on (kept for calibration experiments).
    """

    classifier: Any
    images: NDArray[np.float64]
    labels: NDArray[np.int64]
    train_images: NDArray[np.float64]
    train_labels: NDArray[np.int64]

    def embed(self, images: NDArray[np.float64]) -> NDArray[np.float64]:
        """Hidden-layer (ReLU) activations of ``images``: the model's embedding, shape ``(n, hidden)``."""
        x = images.reshape(len(images), -1)
        return np.maximum(x @ self.classifier.coefs_[0] + self.classifier.intercepts_[0], 0.0)

    def predict_proba(self, images: NDArray[np.float64]) -> NDArray[np.float64]:
        """Class probabilities of ``images``, shape ``(n, 10)``."""
        return np.asarray(self.classifier.predict_proba(images.reshape(len(images), -1)))


@functools.cache
def train_digits_model(*, hidden: int = 64, train_fraction: float = 0.5, seed: int = 0) -> DigitsModel:
    """Train the digits classifier once per process (cached) and keep the held-out images.

    Parameters
    ----------
    hidden
        Width of the hidden layer, i.e. the embedding dimension.
    train_fraction
        Fraction of the 1 797 images used for training; the rest are held out for drift windows.
    seed
        Seed of the split and of the network's initialisation.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    digits = load_digits()
    images = digits.images.astype(np.float64)
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, train_size=train_fraction, random_state=seed, stratify=labels
    )
    # alpha (L2) keeps the network from being overconfident, so its confidences mean something to calibrate.
    clf = MLPClassifier(hidden_layer_sizes=(hidden,), alpha=1e-2, max_iter=600, random_state=seed)
    clf.fit(x_train.reshape(len(x_train), -1), y_train)
    return DigitsModel(clf, x_test, y_test, x_train, y_train)


def rotate(images: NDArray[np.float64], degrees: float) -> NDArray[np.float64]:
    """Rotate each image about its centre by ``degrees`` (bilinear, same 8×8 frame)."""
    from scipy import ndimage

    out = ndimage.rotate(images, degrees, axes=(2, 1), reshape=False, order=1, mode="constant")
    return np.clip(out, 0.0, PIXEL_MAX)


def blur(images: NDArray[np.float64], sigma: float) -> NDArray[np.float64]:
    """Gaussian blur of each image with standard deviation ``sigma`` pixels."""
    from scipy import ndimage

    return np.asarray(ndimage.gaussian_filter(images, sigma=(0.0, sigma, sigma)))


def add_noise(images: NDArray[np.float64], std: float, rng: np.random.Generator) -> NDArray[np.float64]:
    """Add Gaussian pixel noise of standard deviation ``std`` grey levels, clipped to the pixel range."""
    return np.clip(images + rng.normal(0.0, std, images.shape), 0.0, PIXEL_MAX)


def brighten(images: NDArray[np.float64], factor: float) -> NDArray[np.float64]:
    """Multiply pixel values by ``factor`` (a camera gain change), clipped to the pixel range."""
    return np.clip(images * factor, 0.0, PIXEL_MAX)
