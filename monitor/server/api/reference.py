"""Pinned drift references: PUT/GET /v1/models/{model}/reference."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Self

from fastapi import APIRouter, HTTPException, status
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from monitor.server.api.body import JsonContent
from monitor.server.api.deps import AdminAuth, ReadAuth, StateDep
from monitor.server.api.params import ModelName, storable_text
from monitor.server.api.schemas import problems
from monitor.server.services.drift_features import ESTIMATOR
from monitor.server.services.drift_refs import Kind, ReferenceSpec, fitted_summary, load_specs, put_spec
from monitor.server.services.models import model_specs
from monitor.server.settings import MAX_REFERENCE_SIZE
from monitor.server.store.engine import write_transaction

router = APIRouter(prefix="/v1", tags=["drift"])

_ERRORS = problems(400, 401, 403, 404, 422, 503)
VersionName = Annotated[str, Field(max_length=64), AfterValidator(storable_text)]


class ReferenceIn(BaseModel):
    """Either the first `first` predictions of a version, or the predictions in `[start, end)`."""

    model_config = ConfigDict(extra="forbid")
    version: Annotated[
        VersionName,
        Field(description='The version this reference is for; "" (default): every version without its own.'),
    ] = ""
    first: Annotated[
        int | None,
        Field(ge=2, le=MAX_REFERENCE_SIZE, description="The first N predictions (after the version appeared)."),
    ] = None
    start: Annotated[AwareDatetime | None, Field(description="Range start (RFC 3339 with offset).")] = None
    end: Annotated[AwareDatetime | None, Field(description="Range end, exclusive.")] = None
    source_version: Annotated[
        VersionName | None,
        Field(description="Whose predictions: default the version itself for `first`, every version for a range."),
    ] = None

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        ranged = self.start is not None or self.end is not None
        if ranged and self.first is not None:
            raise ValueError("give either first or start and end, not both")
        if ranged and (self.start is None or self.end is None):
            raise ValueError("a range needs both start and end")
        if self.start is not None and self.end is not None and not self.start < self.end:
            raise ValueError("start must be before end")
        if not ranged and self.first is None and self.source_version is None:
            raise ValueError("give first, start and end, or source_version")
        return self


class ReferenceSpecOut(BaseModel):
    #: "" for the model-wide spec
    version: str
    kind: str
    first: int | None
    start: datetime | None
    end: datetime | None
    source_version: str | None
    #: null for the built-in default
    set_at: datetime | None


class FittedDetector(BaseModel):
    detector: str
    feature: str
    #: reference values the detector was fitted on (after sampling)
    n_reference: int


class FittedReference(BaseModel):
    version: str
    reference_start: datetime
    reference_end: datetime
    fitted_at: datetime
    detectors: list[FittedDetector]
    #: labelled predictions (images, for detection) the label-free estimate was calibrated on;
    #: null until the reference has enough labels
    calibrated_on: int | None
    calibrated_at: datetime | None


class ReferenceOut(BaseModel):
    model: str
    #: what a version without a spec gets
    default: ReferenceSpecOut
    specs: list[ReferenceSpecOut]
    fitted: list[FittedReference]


def _spec_out(spec: ReferenceSpec) -> ReferenceSpecOut:
    return ReferenceSpecOut(
        version=spec.version, kind=spec.kind, first=spec.size, start=spec.start, end=spec.end,
        source_version=spec.source_version, set_at=spec.set_at,
    )  # fmt: skip


@router.put(
    "/models/{model}/reference",
    response_model=ReferenceSpecOut,
    responses={**_ERRORS, **problems(408, 413, 415)},
    summary="Pin the drift reference",
)
def put_reference(
    model: ModelName, body: ReferenceIn, state: StateDep, principal: AdminAuth, _json: JsonContent
) -> ReferenceSpecOut:
    """Pin which predictions a version's drift is measured against (admin scope).

    - `{"version": "v3", "first": 5000}`: the first 5 000 predictions of v3 (the default is the
      first `drift_reference_size`, 2 000, of each version);
    - `{"version": "v3", "start": ..., "end": ...}`: v3's predictions in `[start, end)`; add
      `"source_version": "v2"` to compare v3 with what v2 saw then, or leave it out to pool every
      version in the range;
    - `{"version": "v3", "source_version": "v2"}`: the first predictions of v2;
    - `"version": ""` (or none): the model-wide spec for every version without its own.

    The fitted detectors the spec replaces are dropped: the next drift run fits the new reference
    (a range once it has ended) and scores the windows of the lookback against it again.
    """
    principal.check_model(model)
    kind: Kind = "range" if body.start is not None else "first"
    spec = ReferenceSpec(
        version=body.version, kind=kind, size=body.first if kind == "first" else None,
        start=None if body.start is None else body.start.astimezone(UTC),
        end=None if body.end is None else body.end.astimezone(UTC),
        source_version=body.source_version, set_at=state.clock(),
    )  # fmt: skip
    if spec.size is not None and spec.size < state.settings.drift_min_samples:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"first must be at least drift_min_samples ({state.settings.drift_min_samples})",
        )
    with write_transaction(state.engine) as conn:
        if not model_specs(conn, [model]):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model {model!r}")
        put_spec(conn, model, spec)
    return _spec_out(spec)


@router.get(
    "/models/{model}/reference", response_model=ReferenceOut, responses=_ERRORS, summary="Drift references of a model"
)
def get_reference(model: ModelName, state: StateDep, principal: ReadAuth) -> ReferenceOut:
    """The pinned reference specs and what is fitted per version: the detectors and features, the
    reference values each saw, the time span of the reference data, and the label-free calibration."""
    principal.check_model(model)
    with state.engine.connect() as conn:
        if not model_specs(conn, [model]):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model {model!r}")
        specs = load_specs(conn, model)
        rows = fitted_summary(conn, model)
    fitted: dict[str, FittedReference] = {}
    for r in rows:
        ref = fitted.get(r.version)
        if ref is None:
            ref = fitted[r.version] = FittedReference(
                version=r.version, reference_start=r.reference_start, reference_end=r.reference_end, fitted_at=r.fitted_at,
                detectors=[], calibrated_on=None, calibrated_at=None,
            )  # fmt: skip
        if r.detector == ESTIMATOR:
            ref.calibrated_on, ref.calibrated_at = r.n_reference, r.fitted_at
        else:
            ref.detectors.append(FittedDetector(detector=r.detector, feature=r.feature, n_reference=r.n_reference))
            ref.fitted_at = r.fitted_at
    default = ReferenceSpec(version="", kind="first", size=state.settings.drift_reference_size)
    return ReferenceOut(
        model=model, default=_spec_out(default), specs=[_spec_out(s) for _, s in sorted(specs.items())],
        fitted=list(fitted.values()),
    )  # fmt: skip
