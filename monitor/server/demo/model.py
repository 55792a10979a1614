"""The demo's model: an MLP trained on scikit-learn's bundled digits, exported to ONNX with its
hidden layer as a second output (the embedding).

Nothing is downloaded: ``load_digits`` ships with scikit-learn (1 797 images of 8×8 pixels,
grey levels 0–16). Half the images train the network; the other half are the "camera" traffic.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASSES = tuple(str(d) for d in range(10))
INPUT = "X"
PROBABILITIES = "probabilities"
HIDDEN = "hidden"
#: Pixel range of the digits images: 4-bit grey levels.
PIXEL_MAX = 16.0


@dataclass(frozen=True)
class Digits:
    """The exported model and the held-out images it was not trained on."""

    onnx: bytes
    images: np.ndarray  # (n, 8, 8) float32 in [0, 16]
    labels: np.ndarray  # (n,) int64
    hidden: int


def train(*, hidden: int = 32, seed: int = 0, cache_dir: Path | None = None) -> Digits:
    """Train (or load from ``cache_dir``) the classifier and export it to ONNX."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32)
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(images, labels, train_size=0.5, random_state=seed, stratify=labels)
    cached = None
    if cache_dir is not None:
        import sklearn

        key = hashlib.sha256(f"{hidden}-{seed}-{sklearn.__version__}".encode()).hexdigest()[:12]
        cached = cache_dir / f"digits-{key}.onnx"
        if cached.exists():
            return Digits(cached.read_bytes(), x_test, y_test, hidden)
    onnx_bytes = _fit_and_export(x_train, y_train, hidden, seed)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        tmp.write_bytes(onnx_bytes)
        tmp.rename(cached)
    return Digits(onnx_bytes, x_test, y_test, hidden)


def _fit_and_export(x: np.ndarray, y: np.ndarray, hidden: int, seed: int) -> bytes:
    import warnings

    from onnx import TensorProto, helper
    from skl2onnx import to_onnx
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    flat = x.reshape(len(x), -1)
    clf = MLPClassifier(hidden_layer_sizes=(hidden,), alpha=1e-2, max_iter=400, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(flat, y)
    model = to_onnx(clf, flat[:1], options={id(clf): {"zipmap": False}}, target_opset=17)
    graph = model.graph
    # skl2onnx writes the hidden layer as MatMul -> Add -> Relu: expose the Relu's output.
    relu = next(node for node in graph.node if node.op_type == "Relu")
    graph.node.append(helper.make_node("Identity", [relu.output[0]], [HIDDEN], name="embedding"))
    graph.output.append(helper.make_tensor_value_info(HIDDEN, TensorProto.FLOAT, [None, hidden]))
    return bytes(model.SerializeToString())


def drift(images: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """What a camera knocked askew, out of focus and over-exposed shows: rotation up to
    ``25° × severity``, Gaussian blur and a brightness gain, on a batch of (n, 8, 8) images."""
    from scipy import ndimage

    if severity <= 0:
        return images
    angle = float(rng.uniform(15.0, 25.0)) * severity * (1 if rng.random() < 0.5 else -1)
    out = ndimage.rotate(images, angle, axes=(2, 1), reshape=False, order=1, mode="constant")
    out = ndimage.gaussian_filter(out, sigma=(0.0, 0.6 * severity, 0.6 * severity))
    out = out * (1.0 + 0.6 * severity)
    return np.clip(out, 0.0, PIXEL_MAX).astype(np.float32)
