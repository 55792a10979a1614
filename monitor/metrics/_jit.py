"""Compiled kernels without a hard dependency on a compiler.

The hot loops of :mod:`monitor.metrics` (the per-image COCO matching, the per-row scan of class
probabilities) are written once, as plain Python over numpy arrays, and decorated with
:func:`kernel`. On the first call the decorator imports numba (in the ``server`` extra) and
compiles the function with ``njit(cache=True)``, so the compile cost is paid once per machine,
not per process. Without numba the very same function runs as Python: correct, and fine for
the small windows of a unit test, but far too slow for a million rows.

numba is imported lazily because ``import monitor.metrics`` must stay standard library + numpy
(an inference process imports the package; numba costs ~0.5 s and 60 MB to import).

Kernels must be self-contained: one kernel cannot call another, since what a kernel sees in its
module globals is the Python wrapper, not the compiled function.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["kernel"]

F = TypeVar("F", bound=Callable[..., Any])


def kernel(fn: F) -> F:
    """Compile ``fn`` with numba on its first call; run it as Python when numba is missing."""
    compiled: Callable[..., Any] | None = None
    lock = threading.Lock()

    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        nonlocal compiled
        if compiled is None:
            with lock:  # one thread compiles (or loads from numba's cache); the others wait for it
                if compiled is None:
                    compiled = _compile(fn)
        return compiled(*args)

    call.py_func = fn  # type: ignore[attr-defined]
    return call  # type: ignore[return-value]


def _compile(fn: Callable[..., Any]) -> Callable[..., Any]:
    try:
        import numba
    except ImportError:
        return fn
    # nogil: a scheduler thread computing metrics does not stall the API threads beside it.
    compiled: Callable[..., Any] = numba.njit(cache=True, nogil=True)(fn)
    return compiled
