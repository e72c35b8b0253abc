"""BufferRing: reusable frame buffers handed out in turn."""

from __future__ import annotations

import numpy as np
import pytest

from trtseg.frames import BufferRing


def test_buffers_come_round_after_as_many_hand_outs_as_slots() -> None:
    ring = BufferRing(3)
    first = [ring.next((4, 5, 3)) for _ in range(3)]
    assert len({id(b) for b in first}) == 3
    assert all(b.shape == (4, 5, 3) and b.dtype == np.uint8 for b in first)
    again = [ring.next((4, 5, 3)) for _ in range(3)]
    assert all(a is b for a, b in zip(first, again, strict=True))


def test_a_new_shape_or_dtype_gets_new_buffers() -> None:
    ring = BufferRing(2)
    old = ring.next((4, 4))
    wider = ring.next((4, 6))
    assert wider.shape == (4, 6) and wider is not old
    as_float = ring.next((4, 6), np.float32)
    assert as_float.dtype == np.float32
    assert ring.next((4, 6), np.float32) is not as_float
    assert ring.next((4, 6), np.float32) is as_float


def test_at_least_one_slot() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        BufferRing(0)
