"""Encryption at rest: sealed bytes differ from the plaintext, are bound to their sample, and still
open after a key rotation (old and new keys side by side, then re-sealed, then the old key gone)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from monitor.errors import ConfigError
from monitor.server.sample_settings import load_sample_settings
from tests.samples.conftest import KEY_A, KEY_B, Store, digit_image, png, register


def _settings(model: str, store: Store, **keys: Any) -> Any:
    return load_sample_settings({"models": {model: {}}, "store": store.url, **keys}, {})


def _post(api: Any, model: str, pid: str, seed: int) -> None:
    record = {"prediction_id": pid, "model": model, "image": {"base64": base64.b64encode(png(digit_image(seed, 24))).decode()}}
    with api.admin() as http:
        assert http.post("/v1/samples", json={"records": [record]}).json()["accepted"] == 1


def _served(api: Any, model: str) -> dict[str, tuple[str, bytes]]:
    """prediction id -> (key id, served image bytes)."""
    with api.client(api.create_key(["samples"])) as http:
        listing = http.get(f"/v1/models/{model}/samples").json()["samples"]
        out = {}
        for s in listing:
            answer = http.get(s["image_url"])
            assert answer.status_code == 200, answer.text
            out[s["prediction_id"]] = (s["key_id"], answer.content)
    return out


def test_sealed_bytes_differ_and_open_after_a_key_rotation(make_api: Any, model_name: str, tmp_path: Path) -> None:
    from monitor.server.services.samples import SampleRuntime, reseal
    from monitor.server.store.engine import write_transaction

    store = Store("local", str(tmp_path / "samples"), {})
    old = make_api(samples=_settings(model_name, store, keys={"a": KEY_A}))
    register(old, model_name)
    _post(old, model_name, "p1", 1)
    _post(old, model_name, "p2", 2)
    before = _served(old, model_name)
    raw = store.raw_objects()
    assert len(raw) == 2 and {k for k, _ in before.values()} == {"a"}
    for _, plain in before.values():
        assert all(plain != blob and plain not in blob for blob in raw.values())

    # 1. the new key joins every replica's ring as the active key: old samples still open
    both = _settings(model_name, store, keys={"b": KEY_B, "a": KEY_A})
    rotated = make_api(samples=both)
    assert _served(rotated, model_name) == before
    _post(rotated, model_name, "p3", 3)
    assert _served(rotated, model_name)["p3"][0] == "b"
    # 2. re-seal the old samples under b (cvmon samples rotate-keys), old objects deleted after commit
    runtime = SampleRuntime.from_settings(both)
    assert runtime is not None
    with write_transaction(old.db.engine) as conn:
        done, stale = reseal(conn, runtime, models=[model_name])  # the database is shared with other tests
    runtime.store.delete(stale)
    assert done == 2 and len(store.raw_objects()) == 3
    # 3. the old key leaves the ring: everything opens with b alone, byte for byte the same images
    only_b = make_api(samples=_settings(model_name, store, keys={"b": KEY_B}))
    after = _served(only_b, model_name)
    assert {k for k, _ in after.values()} == {"b"}
    assert {pid: plain for pid, (_, plain) in after.items() if pid != "p3"} == {pid: plain for pid, (_, plain) in before.items()}
    # a server that never got the new key says so rather than failing obscurely
    with old.client(old.create_key(["samples"])) as http:
        sid = http.get(f"/v1/models/{model_name}/samples").json()["samples"][0]["sample_id"]
        answer = http.get(f"/v1/models/{model_name}/samples/{sid}/image")
    assert answer.status_code == 503 and "'b' is not in the key ring" in answer.json()["detail"]


def test_a_key_added_to_the_key_file_is_used_without_a_restart(make_api: Any, model_name: str, tmp_path: Path) -> None:
    store = Store("local", str(tmp_path / "samples"), {})
    key_file = tmp_path / "keys"
    key_file.write_text(f"a {KEY_A}\n")
    api = make_api(samples=_settings(model_name, store, key_file=str(key_file)))
    register(api, model_name)
    _post(api, model_name, "p1", 1)
    key_file.write_text(f"# the first key seals new samples\nb {KEY_B}\na {KEY_A}\n")
    _post(api, model_name, "p2", 2)
    served = _served(api, model_name)
    assert (served["p1"][0], served["p2"][0]) == ("a", "b")


def test_an_object_moved_to_another_sample_does_not_open(make_api: Any, model_name: str, tmp_path: Path) -> None:
    store = Store("local", str(tmp_path / "samples"), {})
    api = make_api(samples=_settings(model_name, store, keys={"a": KEY_A}))
    register(api, model_name)
    _post(api, model_name, "p1", 1)
    _post(api, model_name, "p2", 2)
    root = Path(store.url)
    first, second = sorted(p for p in root.rglob("*") if p.is_file())
    first.write_bytes(second.read_bytes())  # an attacker with write access swaps two images
    with api.client(api.create_key(["samples"])) as http:
        listing = http.get(f"/v1/models/{model_name}/samples").json()["samples"]
        statuses = sorted(http.get(s["image_url"]).status_code for s in listing)
    assert statuses == [200, 500]  # the swapped one: refused, and logged as an error


@pytest.mark.parametrize(
    ("section", "message"),
    [
        pytest.param({"models": {"m": {}}}, "no encryption key", id="no-key"),
        pytest.param({"models": {"m": {}}, "keys": {"a": "c2hvcnQ="}}, "must be 32 bytes", id="short-key"),
        pytest.param({"models": {"m": {}}, "keys": {"a": KEY_A}, "active_key": "z"}, "not among samples.keys", id="active"),
        pytest.param({"models": {"m": {"faces": "blurr"}}, "keys": {"a": KEY_A}}, "mask, drop or keep", id="policy"),
        pytest.param({"models": {"m": {}}, "keys": {"a": KEY_A}, "mask": "smudge"}, "pixelate, blur", id="method"),
        pytest.param({"modles": {}}, "unknown key 'modles'", id="typo"),
    ],
)
def test_bad_sample_settings_are_refused_with_the_fix(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_sample_settings(section, {})


def test_settings_from_the_environment() -> None:
    env = {"CVMON_SAMPLES_MODELS": "digits,shelf", "CVMON_SAMPLES_KEYS": f"k1:{KEY_A},k0:{KEY_B}",
           "CVMON_SAMPLES_STORE": "s3://bucket/p", "CVMON_SAMPLES_RETENTION": "7d"}  # fmt: skip
    got = load_sample_settings(None, env)
    assert sorted(got.models) == ["digits", "shelf"] and list(got.keys) == ["k1", "k0"] and got.store == "s3://bucket/p"
    assert got.policy("digits") is not None and got.policy("digits").retention == 7 * 86400  # type: ignore[union-attr]
    assert got.policy("other") is None
