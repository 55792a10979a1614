"""Store and reload fitted detectors: JSON-safe dicts or compact bytes, never pickle.

The service stores ``to_bytes(detector)`` (or ``detector.to_dict()`` in a JSON column) with the
reference window it was fitted on and rebuilds it with :func:`from_bytes` / :func:`from_dict`
for every scheduled run, so a reference is summarised once per model version, not per run.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from typing import Any, Final

from detectors.base import Detector, SummaryError
from detectors.chisquare import ChiSquareDrift
from detectors.classifier import ClassifierDrift
from detectors.evidently import EvidentlyColumnDrift, EvidentlyEmbeddingDrift
from detectors.jsd import JensenShannonDrift
from detectors.ks import KSDrift
from detectors.mmd import MMDDrift
from detectors.pcaks import PCAKSDrift
from detectors.psi import PSIDrift
from detectors.wasserstein import WassersteinDrift

#: Every storable detector by its ``method`` name. An explicit table: nothing registers itself on import.
DETECTORS: Final[Mapping[str, type[Detector]]] = {
    cls.method: cls
    for cls in (
        ChiSquareDrift,
        ClassifierDrift,
        EvidentlyColumnDrift,
        EvidentlyEmbeddingDrift,
        JensenShannonDrift,
        KSDrift,
        MMDDrift,
        PCAKSDrift,
        PSIDrift,
        WassersteinDrift,
    )
}


def from_dict(data: Mapping[str, Any]) -> Detector:
    """Rebuild a fitted detector of any method from its :meth:`Detector.to_dict` output."""
    method = data.get("method")
    if not isinstance(method, str) or method not in DETECTORS:
        raise SummaryError(f"unknown detector method {method!r}; known: {sorted(DETECTORS)}")
    return DETECTORS[method].from_dict(data)


def to_bytes(detector: Detector) -> bytes:
    """The fitted detector as zlib-compressed UTF-8 JSON, for a database ``bytea`` / BLOB column."""
    return zlib.compress(json.dumps(detector.to_dict(), separators=(",", ":"), allow_nan=False).encode())


def from_bytes(data: bytes) -> Detector:
    """Rebuild a fitted detector from :func:`to_bytes` output."""
    try:
        payload = json.loads(zlib.decompress(data))
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SummaryError(f"not a stored detector: {exc}") from exc
    if not isinstance(payload, dict):
        raise SummaryError("not a stored detector: expected a JSON object")
    return from_dict(payload)
