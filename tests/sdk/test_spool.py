"""The spool on its own: durable batches, drop-oldest limits, per-process directories, adoption."""

from __future__ import annotations

import os

import pytest

from monitor.sdk._spool import Batch, Spool


def batch(n: int, tag: bytes = b"x") -> Batch:
    return Batch("p", tag * 100, n)


def test_batches_come_back_oldest_first_and_survive_reopening(tmp_path):
    spool = Spool(tmp_path, max_bytes=10_000, max_records=1_000)
    spool.open()
    for i in range(3):
        spool.append(batch(10, bytes([65 + i])))
    first = spool.oldest()
    assert first is not None and first[1].body == b"A" * 100
    spool.remove(first[0])
    assert (spool.pending, spool.records, spool.bytes) == (2, 20, 200)
    spool.close()  # not empty: the directory stays for the next process
    (left,) = tmp_path.iterdir()
    assert sorted(p.name for p in left.iterdir()) == ["000000000002-p-10.gz", "000000000003-p-10.gz", "lock"]


@pytest.mark.parametrize(
    ("limits", "dropped", "kept"),
    [
        pytest.param({"max_bytes": 10_000, "max_records": 25}, [0, 0, 10, 10], 20, id="record-limit"),
        pytest.param({"max_bytes": 250, "max_records": 1_000}, [0, 0, 10, 10], 20, id="byte-limit"),
    ],
)
def test_a_full_spool_drops_the_oldest_batches(tmp_path, limits, dropped, kept):
    spool = Spool(tmp_path, **limits)
    spool.open()
    assert [spool.append(batch(10, bytes([65 + i]))) for i in range(4)] == dropped
    assert spool.records == kept
    oldest = spool.oldest()
    assert oldest is not None and oldest[1].body == b"C" * 100


def test_a_batch_over_the_limit_by_itself_is_dropped(tmp_path):
    spool = Spool(tmp_path, max_bytes=10_000, max_records=5)
    spool.open()
    assert spool.append(batch(6)) == 6
    assert spool.pending == 0


def test_a_live_owner_keeps_its_directory_and_a_dead_ones_is_adopted_in_order(tmp_path):
    owner = Spool(tmp_path, max_bytes=10_000, max_records=1_000)
    owner.open()
    for i in range(3):
        owner.append(batch(i + 1, bytes([65 + i])))
    other = Spool(tmp_path, max_bytes=10_000, max_records=1_000)
    assert other.open() == (0, 0)  # the owner's flock is held: not adopted
    own_dir = owner._dir
    assert own_dir is not None
    (own_dir / ".000000000004-p-9.gz.tmp").write_bytes(b"half written")
    os.close(owner._lock_fd)  # the owner dies (the kernel drops its lock, as on SIGKILL)
    assert other.adopt() == (6, 0)
    assert not own_dir.exists()
    bodies = []
    while (found := other.oldest()) is not None:
        bodies.append(found[1].body[:1])
        other.remove(found[0])
    assert bodies == [b"A", b"B", b"C"]
    other.close()
    assert list(tmp_path.iterdir()) == []
