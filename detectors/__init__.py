"""Drift detectors for computer-vision models: pure numpy in, :class:`DriftResult` out.

Every detector has ``fit(reference) -> self`` and ``score(current) -> DriftResult``; scoring never
changes the detector, and a fitted detector stores as JSON (``to_dict`` / :func:`from_dict`) or
bytes (:func:`to_bytes` / :func:`from_bytes`).

=========================  =====================================  ==============================
input                      detectors                              reference summary
=========================  =====================================  ==============================
embeddings (n × d)         MMDDrift, ClassifierDrift, PCAKSDrift,  bounded uniform sample / PCA
                           EvidentlyEmbeddingDrift                 projections
class labels (n,)          ChiSquareDrift, PSIDrift,               class counts
                           JensenShannonDrift
scores (n,)                KSDrift, WassersteinDrift, PSIDrift,    bounded sample / bin edges
                           JensenShannonDrift                      and counts
metadata columns (n × k)   EvidentlyColumnDrift                    bounded sample
=========================  =====================================  ==============================

Every detector takes ``floor=EffectFloor()`` for an effect-size floor calibrated on the reference
(:mod:`detectors.floor`): a window is flagged when the test rejects and the effect is above it.

Detection outputs become scores with :func:`boxes_per_image` and :func:`box_areas`. Label-free
performance estimates: :class:`LabelFreeAccuracy`, :class:`LabelFreeDetectionPrecision`.

scipy, scikit-learn and evidently are imported only inside the methods that need them.
"""

from detectors.base import Detector, DriftResult, NotFittedError, SummaryError
from detectors.chisquare import ChiSquareDrift
from detectors.classifier import ClassifierDrift
from detectors.detection import box_areas, boxes_per_image
from detectors.estimate import AccuracyEstimate, LabelFreeAccuracy, LabelFreeDetectionPrecision
from detectors.evidently import EvidentlyColumnDrift, EvidentlyEmbeddingDrift
from detectors.floor import EffectFloor
from detectors.jsd import JensenShannonDrift
from detectors.ks import KSDrift
from detectors.mmd import MMDDrift
from detectors.pcaks import PCAKSDrift
from detectors.psi import PSIDrift
from detectors.serial import from_bytes, from_dict, to_bytes
from detectors.wasserstein import WassersteinDrift

__all__ = [
    "AccuracyEstimate",
    "ChiSquareDrift",
    "ClassifierDrift",
    "Detector",
    "DriftResult",
    "EffectFloor",
    "EvidentlyColumnDrift",
    "EvidentlyEmbeddingDrift",
    "JensenShannonDrift",
    "KSDrift",
    "LabelFreeAccuracy",
    "LabelFreeDetectionPrecision",
    "MMDDrift",
    "NotFittedError",
    "PCAKSDrift",
    "PSIDrift",
    "SummaryError",
    "WassersteinDrift",
    "box_areas",
    "boxes_per_image",
    "from_bytes",
    "from_dict",
    "to_bytes",
]
