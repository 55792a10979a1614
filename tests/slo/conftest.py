from __future__ import annotations

import pytest

from monitor.server.slo.spec import SLO, load_slos
from tests.slo.golden import REPO, require_promtool

EXAMPLE = REPO / "examples" / "cvmon.yaml"


@pytest.fixture(scope="session")
def example_slos() -> tuple[SLO, ...]:
    """The SLOs of examples/cvmon.yaml, which alerts/ is rendered from."""
    return load_slos(EXAMPLE.read_text("utf-8"), source="examples/cvmon.yaml")


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_promtool()
