"""The model registry service, in a transaction rolled back after each test."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from monitor.errors import RegistryConflict
from monitor.server.services.models import model_info, model_names, model_spec, register_model

NOW = datetime(2026, 11, 20, 10, tzinfo=UTC)


def test_registering_appending_and_reading_a_model(tx, model_name) -> None:
    assert register_model(tx, model_name, "classification", ["a", "b"], 0.5, now=NOW) is True
    assert register_model(tx, model_name, "classification", ["a", "b", "c"], 0.6, now=NOW) is False
    spec = model_spec(tx, model_name)
    assert spec is not None and spec.classes == ("a", "b", "c") and spec.operating_threshold == 0.6
    info = model_info(tx, model_name)
    assert info is not None and info.versions == () and info.predictions == 0
    assert model_name in model_names(tx)
    assert model_spec(tx, model_name + "-nosuch") is None


@pytest.mark.parametrize(
    ("task", "classes", "message"),
    [
        pytest.param("detection", ["a", "b"], "task cannot change", id="task"),
        pytest.param("classification", ["b", "a"], "appended", id="reordered"),
        pytest.param("classification", ["a"], "appended", id="removed"),
    ],
)
def test_classes_are_only_appended_and_the_task_never_changes(tx, model_name, task, classes, message) -> None:
    register_model(tx, model_name, "classification", ["a", "b"], 0.5, now=NOW)
    with pytest.raises(RegistryConflict, match=message):
        register_model(tx, model_name, task, classes, 0.5, now=NOW)
