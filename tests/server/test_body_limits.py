"""The pieces of the body bounds on their own: the per-process budget, gzip decoding, the settings."""

from __future__ import annotations

import gzip
import zlib

import pytest
from fastapi import HTTPException

from monitor.errors import ConfigError, LimitExceeded, WireError
from monitor.server.api.body import BodyBudget, Lease
from monitor.server.services.payload import gunzip
from monitor.server.settings import Settings


def test_the_budget_admits_one_body_of_any_size_and_bounds_the_rest():
    budget = BodyBudget(100)
    first, second, third = Lease(budget), Lease(budget), Lease(budget)
    first.take(500)  # nothing held: admitted, or a body over the budget could never pass
    with pytest.raises(HTTPException) as refused:
        second.take(1)
    assert refused.value.status_code == 503 and refused.value.headers["Retry-After"] == "1"
    first.close()
    second.take(60)
    with pytest.raises(HTTPException):
        third.take(41)
    third.take(40)
    second.close()
    third.close()
    assert budget.held == 0


def test_a_lease_gives_back_what_it_took_and_no_more():
    budget = BodyBudget(100)
    lease = Lease(budget)
    lease.take(30)
    lease.give(50)
    lease.close()
    assert budget.held == 0 and lease.held == 0


def test_gunzip_decodes_every_member_and_holds_the_output():
    budget = BodyBudget(10_000)
    lease = Lease(budget)
    body = gzip.compress(b"a" * 1000) + gzip.compress(b"b" * 500) + gzip.compress(b"")
    assert gunzip(body, 2000, lease.take) == b"a" * 1000 + b"b" * 500
    assert lease.held == 1500


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param(gzip.compress(b"x" * 100)[:-8], WireError, id="no-trailer"),
        pytest.param(gzip.compress(b"x" * 100) + b"\x1f", WireError, id="half-a-magic-number"),
        pytest.param(gzip.compress(b"x" * 100) + b"\x1f\x8b", WireError, id="a-member-header-cut-short"),
        pytest.param(b"not gzip at all", WireError, id="not-gzip"),
        pytest.param(gzip.compress(b"x" * 600) + gzip.compress(b"y" * 600), LimitExceeded, id="members-over-the-limit-together"),
        pytest.param(zlib.compress(b"x" * 100), WireError, id="zlib-not-gzip"),
    ],
)
def test_gunzip_refuses_what_is_not_whole_gzip_within_the_limit(body, error):
    """A WireError is the API's 400, LimitExceeded its 413 (tests/hostile/test_bodies.py)."""
    with pytest.raises(error):
        gunzip(body, 1000)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"max_body_bytes_in_flight": 1024, "max_body_bytes": 4096}, "max_body_bytes_in_flight", id="in-flight-below-one-body"),
        pytest.param({"db_statement_timeout_seconds": 0}, "db_statement_timeout_seconds", id="statement-zero"),
        pytest.param({"db_lock_timeout_seconds": float("nan")}, "db_lock_timeout_seconds", id="lock-nan"),
        pytest.param({"http_header_timeout_seconds": -1.0}, "http_header_timeout_seconds", id="header-negative"),
        pytest.param({"http_max_connections": 0}, "http_max_connections", id="no-connections"),
        pytest.param({"db_connect_timeout_seconds": 10_000.0}, "db_connect_timeout_seconds", id="connect-hours"),
    ],
)
def test_bounds_that_make_no_sense_are_config_errors(tmp_path, monkeypatch, overrides, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message):
        Settings.load({}, **overrides)


def test_the_bounds_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.load(
        {"CVMON_DB_STATEMENT_TIMEOUT_SECONDS": "2.5", "CVMON_HTTP_MAX_CONNECTIONS": "50", "CVMON_MAX_BODY_BYTES_IN_FLIGHT": str(1 << 30)}
    )
    assert (settings.db_statement_timeout_seconds, settings.http_max_connections) == (2.5, 50)
    assert settings.max_body_bytes_in_flight == 1 << 30
