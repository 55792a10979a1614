"""Property-based fuzz of the wire decoding (monitor.wire).

Whatever JSON a client sends, a record either parses into arrays that respect the limits (finite,
the right dtype and length) or is refused with :class:`WireError` carrying a reason. Any other
exception — or a numpy RuntimeWarning, which the test configuration turns into an error — is a
bug: on the server it would be a 500 for the whole batch instead of a rejected record.
"""

from __future__ import annotations

import base64
import contextlib
import math
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from monitor.errors import LimitExceeded, WireError
from monitor.wire import (
    ARRAY_DTYPES,
    DEFAULT_LIMITS,
    GroundTruth,
    ModelSpec,
    Prediction,
    decode_array,
    encode_array,
    parse_ground_truth,
    parse_prediction,
)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
CLASSES = ["scratch", "dent", "ok", "ünïcödé", "名前", "'); DROP TABLE predictions;--", "{{7*7}}", "🙂"]
SPECS = {
    "cls": ModelSpec.create("cls", "classification", CLASSES),
    "det": ModelSpec.create("det", "detection", CLASSES),
    "ünï-model": ModelSpec.create("ünï-model", "classification", ["a", "b"]),
}
# hypothesis warns when it prints a large failing example; the example is what we want to see.
# 400 examples a property: `make test` runs them, `make test-fast` does not.
pytestmark = [pytest.mark.filterwarnings("ignore:Generating overly large repr"), pytest.mark.slow]
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------------------------
# strategies

#: Numbers a JSON parser can hand over: Python's json module gives arbitrary-precision integers
#: and (for NaN / Infinity literals, or 1e400) non-finite floats.
NASTY_NUMBERS = st.sampled_from(
    [0, -1, 1, 2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 2**64, 10**400, -(10**400),
     1e-310, 1e38, 3.5e38, 1e39, 1e308, 1.7e308, -1.7e308, math.nan, math.inf, -math.inf, -0.0, 0.5]
)  # fmt: skip
NUMBERS = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True), NASTY_NUMBERS)
#: Text with every kind of character, NUL and lone surrogates (Python's json accepts "\\ud800").
TEXT = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=20),
    st.sampled_from(["", "\x00", "a\x00b", "\ud800", "x\udfff", "'", '"', "{{7*7}}", "a" * 300, "名前", "🙂" * 70]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(TEXT, inner, max_size=6)),
    max_leaves=30,
)


def deep(depth: int) -> Any:
    value: Any = [1.0]
    for _ in range(depth):
        value = [value]
    return value


def _elements(dtype: str) -> st.SearchStrategy[Any]:
    if dtype.startswith("float"):
        return st.floats(width=ARRAY_DTYPES[dtype].itemsize * 8, allow_nan=True, allow_infinity=True)
    info = np.iinfo(ARRAY_DTYPES[dtype])
    return st.integers(int(info.min), int(info.max))


@st.composite
def base64_arrays(draw: st.DrawFn) -> Any:
    """``{"base64", "dtype"}`` objects: well-formed arrays of every dtype (NaN/Inf included), random
    bytes, broken base64, wrong dtype names and wrong field types."""
    kind = draw(st.sampled_from(["array", "bytes", "text", "json"]))
    dtype: Any = draw(st.one_of(st.sampled_from(sorted(ARRAY_DTYPES)), TEXT, JSON))
    if kind == "array":
        name = draw(st.sampled_from(sorted(ARRAY_DTYPES)))
        arr = draw(hnp.arrays(ARRAY_DTYPES[name], st.integers(0, 40), elements=_elements(name), fill=st.nothing()))
        obj: dict[str, Any] = {"base64": base64.b64encode(arr.tobytes()).decode(), "dtype": name}
    elif kind == "bytes":
        obj = {"base64": base64.b64encode(draw(st.binary(max_size=200))).decode(), "dtype": dtype}
    elif kind == "text":
        obj = {"base64": draw(TEXT), "dtype": dtype}
    else:
        obj = {"base64": draw(JSON), "dtype": dtype}
    if draw(st.booleans()):
        obj.pop("dtype")
    if draw(st.integers(0, 9)) == 0:
        obj[draw(TEXT)] = draw(JSON)
    return obj


def number_lists(max_size: int = 12) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.one_of(NUMBERS, st.floats(0, 1), st.booleans(), TEXT, st.none()), max_size=max_size)


ARRAYS = st.one_of(
    base64_arrays(),
    number_lists(),
    st.lists(st.floats(0, 1, width=32), min_size=len(CLASSES), max_size=len(CLASSES)),
    st.just(deep(70)),  # deeper nesting: test_wrong_types_in_arrays_are_wire_errors[deep-nesting]
    JSON,
)
BOXES = st.one_of(
    st.lists(st.lists(NUMBERS, min_size=0, max_size=5), max_size=6),
    st.lists(st.lists(st.floats(0, 1000), min_size=4, max_size=4), max_size=6),
    ARRAYS,
)
CLASS_REFS = st.one_of(st.sampled_from(CLASSES), st.integers(-3, len(CLASSES) + 2), TEXT, JSON)
TIMESTAMPS = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "2026-11-20T10:00:00Z",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "2026-11-20T10:00:00",
            "2026-13-01T00:00:00Z",
            "yesterday",
        ]
    ),
    NUMBERS,
    JSON,
)
COHORTS = st.one_of(
    st.dictionaries(TEXT, st.one_of(SCALARS, JSON), max_size=20),
    st.dictionaries(
        st.sampled_from(["camera", "site", "ünï", "'); DROP", "{{7*7}}"]), st.one_of(TEXT, NUMBERS, st.booleans())
    ),
    JSON,
)


def _records(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Records where every field is present or not, well-formed or not, plus unknown fields."""
    return st.one_of(
        st.fixed_dictionaries({}, optional=fields),
        st.fixed_dictionaries({}, optional=fields).flatmap(
            lambda rec: st.dictionaries(TEXT, JSON, max_size=2).map(lambda extra: {**rec, **extra})
        ),
        JSON,
    )


# Valid records, which the mutations below break in one to three places: random records alone
# almost never get past the first required field, so they would not reach the array decoding.
GOOD_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=40)
GOOD_TS = st.one_of(
    st.none(),
    st.datetimes(datetime(2000, 1, 2), datetime(2026, 11, 20), timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.floats(946_800_000, NOW.timestamp()),
)
GOOD_COHORT = st.dictionaries(
    GOOD_TEXT, st.one_of(GOOD_TEXT, st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False), st.booleans()),
    max_size=16,
)  # fmt: skip


@st.composite
def good_arrays(
    draw: st.DrawFn, n: int, lo: float = -1e4, hi: float = 1e4, *, dtypes: tuple[str, ...] = ("float32", "float16")
) -> Any:
    values = np.array(draw(st.lists(st.floats(lo, hi, width=16), min_size=n, max_size=n)), dtype=np.float64)
    return _as_wire(draw, values, dtypes)


def _as_wire(draw: st.DrawFn, values: np.ndarray, dtypes: tuple[str, ...]) -> Any:
    form = draw(st.sampled_from(["list", *dtypes]))
    return values.tolist() if form == "list" else encode_array(values, form)


@st.composite
def good_probabilities(draw: st.DrawFn) -> Any:
    raw = np.array(draw(st.lists(st.floats(0.01, 1), min_size=len(CLASSES), max_size=len(CLASSES))))
    return _as_wire(draw, raw / raw.sum(), ("float32",))


@st.composite
def good_boxes(draw: st.DrawFn, n: int) -> Any:
    corners = draw(st.lists(st.tuples(*(st.integers(0, 4000),) * 4), min_size=n, max_size=n))
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in corners], dtype=np.float64).reshape(n, 4)
    return draw(st.sampled_from([boxes.tolist(), boxes.ravel().tolist(), encode_array(boxes.ravel(), "float32")]))


def good_class_refs(n: int) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(st.sampled_from(CLASSES), min_size=n, max_size=n),
        st.lists(st.integers(0, len(CLASSES) - 1), min_size=n, max_size=n),
        st.lists(st.integers(0, len(CLASSES) - 1), min_size=n, max_size=n).map(lambda v: encode_array(v, "int32")),
    )


@st.composite
def good_predictions(draw: st.DrawFn) -> dict[str, Any]:
    model = draw(st.sampled_from(["cls", "det"]))
    rec: dict[str, Any] = {"prediction_id": draw(GOOD_TEXT), "model": model, "model_version": draw(GOOD_TEXT)}
    optional = {
        "timestamp": GOOD_TS, "latency_ms": st.floats(0, 1e6), "status": st.sampled_from(["ok", "error"]),
        "request_id": GOOD_TEXT, "input_hash": GOOD_TEXT, "cohort": GOOD_COHORT,
        "embedding": st.integers(1, 64).flatmap(good_arrays), "trace_id": st.just("ab" * 16), "span_id": st.just("cd" * 8),
    }  # fmt: skip
    rec.update(draw(st.fixed_dictionaries({}, optional=optional)))
    if model == "cls":
        if draw(st.booleans()):
            rec["probabilities"] = draw(good_probabilities())
        else:
            rec["predicted_class"] = draw(st.one_of(st.sampled_from(CLASSES), st.integers(0, len(CLASSES) - 1)))
            rec.update(draw(st.fixed_dictionaries({}, optional={"confidence": st.floats(0, 1)})))
    else:
        n = draw(st.integers(0, 5))
        rec["boxes"] = draw(good_boxes(n))
        rec["box_classes"] = draw(good_class_refs(n))
        rec["box_scores"] = draw(good_arrays(n, 0, 1))
    return rec


@st.composite
def good_ground_truth(draw: st.DrawFn) -> dict[str, Any]:
    model = draw(st.sampled_from(["cls", "det"]))
    rec: dict[str, Any] = {"prediction_id": draw(GOOD_TEXT), "model": model}
    rec.update(draw(st.fixed_dictionaries({}, optional={"timestamp": GOOD_TS})))
    if model == "cls":
        rec["label"] = draw(st.one_of(st.sampled_from(CLASSES), st.integers(0, len(CLASSES) - 1)))
    else:
        n = draw(st.integers(0, 5))
        rec["boxes"] = draw(good_boxes(n))
        rec["box_classes"] = draw(good_class_refs(n))
        if draw(st.booleans()):
            rec["iscrowd"] = draw(st.lists(st.one_of(st.booleans(), st.integers(0, 1)), min_size=n, max_size=n))
    return rec


def mutated(
    good: st.SearchStrategy[dict[str, Any]], fields: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[Any]:
    """A valid record, untouched or with up to three fields replaced by hostile values or removed."""

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        rec = dict(draw(good))
        for _ in range(draw(st.integers(0, 3))):
            name = draw(st.sampled_from(sorted(fields)))
            if draw(st.integers(0, 5)) == 0:
                rec.pop(name, None)
            else:
                rec[name] = draw(fields[name])
        return rec

    return build()


COMMON = {
    "prediction_id": st.one_of(st.text(min_size=1, max_size=20), TEXT, JSON),
    "model": st.one_of(st.sampled_from(sorted(SPECS)), TEXT, JSON),
    "timestamp": TIMESTAMPS,
}
PREDICTION_FIELDS = {
    **COMMON,
    "model_version": st.one_of(st.just("v1"), TEXT, JSON),
    "latency_ms": st.one_of(NUMBERS, JSON),
    "status": st.one_of(st.sampled_from(["ok", "error"]), JSON),
    "request_id": st.one_of(TEXT, JSON),
    "input_hash": st.one_of(TEXT, JSON),
    "cohort": COHORTS,
    "embedding": ARRAYS,
    "probabilities": ARRAYS,
    "predicted_class": CLASS_REFS,
    "confidence": st.one_of(NUMBERS, JSON),
    "boxes": BOXES,
    "box_classes": st.one_of(st.lists(CLASS_REFS, max_size=6), ARRAYS),
    "box_scores": ARRAYS,
    "trace_id": st.one_of(st.just("0" * 32), TEXT, JSON),
    "span_id": st.one_of(st.just("1" * 16), TEXT, JSON),
}
GROUND_TRUTH_FIELDS = {
    **COMMON,
    "label": CLASS_REFS,
    "boxes": BOXES,
    "box_classes": st.one_of(st.lists(CLASS_REFS, max_size=6), ARRAYS),
    "iscrowd": st.one_of(st.lists(st.one_of(st.booleans(), st.integers(-1, 2)), max_size=6), ARRAYS),
}
PREDICTIONS = st.one_of(mutated(good_predictions(), PREDICTION_FIELDS), _records(PREDICTION_FIELDS))
GROUND_TRUTH = st.one_of(mutated(good_ground_truth(), GROUND_TRUTH_FIELDS), _records(GROUND_TRUTH_FIELDS))

# --------------------------------------------------------------------------------------------
# invariants of whatever parsed


def _check_array(arr: np.ndarray | None, dtypes: tuple[str, ...], max_len: int, *, finite: bool = True) -> None:
    if arr is None:
        return
    assert isinstance(arr, np.ndarray) and arr.ndim == 1
    assert arr.dtype.name in dtypes, arr.dtype
    assert arr.size <= max_len
    if finite:
        assert np.isfinite(arr.astype(np.float64)).all()


def _check_text(value: str | None, max_chars: int) -> None:
    if value is None:
        return
    assert isinstance(value, str) and len(value) <= max_chars and "\x00" not in value
    value.encode("utf-8")  # storable: PostgreSQL and SQLite both refuse lone surrogates


def _check_prediction(p: Prediction) -> None:
    lim = DEFAULT_LIMITS
    spec = SPECS[p.model]
    _check_text(p.prediction_id, lim.max_id_chars)
    _check_text(p.model_version, lim.max_version_chars)
    _check_text(p.request_id, lim.max_string_chars)
    _check_text(p.input_hash, lim.max_string_chars)
    assert p.prediction_id and p.model_version
    assert datetime(2000, 1, 1, tzinfo=UTC) <= p.ts <= NOW + lim.max_future and p.ts.tzinfo is not None
    assert p.status in (0, 1)
    assert p.latency_ms is None or (math.isfinite(p.latency_ms) and p.latency_ms >= 0)
    if p.cohort is not None:
        assert len(p.cohort) <= lim.max_cohort_keys
        for key, value in p.cohort.items():
            _check_text(key, 64)
            assert key
            if isinstance(value, str):
                _check_text(value, lim.max_string_chars)
            elif isinstance(value, float):
                assert math.isfinite(value)
            else:
                assert isinstance(value, (bool, int)) and -(2**63) <= value < 2**63
    _check_array(p.embedding, ("float16", "float32"), lim.max_embedding_dim)
    if p.embedding is not None:
        assert p.embedding.size > 0
    if spec.task == "classification":
        assert p.boxes is None and p.box_classes is None and p.box_scores is None
        _check_array(p.probabilities, ("float32",), len(spec.classes))
        if p.probabilities is not None:
            assert p.probabilities.size == len(spec.classes)
            assert p.probabilities.min() >= 0 and p.probabilities.max() <= 1
            assert abs(float(p.probabilities.sum(dtype=np.float64)) - 1) <= 0.01
            assert p.predicted_class == int(p.probabilities.argmax())
        assert p.predicted_class is None or 0 <= p.predicted_class < len(spec.classes)
        assert p.confidence is None or 0 <= p.confidence <= 1
        assert p.predicted_class is not None or p.status == 1
    else:
        assert p.probabilities is None and p.predicted_class is None and p.confidence is None
        if p.boxes is not None:
            assert p.boxes.dtype == np.float32 and p.boxes.ndim == 2 and p.boxes.shape[1] == 4
            assert len(p.boxes) <= lim.max_boxes and np.isfinite(p.boxes).all()
            assert (p.boxes[:, 2] >= p.boxes[:, 0]).all() and (p.boxes[:, 3] >= p.boxes[:, 1]).all()
            _check_array(p.box_classes, ("int32",), lim.max_boxes)
            _check_array(p.box_scores, ("float32",), lim.max_boxes)
            assert len(p.boxes) == len(p.box_classes) == len(p.box_scores)  # type: ignore[arg-type]
            assert ((p.box_classes >= 0) & (p.box_classes < len(spec.classes))).all()  # type: ignore[operator]
            assert ((p.box_scores >= 0) & (p.box_scores <= 1)).all()  # type: ignore[operator]
        else:
            assert p.status == 1


def _check_ground_truth(g: GroundTruth) -> None:
    spec = SPECS[g.model]
    _check_text(g.prediction_id, DEFAULT_LIMITS.max_id_chars)
    assert g.labelled_at <= NOW + DEFAULT_LIMITS.max_future
    if spec.task == "classification":
        assert g.label is not None and 0 <= g.label < len(spec.classes) and g.boxes is None
    else:
        assert g.label is None and g.boxes is not None and g.box_classes is not None
        assert g.boxes.dtype == np.float32 and g.boxes.shape == (len(g.box_classes), 4)
        assert np.isfinite(g.boxes).all()
        assert ((g.box_classes >= 0) & (g.box_classes < len(spec.classes))).all()
        if g.iscrowd is not None:
            assert g.iscrowd.dtype == np.uint8 and g.iscrowd.shape == (len(g.boxes),)
            assert set(np.unique(g.iscrowd).tolist()) <= {0, 1}


# --------------------------------------------------------------------------------------------
# properties


@FUZZ
@given(PREDICTIONS)
def test_any_prediction_record_parses_within_limits_or_is_a_wire_error(record):
    try:
        parsed = parse_prediction(record, SPECS.get, now=NOW)
    except WireError as exc:
        assert str(exc)
        event("refused")
        return
    event(f"parsed {SPECS[parsed.model].task}")
    _check_prediction(parsed)


@FUZZ
@given(GROUND_TRUTH)
def test_any_ground_truth_record_parses_within_limits_or_is_a_wire_error(record):
    try:
        parsed = parse_ground_truth(record, SPECS.get, now=NOW)
    except WireError as exc:
        assert str(exc)
        event("refused")
        return
    event(f"parsed {SPECS[parsed.model].task}")
    _check_ground_truth(parsed)


@FUZZ
@given(
    ARRAYS, st.sampled_from(["float", "int"]), st.integers(0, 64), st.sampled_from(["float32", "float16", "float64"])
)
def test_any_array_decodes_within_limits_or_is_a_wire_error(value, kind, max_len, default_dtype):
    try:
        arr = decode_array(value, field="x", max_len=max_len, kind=kind, default_dtype=default_dtype)
    except WireError as exc:
        assert exc.field == "x"
        return
    allowed = ("int16", "int32", "int64", "uint8") if kind == "int" else ("float16", "float32", "float64")
    _check_array(arr, allowed, max_len)


@FUZZ
@given(
    st.sampled_from(["float16", "float32", "float64"]).flatmap(
        lambda name: hnp.arrays(ARRAY_DTYPES[name], st.integers(1, 64), elements=_elements(name), fill=st.nothing())
    )
)
def test_float_arrays_round_trip_or_are_refused_for_non_finite_values(arr):
    encoded = encode_array(arr, arr.dtype.name)
    if not np.isfinite(arr).all():
        with pytest.raises(WireError, match="NaN or infinity"):
            decode_array(encoded, field="e", max_len=64)
        return
    out = decode_array(encoded, field="e", max_len=64)
    assert out.dtype == arr.dtype
    np.testing.assert_array_equal(out, arr)


@FUZZ
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=32))
def test_json_number_lists_become_float32_or_are_refused_when_they_overflow_it(values):
    try:
        out = decode_array(values, field="e", max_len=32)
    except WireError as exc:
        assert "too large for float32" in str(exc)
        assert any(abs(v) > float(np.finfo(np.float32).max) for v in values)
        return
    assert out.dtype == np.float32 and out.shape == (len(values),)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(["0.5", "0.5"], id="numeric-strings"),
        pytest.param([True, False], id="booleans"),
        pytest.param([1, None], id="null-inside"),
        pytest.param([[0.5], [0.5]], id="nested-lists"),
        pytest.param([10**400, 0], id="integer-beyond-float64"),
        pytest.param({"base64": "AAAA", "dtype": ["float32"]}, id="dtype-a-list"),
        pytest.param({"base64": "AAAA", "dtype": {"x": 1}}, id="dtype-an-object"),
        pytest.param({"base64": ["AAAA"], "dtype": "float32"}, id="base64-a-list"),
        pytest.param(deep(900), id="deep-nesting"),
    ],
)
def test_wrong_types_in_arrays_are_wire_errors(value):
    with pytest.raises(WireError):
        decode_array(value, field="probabilities", max_len=8)


@pytest.mark.parametrize(
    "value", [[1e30], [2.0**63], [-1.7e308, 1.7e308], [0.5], [2**40]], ids=["1e30", "2^63", "huge-pair", "half", "2^40"]
)
def test_integer_arrays_refuse_values_outside_their_range_without_a_numpy_warning(value):
    with pytest.raises(WireError):
        decode_array(value, field="box_classes", max_len=8, kind="int")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("latency_ms", 10**400, id="latency-beyond-float64"),
        pytest.param("confidence", 10**400, id="confidence-beyond-float64"),
        pytest.param("timestamp", 10**400, id="timestamp-beyond-float64"),
        pytest.param("timestamp", "0001-01-01T00:00:00+01:00", id="timestamp-before-year-1-in-utc"),
        pytest.param("timestamp", "9999-12-31T23:59:59-01:00", id="timestamp-after-year-9999-in-utc"),
        pytest.param("cohort", {"camera": 2**64}, id="cohort-integer-beyond-int64"),
        pytest.param("cohort", {"\ud800": "x"}, id="cohort-key-lone-surrogate"),
        pytest.param("cohort", {"camera": "cam\udfff"}, id="cohort-value-lone-surrogate"),
        pytest.param("request_id", "r\ud800", id="request-id-lone-surrogate"),
        pytest.param("prediction_id", "\ud800", id="prediction-id-lone-surrogate"),
        pytest.param("model_version", "v\udc00", id="version-lone-surrogate"),
    ],
)
def test_values_a_database_cannot_store_are_wire_errors(field, value):
    record = {"prediction_id": "p", "model": "cls", "model_version": "v1", "predicted_class": 0, field: value}
    with pytest.raises(WireError):
        parse_prediction(record, SPECS.get, now=NOW)


@pytest.mark.parametrize("name", ["scratch", "ünïcödé", "名前", "'); DROP TABLE predictions;--", "{{7*7}}", "🙂"])
def test_unicode_and_hostile_class_names_resolve_by_name(name):
    p = parse_prediction(
        {"prediction_id": "p", "model": "cls", "model_version": "v1", "predicted_class": name}, SPECS.get, now=NOW
    )
    assert p.predicted_class == CLASSES.index(name)
    g = parse_ground_truth(
        {"prediction_id": "p", "model": "det", "boxes": [[0, 0, 1, 1]], "box_classes": [name]}, SPECS.get, now=NOW
    )
    assert g.box_classes is not None and g.box_classes.tolist() == [CLASSES.index(name)]


# --------------------------------------------------------------------------------------------
# a 10^8-element embedding is refused by its length, before anything is decoded


class _LongText(str):
    """A str that claims the length of a 10^8-element float32 embedding in base64 (~533 MB).

    Its actual content is a short, valid array: a decoder that decoded before checking the length
    would accept it. Refusing it proves the limit is applied to the length alone."""

    def __len__(self) -> int:
        return 4 * math.ceil(10**8 * 4 / 3)


def test_a_hundred_million_value_embedding_is_refused_by_length_alone():
    text = _LongText(encode_array(np.ones(4, np.float32))["base64"])
    with pytest.raises(LimitExceeded, match="larger than 8192 values"):
        decode_array({"base64": text, "dtype": "float32"}, field="embedding", max_len=8192)


def test_refusing_an_oversize_base64_array_allocates_nothing_like_the_array():
    values = 4_000_000  # 16 MB as float32: a feasible stand-in for 10^8 values (400 MB)
    text = "A" * (4 * math.ceil(values * 4 / 3))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        with pytest.raises(LimitExceeded):
            decode_array({"base64": text, "dtype": "float32"}, field="embedding", max_len=8192)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024, f"refusing allocated {peak} bytes; the array would be {values * 4}"


def test_an_oversize_json_list_is_refused_by_length_before_conversion():
    values = [0.0] * 2_000_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        with pytest.raises(LimitExceeded):
            decode_array(values, field="embedding", max_len=8192)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


@given(st.integers(0, 300), st.sampled_from(["float16", "float32", "float64"]))
@settings(max_examples=200, deadline=None)
def test_the_base64_length_check_admits_exactly_max_len_values(n, dtype):
    arr = np.zeros(n, ARRAY_DTYPES[dtype])
    encoded = encode_array(arr, dtype)
    if n <= 100:
        assert decode_array(encoded, field="e", max_len=100).size == n
    else:
        with pytest.raises(LimitExceeded):
            decode_array(encoded, field="e", max_len=100)


def test_future_limit_is_relative_to_now():
    ok = NOW + timedelta(hours=23)
    late = NOW + timedelta(days=2)
    base = {"prediction_id": "p", "model": "cls", "model_version": "v1", "predicted_class": 0}
    assert parse_prediction({**base, "timestamp": ok.isoformat()}, SPECS.get, now=NOW).ts == ok
    with pytest.raises(WireError, match="future"):
        parse_prediction({**base, "timestamp": late.isoformat()}, SPECS.get, now=NOW)


@given(JSON)
@settings(max_examples=300, deadline=None)
def test_any_json_value_as_a_whole_record_is_a_wire_error_or_parses(value):
    assume(not isinstance(value, dict) or value)
    for parse in (parse_prediction, parse_ground_truth):
        with contextlib.suppress(WireError):  # anything else fails the test
            parse(value, SPECS.get, now=NOW)
