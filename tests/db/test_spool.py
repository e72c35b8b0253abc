"""Spool: order, durability across reopen, the bound (refused and counted, never dropped)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trtseg.spool import Spool, SpoolFull


def test_fifo_peek_and_ack(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_events=100)
    spool.put([f"e{i}" for i in range(5)])
    spool.put(["e5"])
    first = spool.peek(4)
    assert [p for _, p in first] == ["e0", "e1", "e2", "e3"]
    assert spool.peek(4) == first  # peeking does not consume
    assert spool.ack(first[-1][0]) == 4
    assert [p for _, p in spool.peek(10)] == ["e4", "e5"] and len(spool) == 2
    spool.close()


def test_survives_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_events=100)
    spool.put(["a", "b", "c"])
    seq, _ = spool.peek(1)[0]
    spool.ack(seq)
    spool.close()
    again = Spool(tmp_path, max_events=100)
    assert len(again) == 2 and [p for _, p in again.peek(10)] == ["b", "c"]
    again.put(["d"])
    assert [p for _, p in again.peek(10)] == ["b", "c", "d"]
    again.close()


def test_bound_refuses_whole_batches_and_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path, max_events=5)
    spool.put(["1", "2", "3", "4"])
    with pytest.raises(SpoolFull, match="full"):
        spool.put(["5", "6"])  # would exceed: none of the two goes in
    assert spool.refused == 2 and len(spool) == 4
    assert "spool full" in caplog.text
    spool.put(["5"])
    with pytest.raises(SpoolFull):
        spool.ensure_room(1)
    assert spool.refused == 3
    assert [p for _, p in spool.peek(10)] == ["1", "2", "3", "4", "5"]
    spool.close()


def test_one_owner_per_spool_directory(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_events=10)
    with pytest.raises(RuntimeError, match="in use"):
        Spool(tmp_path, max_events=10)
    spool.close()
    Spool(tmp_path, max_events=10).close()
