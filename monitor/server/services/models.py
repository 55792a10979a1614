"""The model registry and its counters: what a model is (task, classes, operating threshold),
its versions, and the rule that classes are only ever appended."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from monitor.errors import RegistryConflict, UnknownName
from monitor.server.store import tables as t
from monitor.wire import ModelSpec


@dataclass(frozen=True)
class VersionInfo:
    version: str
    first_seen: datetime
    last_seen: datetime
    predictions: int
    errors: int
    labelled: int


@dataclass(frozen=True)
class ModelInfo:
    spec: ModelSpec
    label_policy: str
    created_at: datetime
    updated_at: datetime
    predictions: int
    ground_truth: int
    labelled: int
    versions: tuple[VersionInfo, ...]


def _spec(row: Any) -> ModelSpec:
    return ModelSpec.create(row.model, row.task, row.classes, row.operating_threshold)


def model_specs(conn: Connection, names: Iterable[str]) -> dict[str, ModelSpec]:
    names = sorted(set(names))
    if not names:
        return {}
    m = t.models.c
    rows = conn.execute(sa.select(m.model, m.task, m.classes, m.operating_threshold).where(m.model.in_(names)))
    return {row.model: _spec(row) for row in rows}


def model_spec(conn: Connection, name: str) -> ModelSpec | None:
    """The spec of one model, or None when it is not registered."""
    return model_specs(conn, [name]).get(name)


#: Which annotation the quality metrics use (monitor/server/services/annotations.py).
LABEL_POLICIES = ("newest", "majority", "exclude")


def register_model(
    conn: Connection,
    name: str,
    task: str,
    classes: list[str],
    operating_threshold: float,
    *,
    now: datetime,
    label_policy: str | None = None,
) -> bool:
    """Create or update a model; returns True when it was created.

    Stored predictions and labels refer to classes by index, so an update may append classes but
    never reorder, rename or remove them, and never change the task. ``label_policy`` None keeps
    the stored one (``newest`` for a new model); detection labels are always ``newest``.
    """
    if label_policy is not None and label_policy not in LABEL_POLICIES:
        raise ValueError(f"label_policy must be one of {', '.join(LABEL_POLICIES)}, not {label_policy!r}")
    if label_policy not in (None, "newest") and task != "classification":
        raise ValueError(f"label_policy {label_policy} is for classification models: a detection model's newest labels win")
    m = t.models
    row = conn.execute(sa.select(m).where(m.c.model == name).with_for_update()).first()
    if row is None:
        conn.execute(
            sa.insert(m).values(
                model=name, task=task, classes=classes, operating_threshold=operating_threshold,
                created_at=now, updated_at=now, label_policy=label_policy or "newest",
            )
        )  # fmt: skip
        return True
    if row.task != task:
        raise RegistryConflict(f"model {name!r} is a {row.task} model; its task cannot change to {task}")
    old = list(row.classes)
    if classes[: len(old)] != old:
        raise RegistryConflict(
            f"classes may only be appended: stored data refers to classes by position. Stored: {old[:20]}"
            + ("..." if len(old) > 20 else "")
        )
    changes: dict[str, object] = {"classes": classes, "operating_threshold": operating_threshold, "updated_at": now}
    if label_policy is not None:
        changes["label_policy"] = label_policy
    conn.execute(sa.update(m).where(m.c.model == name).values(**changes))
    return False


def model_info(conn: Connection, name: str) -> ModelInfo | None:
    m, v = t.models, t.model_versions
    row = conn.execute(sa.select(m).where(m.c.model == name)).first()
    if row is None:
        return None
    versions = tuple(
        VersionInfo(r.version, r.first_seen, r.last_seen, r.predictions, r.errors, r.labelled)
        for r in conn.execute(sa.select(v).where(v.c.model == name).order_by(v.c.first_seen, v.c.version))
    )
    return ModelInfo(
        spec=_spec(row),
        label_policy=row.label_policy,
        created_at=row.created_at,
        updated_at=row.updated_at,
        predictions=sum(x.predictions for x in versions),
        ground_truth=row.ground_truth,
        labelled=sum(x.labelled for x in versions),
        versions=versions,
    )


def model_names(conn: Connection) -> list[str]:
    return list(conn.execute(sa.select(t.models.c.model).order_by(t.models.c.model)).scalars())


def version_first_seen(conn: Connection) -> list[tuple[str, str, datetime]]:
    """(model, version, first prediction time) of every model version."""
    v = t.model_versions.c
    return [(r.model, r.version, r.first_seen) for r in conn.execute(sa.select(v.model, v.version, v.first_seen))]


#: Names a message lists before it says how many more there are.
LISTED_NAMES = 20


def listing(names: list[str]) -> str:
    """``a, b, c`` (sorted as given), at most :data:`LISTED_NAMES` of them and how many more."""
    shown = ", ".join(names[:LISTED_NAMES])
    return shown + (f" and {len(names) - LISTED_NAMES} more" if len(names) > LISTED_NAMES else "")


def require_models(conn: Connection, names: Iterable[str]) -> None:
    """Raise :class:`UnknownName` for the first of ``names`` that is not registered, saying which
    models are. For command-line tools and administrators: an API answer must not list models a
    key bound to others could not see."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return
    known = model_names(conn)
    registered = set(known)
    missing = [n for n in wanted if n not in registered]
    if not missing:
        return
    what = f"no model {missing[0]!r}" if len(missing) == 1 else f"no models {listing([repr(n) for n in missing])}"
    if not known:
        raise UnknownName(f"{what}: no model is registered yet (cvmon models register NAME, or PUT /v1/models/NAME)")
    close = difflib.get_close_matches(missing[0], known, n=3, cutoff=0.6)
    hint = f" (did you mean {listing([repr(n) for n in close])}?)" if close else ""
    raise UnknownName(f"{what}{hint}; registered models: {listing(known)}")


def model_versions(conn: Connection, model: str) -> list[str]:
    """The versions of ``model`` that sent predictions, oldest first."""
    v = t.model_versions.c
    query = sa.select(v.version).where(v.model == model).order_by(v.first_seen, v.version)
    return list(conn.execute(query).scalars())


def require_versions(conn: Connection, model: str, versions: Iterable[str]) -> None:
    """Raise :class:`UnknownName` for the first of ``versions`` of a registered ``model`` that has
    sent no prediction, saying which versions have."""
    known = model_versions(conn, model)
    for version in versions:
        if version not in known:
            have = f"; its versions: {listing(known)}" if known else ""
            raise UnknownName(f"version {version!r} of {model!r} has sent no prediction yet{have}")
