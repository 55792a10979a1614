"""Fixtures for the drift job tests: the digits classifier of bench/drift_digits.py (real hidden-
layer embeddings and confidences, real image transforms), trained once per session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session", autouse=True)
def single_threaded_blas() -> Iterator[None]:
    """The jobs multiply small matrices, where a second BLAS thread on a shared 2-core machine only
    adds synchronisation."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="session")
def digits() -> Any:
    from testkit import digits as drift_digits

    return drift_digits.train_digits_model()
