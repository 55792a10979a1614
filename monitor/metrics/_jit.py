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

:func:`kernels_idle` holds new kernel calls off until none is running, for a process that forks
while other threads compute metrics: numba takes locks of its own while it compiles (or loads a
compiled kernel from its cache), and a child forked while another thread held one would wait for
it forever the first time it compiles a kernel itself.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

__all__ = ["kernel", "kernels_idle"]

F = TypeVar("F", bound=Callable[..., Any])


def kernel(fn: F) -> F:
    """Compile ``fn`` with numba on its first call; run it as Python when numba is missing."""
    compiled: Callable[..., Any] | None = None

    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        nonlocal compiled
        global _running
        with _calls:
            while _forking:
                _calls.wait()
            _running += 1
        try:
            if compiled is None:
                compiled = _compile(fn)
            return compiled(*args)
        finally:
            with _calls:
                _running -= 1
                if not _running:
                    _calls.notify_all()

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



#: Kernel calls in progress (compiles included), and whether a fork is waiting for there to be none.
_calls = threading.Condition(threading.Lock())
_running = 0
_forking = False


@contextlib.contextmanager
def kernels_idle() -> Iterator[None]:
    """While held, no thread runs (or compiles) a kernel, and none is inside numba's compiler or
    LLVM: hold it across ``os.fork``. Kernel calls that start meanwhile wait for it."""
    global _forking
    with _calls:
        while _forking:  # another thread's fork
            _calls.wait()
        _forking = True
        while _running:
            _calls.wait()
    try:
        with contextlib.ExitStack() as held:
            if (compiler := sys.modules.get("numba.core.compiler_lock")) is not None:
                held.enter_context(compiler.global_compiler_lock)
            if (llvm := sys.modules.get("llvmlite.binding.ffi")) is not None:
                # taken by every call into LLVM, the disposal of LLVM objects by the garbage
                # collector included, which runs in whichever thread it likes
                held.enter_context(llvm.lib._lock)
            yield
    finally:
        with _calls:
            _forking = False
            _calls.notify_all()
