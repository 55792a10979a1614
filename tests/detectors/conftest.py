"""Fixtures for the detector tests: real digits through a real classifier, trained once per session.

Every random choice is seeded, so the measured rates are the same on every run.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from drift_trials import Digits

from testkit import digits as drift_digits


@pytest.fixture(scope="session", autouse=True)
def single_threaded_blas() -> Iterator[None]:
    """Run BLAS on one thread: the trials multiply small matrices, where OpenBLAS's second thread
    only adds synchronisation, and on a shared 2-core machine it makes them 5-10x slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="session")
def digits() -> Digits:
    model = drift_digits.train_digits_model()
    images = np.concatenate([model.images, model.train_images])
    labels = np.concatenate([model.labels, model.train_labels])
    return Digits(
        model=model,
        images=images,
        labels=labels,
        embeddings=model.embed(images),
        rotated_10=model.embed(drift_digits.rotate(images, 10.0)),
        probabilities=model.predict_proba(images),
    )
