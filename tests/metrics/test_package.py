"""The package surface, its lazy compiler, and the kernels run as plain Python."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types

import pytest

import monitor.metrics

pytestmark = pytest.mark.slow  # real servers, processes or long trials: `make test` runs it, `make test-fast` does not


def test_all_is_sorted_and_lists_every_public_name():
    public = {
        name
        for name, value in vars(monitor.metrics).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(monitor.metrics.__all__) == public

    # isort-style order, as ruff's RUF022 keeps it: CONSTANTS, then Classes, then functions
    def key(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert monitor.metrics.__all__ == sorted(monitor.metrics.__all__, key=key)


def _run(code: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        check=False, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_numba_is_imported_on_the_first_kernel_call_not_on_import():
    out = _run(
        """
        import json, sys
        import numpy as np
        import monitor.metrics as m
        before = "numba" in sys.modules
        m.classification_state(np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32))
        print(json.dumps([before, "numba" in sys.modules]))
        """
    )
    assert json.loads(out) == [False, True]


# One small case of every kernel; the hash of the states' bytes must not depend on how they ran.
_STATES = """
    import hashlib, sys
    sys.path.insert(0, {root!r})
    import numpy as np
    from testkit.synth import CocoOptions, classification_like, coco_like
    from monitor.metrics import coco_input, probability_states, detection_metrics
    opts = CocoOptions(n_images=12, n_classes=4, crowd_rate=0.2, burst_rate=0.3, burst_size=105, score_decimals=2)
    det = coco_input(*coco_like(3, opts)).detection_state()
    labels, probs = classification_like(4, 300, 7)
    cls, cal = probability_states(labels, probs, classwise=True)
    digest = hashlib.sha256(det.to_bytes() + cls.to_bytes() + cal.to_bytes())
    digest.update(repr(detection_metrics(det)).encode())
    print(digest.hexdigest())
"""


@pytest.mark.parametrize(
    "how",
    [
        pytest.param({"NUMBA_DISABLE_JIT": "1"}, id="numba-disabled"),
        pytest.param("missing", id="numba-not-installed"),
    ],
)
def test_kernels_run_as_plain_python_with_the_same_results(how):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = _STATES.format(root=root)
    compiled = _run(code)
    if how == "missing":
        # a None entry in sys.modules makes `import numba` raise ImportError, as if not installed
        plain = _run("import sys; sys.modules['numba'] = None\n" + textwrap.dedent(code))
    else:
        plain = _run(code, env=how)
    assert plain == compiled
